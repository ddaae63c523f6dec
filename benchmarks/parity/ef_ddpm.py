"""Parity of `ef_ddpm` with inbarhub/DDPM_inversion (`ddm_inversion/inversion_utils.py`:
`inversion_forward_process`, then `inversion_reverse_process` from `wts[T - skip]` with
`zs[:T - skip]`, as `main_run.py` calls them), on tiny-sd.

Both sides in float64 on the CPU, the same weights and the same x0 latents (our VAE encoding of
the sample's image: the official `load_512` + `vae.encode(...).latent_dist.mode() * 0.18215`
computes the same on a square image, PIL's default BICUBIC resize and [-1, 1] scaling), cfg_src
3.5, cfg_tar 15, eta 1. Compared: the final latents of the edit. Glue, nothing else changed in
the official code:

G1 the model: a namespace of tiny-sd's UNet, tokenizer, text encoder, `device="cpu"` and
   `DDIMScheduler.from_config` of its scheduler (`main_run.py`'s `our_inv` mode).
G2 the scheduler's `alphas`, `alphas_cumprod`, `final_alpha_cumprod` and the module's
   `torch.zeros` buffers (`xts`, `zs`) in float64 (diffusers and the code keep float32).
G3 the x_t noise: `sample_xts_from_x0` draws least noisy first with `torch.randn_like`, ours
   noisiest first from the job's generator; both are served one tape, each timestep the same
   map (ours through `engine.inversion`'s `torch.randn`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from benchmarks.parity.common import (
    CHECKOUTS,
    Row,
    Tape,
    TorchWith,
    load_file,
    max_abs,
    parser,
    report,
)

METHOD = "ef_ddpm"
CHECKOUT = CHECKOUTS[METHOD]
#: (sample, steps, skip, edit): skip 0 with the source prompt is the reconstruction
CASES = ["pw0-00003:10:0:source", "pw0-00003:10:3:edit", "pw0-00007:12:4:edit"]


def inputs(sample_id: str, backbone: Any) -> tuple[Any, torch.Tensor]:
    from partedit_bench.data.schema import load_image
    from partedit_bench.data.suites import load_suite

    sample = {s.id: s for s in load_suite("partworld").samples}[sample_id]
    return sample, backbone.encode_images([load_image(sample.original_image)])


def official(checkout: Path, backbone: Any, x0: torch.Tensor, source: str, target: str,
             steps: int, skip: int, tape: Tape) -> torch.Tensor:  # fmt: skip
    from diffusers import DDIMScheduler

    utils = load_file(checkout / "ddm_inversion/inversion_utils.py", "ef_inversion_utils")

    def float64_zeros(*size: Any, **kwargs: Any) -> torch.Tensor:
        kwargs.pop("dtype", None)
        return torch.zeros(*size, dtype=torch.float64, device=kwargs.pop("device", "cpu"), **kwargs)

    reversed_tape = list(reversed(tape.maps))  # G3: least noisy first
    utils.torch = TorchWith(
        zeros=float64_zeros, randn_like=lambda x: reversed_tape.pop(0).clone()
    )  # G2, G3
    scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)  # G1
    scheduler.set_timesteps(steps)
    scheduler.alphas = scheduler.alphas.double()  # G2
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.final_alpha_cumprod = torch.as_tensor(scheduler.final_alpha_cumprod).double()
    model = SimpleNamespace(
        unet=backbone.unet,
        tokenizer=backbone.components["tokenizer"],
        text_encoder=backbone.components["text_encoder"],
        scheduler=scheduler,
        device="cpu",
    )
    _, zs, wts = utils.inversion_forward_process(
        model, x0, etas=1, prompt=source, cfg_scale=3.5, num_inference_steps=steps
    )
    edited, _ = utils.inversion_reverse_process(
        model, xT=wts[steps - skip], etas=1, prompts=[target], cfg_scales=[15],
        zs=zs[: steps - skip],
    )  # fmt: skip
    return edited


def ours(backbone: Any, sample: Any, image_x0: torch.Tensor, source: str, target: str,
         steps: int, skip: int, tape: Tape) -> torch.Tensor:  # fmt: skip
    from partedit_bench.data.schema import load_image
    from partedit_bench.engine import inversion
    from partedit_bench.methods.ef_ddpm import EFDDPMOptions, edit_latents

    saved = inversion.torch
    inversion.torch = TorchWith(randn=tape.draw)  # G3: the noisiest first, as we draw
    try:
        latents, _ = edit_latents(
            backbone, load_image(sample.original_image), source, target, 0,
            EFDDPMOptions(steps=steps, skip=skip),
        )  # fmt: skip
    finally:
        inversion.torch = saved
    return latents


def run_case(checkout: Path, case: str) -> Row:
    from partedit_bench.api import target_prompt
    from partedit_bench.engine.backbones import load_backbone

    sample_id, steps_text, skip_text, which = case.split(":")
    steps, skip = int(steps_text), int(skip_text)
    backbone = load_backbone("tiny-sd", dtype="float64")
    sample, x0 = inputs(sample_id, backbone)
    source = sample.prompt_original
    target = source if which == "source" else target_prompt(sample)
    shape = tuple(x0.shape)
    with contextlib.redirect_stderr(None):
        theirs = official(checkout, backbone, x0, source, target, steps, skip, Tape(shape, steps))
    mine = ours(backbone, sample, x0, source, target, steps, skip, Tape(shape, steps))
    diff, scale = max_abs(theirs, mine)
    return Row(case, f"final latents, {steps} steps, skip {skip}", diff, scale)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, CHECKOUT, CASES).parse_args(argv)
    return report(METHOD, [run_case(Path(args.official), case) for case in args.cases])


if __name__ == "__main__":
    raise SystemExit(main())
