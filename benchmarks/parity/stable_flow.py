"""Parity of `stable_flow` with snap-research/stable-flow: its diffusers fork's `FluxPipeline`
(`src/diffusers/pipelines/flux/pipeline_flux.py`, with `mm_copy_blocks` / `single_copy_blocks`,
`invert_image` and `inverted_latent_list`) called as `run_stable_flow.py` calls it
(`infer_and_save`: one x_T for every row, guidance 3.5; `invert_and_save`: the nudged latent
inverted with the source prompt at guidance 1, then the edit at guidance [1, 3] from the last
inverted latent), on tiny-flux.

The fork is a whole diffusers package named `diffusers`, so it runs in a child process whose
`sys.path` starts with the checkout's `src/`; this process passes it tiny-flux's transformer
weights, the prompt embeddings and the start latents (a safetensors file) and reads back its
final latents. Both sides in float64 on the CPU. Compared: the final packed latents of both rows
[source, edit]. Glue, nothing else changed in the official code:

G1 transformers 5 no longer exports `transformers.utils.FLAX_WEIGHTS_NAME`, which the fork
   imports: set to its old value ("flax_model.msgpack") before the import.
G2 the prompt embeddings, the x_T (FluxPipeline's draw from the sample's seed, as ours draws
   it) and the nudged image latent are computed once by our code and passed to the fork's
   pipeline (`prompt_embeds`, `pooled_prompt_embeds`, `latents`): its `image2latent` hard-codes
   CUDA and 1024 px, and the fork needs no text encoder or VAE for latents in, latents out.
G3 the size: `height = width = 8 x` tiny-flux's latent side, so that the fork's
   `2 * (height // 16)` (its `vae_scale_factor` without a VAE) is that side.
G4 the vital layers: tiny-flux has 1 double-stream and 2 single-stream blocks; ours take
   indices over all blocks (double first), the fork two lists (`mm_copy_blocks`,
   `single_copy_blocks`): the same blocks, split.

G5 the fork's `RMSNorm` reduces its variance in float32 (`hidden_states.to(torch.float32)`),
   where diffusers 0.42 uses `torch.nn.RMSNorm` in the input's dtype: inside the fork's
   `RMSNorm.forward` a float64 tensor's `.to(torch.float32)` keeps float64.
G6 the schedule: the fork's `FlowMatchEulerDiscreteScheduler.set_timesteps` rounds the shifted
   sigmas differently from diffusers 0.42's (3e-8); after it runs, its `timesteps` and `sigmas`
   are replaced by ours (the same schedule, 0.42's rounding).
Without G5 and G6 (`--no-precision-glue`) the cases differ by 3e-7 .. 1e-6: float32 rounding of
those two, the same order as the tolerance, hence the glue.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.parity.common import CHECKOUTS, Row, parser, report

METHOD = "stable_flow"
CHECKOUT = CHECKOUTS[METHOD]
#: name -> (mode, steps, vital layers, source_path)
SETTINGS: dict[str, tuple[str, int, str, str]] = {
    "gen-none-4": ("synthetic", 4, "none", "official"),
    "gen-all-4": ("synthetic", 4, "0,1,2", "official"),
    "gen-double-4": ("synthetic", 4, "0", "official"),
    "gen-single-4": ("synthetic", 4, "2", "official"),
    "gen-all-15": ("synthetic", 15, "0,1,2", "official"),
    "real-all-4": ("real", 4, "0,1,2", "official"),
    "real-all-6": ("real", 6, "0,1,2", "official"),
    "real-all-50": ("real", 50, "0,1,2", "official"),
    "real-single-8": ("real", 8, "1,2", "official"),
    "real-none-4": ("real", 4, "none", "official"),
    "real-aligned-6": ("real", 6, "0,1,2", "aligned"),
}
CASES = list(SETTINGS)
DEVIATIONS = {
    "aligned": "ours with `source_path=aligned` (an option, not the default): the source row "
    "follows the inversion latent of its own noise level",
}
SAMPLE = "pw0-00003"
REPO = Path(__file__).resolve().parents[2]


def ours(case: str, folder: Path, precision_glue: bool = True) -> tuple[Any, float]:
    """Runs our side and writes what the fork needs into `folder`; returns our final latents
    and how far the injection moves the edit row (max abs, against no vital layers)."""
    import torch
    from diffusers import FluxPipeline
    from safetensors.torch import save_file

    from partedit_bench.api import target_prompt
    from partedit_bench.data.schema import load_image
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.engine.flux import pack_latents
    from partedit_bench.methods.stable_flow import (
        StableFlowOptions,
        encode_prompts,
        stable_flow_generate,
        stable_flow_real,
        vital_blocks,
        vital_injection,
    )

    mode, steps, vital, source_path = SETTINGS[case]
    backbone = load_backbone("tiny-flux", dtype="float64")
    transformer = backbone.components["transformer"]
    n_double = len(transformer.transformer_blocks)
    blocks = vital_blocks(vital, n_double, len(transformer.single_transformer_blocks))
    sample = {s.id: s for s in load_suite("partworld").samples}[SAMPLE]
    prompts = [sample.prompt_original, target_prompt(sample)]
    options = StableFlowOptions(
        steps=steps, inversion_steps=steps, vital_layers=vital, source_path=source_path, mode=mode
    )  # fmt: skip
    pipe = backbone.pipeline(FluxPipeline)
    embeds, pooled, _ = encode_prompts(pipe, backbone, prompts, options)
    image = load_image(sample.original_image)

    def run(chosen: list[int]) -> Any:
        with vital_injection(transformer, chosen) as state:
            if mode == "synthetic":
                return stable_flow_generate(pipe, backbone, prompts, sample.seed, options, state)
            return stable_flow_real(pipe, backbone, prompts, image, options, state)

    mine = run(blocks)
    effect = float((mine[1] - run([])[1]).abs().max()) if blocks else 0.0
    if mode == "synthetic":
        size = backbone.resolution
        start, _ = pipe.prepare_latents(
            1,
            transformer.config.in_channels // 4,
            size,
            size,
            embeds.dtype,
            backbone.device,
            torch.Generator("cpu").manual_seed(sample.seed),
        )  # fmt: skip  (G2: FluxPipeline's x_T from the seed, as ours draws it)
    else:
        start = pack_latents(backbone.encode_images([image]) * options.nudging)  # G2
    tensors = {f"transformer.{k}": v.detach().clone().contiguous()
               for k, v in transformer.state_dict().items()}  # fmt: skip
    tensors.update(embeds=embeds.contiguous(), pooled=pooled.contiguous(), start=start.contiguous())
    from partedit_bench.methods.stable_flow import schedule

    timesteps, sigmas = schedule(pipe, backbone, steps, start.shape[1])  # G6
    tensors.update(timesteps=timesteps.contiguous(), sigmas=sigmas.contiguous())
    save_file(tensors, str(folder / "inputs.safetensors"))
    spec = {
        "mode": mode,
        "steps": steps,
        "mm_copy_blocks": [b for b in blocks if b < n_double],  # G4
        "single_copy_blocks": [b - n_double for b in blocks if b >= n_double],
        "height": 8 * backbone.latent_resolution,  # G3
        "precision_glue": precision_glue,  # G5, G6
        "transformer": dict(transformer.config),
        "scheduler": dict(backbone.components["scheduler"].config),
    }
    (folder / "spec.json").write_text(json.dumps(spec, default=list))
    return mine, effect


def fork_side(folder: Path, checkout: Path) -> None:
    """Runs in the child process, `checkout/src` first on the path: the fork's pipeline."""
    import torch
    import transformers.utils

    if not hasattr(transformers.utils, "FLAX_WEIGHTS_NAME"):
        transformers.utils.FLAX_WEIGHTS_NAME = "flax_model.msgpack"  # type: ignore[attr-defined]  (G1)
    import diffusers

    if not Path(diffusers.__file__).resolve().is_relative_to((checkout / "src").resolve()):
        raise RuntimeError(f"imported {diffusers.__file__}, not the fork under {checkout}/src")
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from safetensors.torch import load_file, save_file

    spec = json.loads((folder / "spec.json").read_text())
    tensors = load_file(str(folder / "inputs.safetensors"))
    # (`out_channels`, unknown to the fork's class and None here, is dropped by `from_config`)
    transformer = FluxTransformer2DModel.from_config(spec["transformer"]).to(torch.float64)
    weights = {k.removeprefix("transformer."): v for k, v in tensors.items()
               if k.startswith("transformer.")}  # fmt: skip
    transformer.load_state_dict(weights, strict=True)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(spec["scheduler"])
    if spec["precision_glue"]:
        import contextlib

        from diffusers.models.normalization import RMSNorm

        @contextlib.contextmanager
        def float64_kept() -> Any:  # G5
            original_to = torch.Tensor.to

            def to(self: Any, *args: Any, **kwargs: Any) -> Any:
                if self.dtype == torch.float64 and args[:1] == (torch.float32,) and not kwargs:
                    return self
                return original_to(self, *args, **kwargs)

            torch.Tensor.to = to  # type: ignore[method-assign]
            try:
                yield
            finally:
                torch.Tensor.to = original_to  # type: ignore[method-assign]

        norm_forward = RMSNorm.forward

        def forward(self: Any, hidden_states: Any) -> Any:
            with float64_kept():
                return norm_forward(self, hidden_states)

        RMSNorm.forward = forward  # type: ignore[method-assign]
        set_timesteps = scheduler.set_timesteps

        @functools.wraps(set_timesteps)  # (the pipeline checks its signature for `sigmas`)
        def ours_tables(*args: Any, **kwargs: Any) -> None:  # G6
            set_timesteps(*args, **kwargs)
            scheduler.timesteps = tensors["timesteps"].clone()
            scheduler.sigmas = tensors["sigmas"].clone()

        scheduler.set_timesteps = ours_tables  # type: ignore[method-assign]
    pipe = FluxPipeline(
        scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None, transformer=transformer,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    embeds, pooled, start = tensors["embeds"], tensors["pooled"], tensors["start"]
    rows, size, steps = embeds.shape[0], spec["height"], spec["steps"]
    common = {"height": size, "width": size, "num_inference_steps": steps,
              "max_sequence_length": embeds.shape[1], "output_type": "latent"}  # fmt: skip
    copies = {"mm_copy_blocks": spec["mm_copy_blocks"],
              "single_copy_blocks": spec["single_copy_blocks"]}  # fmt: skip
    with torch.no_grad():
        if spec["mode"] == "synthetic":  # infer_and_save
            final = pipe(
                prompt_embeds=embeds, pooled_prompt_embeds=pooled, guidance_scale=3.5,
                latents=start.tile(rows, 1, 1), **common, **copies,
            ).images  # fmt: skip
        else:  # invert_and_save
            inverted = pipe(
                prompt_embeds=embeds[:1], pooled_prompt_embeds=pooled[:1], guidance_scale=1,
                latents=start, invert_image=True, **common,
            )  # fmt: skip
            final = pipe(
                prompt_embeds=embeds, pooled_prompt_embeds=pooled,
                guidance_scale=[1] + [3] * (rows - 1), latents=inverted[-1].tile(rows, 1, 1),
                inverted_latent_list=inverted, **common, **copies,
            ).images  # fmt: skip
    save_file({"final": final.contiguous()}, str(folder / "official.safetensors"))


def run_case(checkout: Path, case: str, precision_glue: bool = True) -> Row:
    from safetensors.torch import load_file

    from benchmarks.parity.common import max_abs

    if not (checkout / "src" / "diffusers" / "pipelines" / "flux" / "pipeline_flux.py").is_file():
        raise FileNotFoundError(f"{checkout}/src/diffusers is missing from the checkout")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        mine, effect = ours(case, folder, precision_glue)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(checkout / "src"), str(REPO)]))
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.parity.stable_flow", "--fork-side", str(folder),
             "--official", str(checkout)],
            env=env, capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the fork's side failed:\n{done.stderr[-3000:]}")
        theirs = load_file(str(folder / "official.safetensors"))["final"]
    diff, scale = max_abs(theirs, mine)
    edit_diff, _ = max_abs(theirs[1], mine[1])
    mode, steps, vital, source_path = SETTINGS[case]
    compared = (
        f"final latents [src, edit], {'generation' if mode == 'synthetic' else 'real image'}, "
        f"vital {vital}, {steps} steps (edit row {edit_diff:.1e}; the injection moves it by "
        f"{effect:.1e})"
    )
    return Row(case, compared, diff, scale, DEVIATIONS.get(source_path))


def main(argv: list[str] | None = None) -> int:
    made = parser(__doc__, CHECKOUT, CASES)
    made.add_argument("--fork-side", help="(internal) run the fork's side on this folder")
    made.add_argument("--no-precision-glue", action="store_true", help="without G5 and G6")
    args = made.parse_args(argv)
    if args.fork_side:
        fork_side(Path(args.fork_side), Path(args.official))
        return 0
    glue = not args.no_precision_glue
    return report(METHOD, [run_case(Path(args.official), case, glue) for case in args.cases])


if __name__ == "__main__":
    raise SystemExit(main())
