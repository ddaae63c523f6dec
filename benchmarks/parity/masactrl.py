"""Parity of `masactrl`'s synthesis setting with TencentARC/MasaCtrl (`masactrl/diffuser_utils.py`
`MasaCtrlPipeline.__call__`, `masactrl/masactrl.py` `MutualSelfAttentionControl`, registered by
`masactrl_utils.regiter_attention_editor_diffusers`, as its playground calls them: prompts
[source, target], one x_T for both rows, guidance 7.5), on tiny-sd.

Both sides in float64 on the CPU, the same weights and the same x_T (drawn from the sample's
seed as ours draws it). Compared: the final latents of both rows. Glue, nothing else changed in
the official code:

G1 `cv2` and `pytorch_lightning` (imported, never used on this path) are stubs.
G2 the pipeline is built from tiny-sd's components with the playground's scheduler,
   `DDIMScheduler(beta 0.00085..0.012, scaled_linear, clip_sample=False, set_alpha_to_one=False)`.
G3 512 px and `height // 8` -> tiny-sd's 64 px latent of 16 (its VAE's factor is 4): the
   pipeline is given height = width = 128 so that its `// 8` shape check holds.
G4 the controlled layers: `layer_idx` = the indices, among the UNet's self-attention blocks in
   execution order, of the blocks ours controls (the reference's 16 SD blocks mapped onto
   tiny-sd's; the 16-block default would select none of tiny-sd's 10), `step_idx` from
   `start_step` to the end.
G5 the final latents are read at the pipeline's `latent2image` (before decoding).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmarks.parity.common import CHECKOUTS, Row, max_abs, parser, report

METHOD = "masactrl"
CHECKOUT = CHECKOUTS[METHOD]
#: (sample, steps, start_step, start_layer)
CASES = ["pw0-00003:6:1:10", "pw0-00002:8:2:10", "pw0-00003:6:0:0"]


def official(checkout: Path, backbone: Any, prompts: list[str], x_t: torch.Tensor,
             steps: int, start_step: int, layer_idx: list[int]) -> torch.Tensor:  # fmt: skip
    from diffusers import DDIMScheduler

    for stub in ("cv2", "pytorch_lightning"):  # G1
        sys.modules.setdefault(stub, types.ModuleType(stub))
    sys.modules["pytorch_lightning"].seed_everything = lambda *a, **k: None  # type: ignore[attr-defined]
    if not (checkout / "masactrl" / "masactrl.py").is_file():
        raise FileNotFoundError(f"{checkout}/masactrl/masactrl.py is missing from the checkout")
    sys.path.insert(0, str(checkout))  # its files import each other as the package `masactrl`
    try:
        pipeline = importlib.import_module("masactrl.diffuser_utils")
        control = importlib.import_module("masactrl.masactrl")
        utils = importlib.import_module("masactrl.masactrl_utils")
    finally:
        sys.path.remove(str(checkout))
    components = dict(backbone.components)
    components["scheduler"] = DDIMScheduler(  # G2
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False,
    )  # fmt: skip
    with warnings.catch_warnings():  # (the playground's scheduler has no steps_offset: as is)
        warnings.simplefilter("ignore", FutureWarning)
        model = pipeline.MasaCtrlPipeline(
            **components, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )  # fmt: skip
    seen: dict[str, torch.Tensor] = {}
    model.latent2image = lambda latents, return_type="np": seen.setdefault("latents", latents)
    with contextlib.redirect_stdout(io.StringIO()):
        editor = control.MutualSelfAttentionControl(
            start_step, 0, layer_idx=layer_idx, total_steps=steps
        )  # G4
    quiet = io.StringIO()  # (the official code prints its settings and shapes)
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        utils.regiter_attention_editor_diffusers(model, editor)
        model(
            prompts,
            latents=x_t.expand(2, -1, -1, -1),
            guidance_scale=7.5,
            num_inference_steps=steps,
            height=128,
            width=128,
        )  # fmt: skip  (G3)
    return seen["latents"]


def run_case(checkout: Path, case: str) -> Row:
    from partedit_bench.api import generation_target
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.methods.masactrl import (
        MasaCtrlOptions,
        controlled_layers,
        edit_latents,
        self_attention_layers,
    )

    sample_id, steps_text, start_text, layer_text = case.split(":")
    steps, start_step, start_layer = int(steps_text), int(start_text), int(layer_text)
    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = {s.id: s for s in load_suite("partworld").samples}[sample_id]
    options = MasaCtrlOptions(steps=steps, start_step=start_step, start_layer=start_layer)
    mine, _ = edit_latents(
        backbone, None, generation_target(sample), options,
        synthetic_from=(sample.prompt_original, sample.seed),
    )  # fmt: skip
    size = backbone.latent_resolution
    generator = torch.Generator("cpu").manual_seed(sample.seed)  # ours draws x_T so
    x_t = torch.randn((1, 4, size, size), generator=generator, dtype=torch.float64, device="cpu")
    every = self_attention_layers(backbone.unet)
    layer_idx = [every.index(n) for n in controlled_layers(backbone.unet, start_layer)]
    prompts = [sample.prompt_original, generation_target(sample)]
    # the official editor replaces the attention modules' `forward` for good: its own copy
    fresh = load_backbone("tiny-sd", dtype="float64")
    theirs = official(checkout, fresh, prompts, x_t, steps, start_step, layer_idx)
    diff, scale = max_abs(theirs, mine)
    target, _ = max_abs(theirs[1], mine[1])
    layers = f"{len(layer_idx)} of {len(every)} blocks"
    compared = f"final latents, {steps} steps, {layers} (target row alone: {target:.2e})"
    return Row(case, compared, diff, scale)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, CHECKOUT, CASES).parse_args(argv)
    return report(METHOD, [run_case(Path(args.official), case) for case in args.cases])


if __name__ == "__main__":
    raise SystemExit(main())
