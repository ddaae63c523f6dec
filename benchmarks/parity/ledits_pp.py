"""Parity of `ledits_pp` on SD with ml-research/ledits_pp (`src/leditspp/
pipeline_stable_diffusion_ledits.py`: `StableDiffusionPipeline_LEDITS.invert`, then
`__call__` with the edit concept), on tiny-sd at 64 px.

Both sides in float64 on the CPU, the same weights, the same image file and the same seed (so
the same x_t draws: both draw them from a CPU generator in the reference's order). Compared: the
final latents. Glue, nothing else changed in the official code:

L1 import locations under diffusers 0.42: `diffusers.utils.randn_tensor` (now in
   `diffusers.utils.torch_utils`) and `diffusers.pipelines.semantic_stable_diffusion` (now under
   `diffusers.pipelines.deprecated`) are given at their old names; the package's `__init__`
   (which also imports the SDXL and DeepFloyd-IF pipelines) is not run.
L2 `output_type="latent"` to read the final latents.
L3 the reference's fixed attention-mask resolution 16 exists at tiny-sd's 64 px latent of 16:
   ours is given `attention_resolution=16` for the attention and intersect masks.

SDXL cases (`sdxl:`): `pipeline_stable_diffusion_xl_ledits.py` (`StableDiffusionPipelineXL_LEDITS
.invert`, then `__call__`) on tiny-sdxl at 64 px, the reference's SDXL defaults (warm-up 10, a
VAE posterior sample drawn from the generator before the x_t draws), the noise mask (the
reference's attention mask has a fixed resolution of 32, which tiny-sdxl's 64 px latent does
not have). Glue besides L1 and L2:
L5 (`sd256:` cases) tiny-sd at 256 px, a size where both sides resize the 64 px image (PIL's
   bicubic on both): the tiny UNet's `sample_size` raised to 64 so that the reference's
   `load_512(sizes=(sample_size * 4, ...))` and its fixed mask resolution 16 (= latent / 4) match
   ours at `resolution=256` and the automatic `attention_resolution`.
   `sdxl512:` cases: tiny-sdxl at 512 px the same way (`sample_size` 128, the reference's SDXL
   mask resolution 32 = latent / 4), with the attention mask and a warm-up of 2 steps.
L4 the SDXL reference fails without an editing prompt, so its reconstruction case passes the
   concept with `edit_guidance_scale=0` (ours: `edit_guidance=0`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import tempfile
import types
import warnings
from pathlib import Path
from typing import Any

from benchmarks.parity.common import CHECKOUTS, Row, max_abs, parser, report

METHOD = "ledits_pp"
CHECKOUT = CHECKOUTS[METHOD]
#: (sample, steps, mask, edit): mask "-" with edit "none" is the reconstruction
CASES = ["pw0-00003:15:noise:none", "pw0-00003:6:noise:none", "pw0-00003:8:noise:edit",
         "pw0-00003:15:intersect:edit", "pw0-00003:8:attention:edit",
         "sdxl:pw0-00003:15:noise:none", "sdxl:pw0-00003:15:noise:edit",
         "sdxl:pw0-00007:12:noise:edit", "sd256:pw0-00007:15:intersect:edit",
         "sdxl512:pw0-00003:6:attention:edit"]  # fmt: skip


def official_module(checkout: Path, xl: bool = False) -> Any:
    import diffusers.pipelines
    import diffusers.utils
    from diffusers.pipelines.deprecated import semantic_stable_diffusion
    from diffusers.utils.torch_utils import randn_tensor

    diffusers.utils.randn_tensor = randn_tensor  # type: ignore[attr-defined]  (L1)
    sys.modules.setdefault(
        "diffusers.pipelines.semantic_stable_diffusion", semantic_stable_diffusion
    )
    folder = checkout / "src" / "leditspp"
    name = "pipeline_stable_diffusion_xl_ledits" if xl else "pipeline_stable_diffusion_ledits"
    if not (folder / f"{name}.py").is_file():
        raise FileNotFoundError(f"{folder}/{name}.py is missing from the checkout")
    package = types.ModuleType("leditspp")  # L1: its files, not its __init__
    package.__path__ = [str(folder)]
    sys.modules["leditspp"] = package
    return importlib.import_module(f"leditspp.{name}")


def official_sdxl(checkout: Path, backbone: Any, image_path: str, concept: str, steps: int,
                  guidance: float, mask: str, warmup: int) -> Any:  # fmt: skip
    import torch

    module = official_module(checkout, xl=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet",
                 "scheduler")  # fmt: skip
        pipe = module.StableDiffusionPipelineXL_LEDITS(**{k: backbone.components[k] for k in parts})
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        pipe.invert(
            image_path, source_prompt="", num_inversion_steps=steps, skip=0.15,
            generator=torch.Generator("cpu").manual_seed(0), verbose=False,
        )  # fmt: skip
        out = pipe(
            editing_prompt=[concept],
            edit_guidance_scale=guidance,
            edit_threshold=0.9,
            edit_warmup_steps=warmup,
            use_cross_attn_mask=mask in ("attention", "intersect"),
            use_intersect_mask=mask == "intersect",
            output_type="latent",
            verbose=False,
        )  # fmt: skip  (L2, L4)
    return out.images


def official(checkout: Path, backbone: Any, image_path: str, concept: str | None, steps: int,
             mask: str) -> Any:  # fmt: skip
    import torch

    module = official_module(checkout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
        pipe = module.StableDiffusionPipeline_LEDITS(
            **{k: backbone.components[k] for k in parts}, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        pipe.invert(
            image_path, source_prompt="", num_inversion_steps=steps, skip=0.15,
            generator=torch.Generator("cpu").manual_seed(0), verbose=False,
        )  # fmt: skip
        out = pipe(
            editing_prompt=None if concept is None else [concept],
            edit_guidance_scale=5.0,
            edit_threshold=0.9,
            edit_warmup_steps=0,
            use_cross_attn_mask=mask in ("attention", "intersect"),
            use_intersect_mask=mask == "intersect",
            output_type="latent",  # L2
            verbose=False,
        )
    return out.images


def run_case(checkout: Path, case: str) -> Row:
    from partedit_bench.api import EditRequest
    from partedit_bench.data.schema import load_image
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.methods.ledits_pp import LeditsOptions, LeditsPP, concept, edit_latents

    prefix = case.split(":")[0] if case.count(":") == 4 else ""
    xl, large = prefix.startswith("sdxl"), prefix in ("sd256", "sdxl512")
    warmup = 2 if prefix == "sdxl512" else (10 if xl else 0)
    sample_id, steps_text, mask, edit = case.split(":")[-4:]
    steps = int(steps_text)
    name = "tiny-sdxl" if xl else "tiny-sd"

    def backbone_for_case() -> Any:
        made = load_backbone(name, dtype="float64")
        if large:  # L5
            made.resolution = 512 if xl else 256
            latent = made.resolution // 4
            made.unet.register_to_config(sample_size=latent)
            made.unet.sample_size = latent  # (the attribute the reference reads)
        return made

    backbone = backbone_for_case()
    sample = {s.id: s for s in load_suite("partworld").samples}[sample_id]
    image = load_image(sample.original_image)
    options = LeditsOptions(
        steps=steps, mask=mask, attention_resolution=0 if xl or large else 16,  # L3
        edit_guidance=5.0 if edit == "edit" else 0.0, warmup=warmup,
    )  # fmt: skip
    method = LeditsPP(options)
    method.load(backbone)
    request = EditRequest(sample=sample, image=image, seed=0, options=options, backbone=backbone)
    mine = edit_latents(method, request).latents
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "image.png"
        image.save(path)
        fresh = backbone_for_case()  # the pipeline's own processors
        if xl:
            theirs = official_sdxl(
                checkout, fresh, str(path), concept(sample), steps,
                5.0 if edit == "edit" else 0, mask, warmup,
            )  # fmt: skip
        else:
            theirs = official(
                checkout, fresh, str(path), concept(sample) if edit == "edit" else None, steps,
                mask,
            )  # fmt: skip
    diff, scale = max_abs(theirs, mine)
    what = "reconstruction" if edit == "none" else f'"{concept(sample)}", mask {mask}'
    where = f"{name} at {backbone.resolution} px"
    return Row(case, f"final latents, {where}, {steps} steps, {what}", diff, scale)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, CHECKOUT, CASES).parse_args(argv)
    return report(METHOD, [run_case(Path(args.official), case) for case in args.cases])


if __name__ == "__main__":
    raise SystemExit(main())
