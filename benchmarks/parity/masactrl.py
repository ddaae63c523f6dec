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

Real images (`real:` cases): `playground_real.ipynb` as it runs (its `load_image` read from the
notebook in the checkout, then `model.invert(source_image, "", guidance_scale=7.5,
return_intermediates=True)` and `model(["", target], latents=start_code, guidance_scale=7.5)`
with the control), the same image file on both sides. Glue for those, besides G1-G5:
R1 `load_image`'s `F.interpolate(image, (512, 512))` -> tiny-sd's 64 px (a substitution); its
   float32 pixels cast to float64 for the float64 VAE; only the notebook's imports, functions
   and classes run (its GPU selection, model download and example cells do not); `omegaconf`
   and `torchvision.utils.save_image` (unused here) are stubs.
R2 DDIM schedulers on both sides keep `alphas_cumprod` in float64 (`common.float64_alphas`):
   the pipeline's `next_step` / `step` take square roots of diffusers' float32 table in float32,
   ours in float64. The `f32` case runs without it (a documented deviation with its number).
The `*-96` cases give both sides a 96 px image, so that both resize it to 64 px (the
reference: torch's nearest `F.interpolate`; ours: option `resize=nearest`, the default).
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
CASES = [
    "pw0-00003:6:1:10",
    "pw0-00002:8:2:10",
    "pw0-00003:6:0:0",
    "real:pw0-00003:6:1:10",
    "real:pw0-00007:8:2:10",
    "real-96:pw0-00003:6:1:10",
    "real-f32:pw0-00003:6:1:10",
]
DEVIATIONS = {
    "real-f32": "float32 alphas on the reference's side (R2 off): its inversion in float32",
}


def official(checkout: Path, backbone: Any, prompts: list[str], x_t: torch.Tensor,
             steps: int, start_step: int, layer_idx: list[int]) -> torch.Tensor:  # fmt: skip

    pipeline, control, utils = load_pipeline_modules(checkout)
    model, seen = playground_pipeline(pipeline, backbone)
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


def playground_pipeline(pipeline: Any, backbone: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """`MasaCtrlPipeline` of tiny-sd's components with the playgrounds' scheduler (G2), and the
    dict its final latents land in (G5)."""
    from diffusers import DDIMScheduler

    components = dict(backbone.components)
    components["scheduler"] = DDIMScheduler(
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
    return model, seen


def load_pipeline_modules(checkout: Path) -> tuple[Any, Any, Any]:
    for stub in ("cv2", "pytorch_lightning", "omegaconf"):  # G1, R1
        sys.modules.setdefault(stub, types.ModuleType(stub))
    sys.modules["pytorch_lightning"].seed_everything = lambda *a, **k: None  # type: ignore[attr-defined]
    sys.modules["omegaconf"].OmegaConf = None  # type: ignore[attr-defined]
    if not (checkout / "masactrl" / "masactrl.py").is_file():
        raise FileNotFoundError(f"{checkout}/masactrl/masactrl.py is missing from the checkout")
    sys.path.insert(0, str(checkout))
    try:
        return (
            importlib.import_module("masactrl.diffuser_utils"),
            importlib.import_module("masactrl.masactrl"),
            importlib.import_module("masactrl.masactrl_utils"),
        )
    finally:
        sys.path.remove(str(checkout))


def official_real(checkout: Path, backbone: Any, image_path: Path, target: str, steps: int,
                  start_step: int, layer_idx: list[int]) -> torch.Tensor:  # fmt: skip

    from benchmarks.parity.common import notebook_definitions

    pipeline, control, utils = load_pipeline_modules(checkout)
    namespace: dict[str, Any] = {"__name__": "masactrl_playground_real"}
    sys.path.insert(0, str(checkout))
    try:
        notebook_definitions(
            checkout / "playground_real.ipynb", [("(512, 512)", "(64, 64)")], namespace
        )  # R1
    finally:
        sys.path.remove(str(checkout))
    model, seen = playground_pipeline(pipeline, backbone)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        source_image = namespace["load_image"](str(image_path), torch.device("cpu")).double()
        start_code, _ = model.invert(
            source_image, "", guidance_scale=7.5, num_inference_steps=steps,
            return_intermediates=True,
        )  # fmt: skip
        editor = control.MutualSelfAttentionControl(
            start_step, 0, layer_idx=layer_idx, total_steps=steps
        )  # G4
        utils.regiter_attention_editor_diffusers(model, editor)
        model(
            ["", target],
            latents=start_code.expand(2, -1, -1, -1),
            guidance_scale=7.5,
            num_inference_steps=steps,
            height=128,
            width=128,
        )  # fmt: skip  (G3)
    return seen["latents"]


def run_real_case(checkout: Path, case: str) -> Row:
    import tempfile

    from PIL import Image

    from benchmarks.parity.common import float64_alphas
    from partedit_bench.api import target_prompt
    from partedit_bench.data.schema import load_image
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.methods.masactrl import (
        MasaCtrlOptions,
        controlled_layers,
        edit_latents,
        self_attention_layers,
    )

    kind, sample_id, steps_text, start_text, layer_text = case.split(":")
    steps, start_step, start_layer = int(steps_text), int(start_text), int(layer_text)
    sample = {s.id: s for s in load_suite("partworld").samples}[sample_id]
    target = target_prompt(sample)
    options = MasaCtrlOptions(steps=steps, start_step=start_step, start_layer=start_layer)
    with tempfile.TemporaryDirectory() as scratch:
        image_path = Path(sample.original_image)
        image = load_image(image_path)
        if kind == "real-96":  # a size both sides resize from
            image = image.resize((96, 96), Image.Resampling.BICUBIC)
            image_path = Path(scratch) / "source.png"
            image.save(image_path)
        with float64_alphas():
            backbone = load_backbone("tiny-sd", dtype="float64")
            mine, _ = edit_latents(backbone, image, target, options)
        every = self_attention_layers(backbone.unet)
        layer_idx = [every.index(n) for n in controlled_layers(backbone.unet, start_layer)]
        fresh = load_backbone("tiny-sd", dtype="float64")  # (the editor patches for good)
        with float64_alphas(kind != "real-f32"):  # R2
            theirs = official_real(checkout, fresh, image_path, target, steps, start_step,
                                   layer_idx)  # fmt: skip
    diff, scale = max_abs(theirs, mine)
    target_diff, _ = max_abs(theirs[1], mine[1])
    size = "96 px source resized to 64" if kind == "real-96" else "64 px source"
    compared = (
        f"final latents, real image ({size}), {steps} steps, {len(layer_idx)} of {len(every)} "
        f"blocks (target row: {target_diff:.2e})"
    )
    return Row(case, compared, diff, scale, DEVIATIONS.get(kind))


def run_case(checkout: Path, case: str) -> Row:
    if case.startswith("real"):
        return run_real_case(checkout, case)
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
