"""Parity of `p2p` with google/prompt-to-prompt: its real-image notebook `null_text_w_ptp.ipynb`
(`NullInversion.ddim_loop` and `null_optimization`, then its `text2image_ldm_stable` with the
notebook's `AttentionReplace` / `AttentionRefine` and `LocalBlend`) and, in synthetic mode, its
generation notebook `prompt-to-prompt_stable.ipynb` (`ptp_utils.text2image_ldm_stable` with
that notebook's controllers), on tiny-sd; `ptp_utils.py` and `seq_aligner.py` from the checkout.

The notebooks are read from the checkout: only their imports, functions and classes run
(`common.notebook_definitions`), never their cells that load a model or run the examples.
Both sides in float64 on the CPU, the same weights; real images: the same x0 (our VAE encoding
of the sample's image), each side inverting it itself; synthetic: the same x_T (the sample's
seed, as ours draws it). Compared: the final latents of both rows [source, target]. Glue,
nothing else changed in the official code:

G1 diffusers renamed what `ptp_utils.register_attention_control` relies on (textual
   substitutions, each required to match): the class `CrossAttention` -> `Attention`, the
   keyword call `forward(x, context=None, mask=None)` -> `forward(x, encoder_hidden_states=None,
   attention_mask=None, **kwargs)` (the same two values), `reshape_heads_to_batch_dim` ->
   `head_to_batch_dim`, `reshape_batch_dim_to_heads` -> `batch_to_head_dim`; the removed
   `set_timesteps(offset=1)` argument dropped (tiny-sd's `steps_offset=1` is the same).
G2 the notebooks' constants are the harness's, not their config cells': LOW_RESOURCE False
   (the conditional half `attn[h // 2:]` edited in one batched call), NUM_DDIM_STEPS /
   NUM_DIFFUSION_STEPS = the case's T, GUIDANCE_SCALE 7.5, MAX_NUM_WORDS 77, device cpu,
   `ldm_stable` a StableDiffusionPipeline of tiny-sd's components; `tqdm`, `cv2` and
   `IPython.display` (progress and display only) are stubs.
G3 512 px -> tiny-sd: `height = width = 512` -> 128, so that `// 8` gives its 16 x 16 latent
   (its VAE's factor is 4); Local Blend's `down_cross[2:4] + up_cross[:3]`, the 16 x 16 layers
   at 512 px (latent / 4), -> the down and up maps of tiny-sd's latent / 4 = 4 x 4 layers,
   reshaped `4, 4`; the self-attention limits 32 ** 2 (real-image notebook, latent / 2) and
   16 ** 2 (generation notebook, latent / 4) -> 8 ** 2 and 4 ** 2.
G4 the float32 word-swap mapper cast to float64 for the notebook's `einsum`.
G5 DDIM schedulers on both sides keep `alphas_cumprod` in float64: diffusers stores float32,
   and the notebook's `next_step` / `prev_step` take the square roots of those float32 values in
   float32, where ours (`engine/inversion.py`) computes in the latents' float64. Without this
   glue the real-image rows differ by about 1e-5 (the `f32-alphas` case below measures it).
G6 none for the scheduler: the real-image notebook builds `DDIMScheduler(beta 0.00085..0.012,
   scaled_linear, clip_sample False, set_alpha_to_one False)`, tiny-sd's config with
   `steps_offset` 0 instead of 1; diffusers' `StableDiffusionPipeline` resets it to 1 when the
   notebook builds `ldm_stable` (a deprecation fix), so both sides here use the backbone's
   config, and the `notebook-scheduler` case runs the notebook's own constructor to show it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.parity.common import (
    CHECKOUTS,
    Row,
    float64_alphas,
    load_substituted,
    main_with_store,
    max_abs,
    notebook_definitions,
)

METHOD = "p2p"
CHECKOUT = CHECKOUTS[METHOD]
#: name -> (sample, steps, mode, threshold (None: no Local Blend), refine target or "", extra)
SETTINGS: dict[str, tuple[str, int, str, float | None, str, str]] = {
    "replace": ("pw0-00003", 5, "ddim", None, "", ""),
    "replace-blend": ("pw0-00003", 8, "ddim", 0.95, "", ""),
    "tokens-blend": ("pw0-00001", 8, "ddim", 0.95, "", ""),
    "refine-blend": ("pw0-00003", 8, "ddim", 0.95, "big", ""),
    "null-replace": ("pw0-00003", 6, "null", 0.95, "", ""),
    "null-refine": ("pw0-00003", 6, "null", 0.95, "big", ""),
    "synth-refine": ("pw0-00001", 6, "synth", 0.3, "", ""),
    "synth-replace": ("pw0-00003", 6, "synth", 0.95, "", ""),
    "synth-refine-8": ("pw0-00002", 8, "synth", 0.95, "", ""),
    "f32-alphas": ("pw0-00003", 6, "null", 0.95, "", "f32"),
    "notebook-scheduler": ("pw0-00003", 6, "null", 0.95, "", "own-scheduler"),
}
CASES = list(SETTINGS)
DEVIATIONS = {
    "f32": "float32 alphas on the notebook's side (G5 off): its inversion arithmetic in float32",
}

PTP_UTILS_GLUE = [  # G1
    ("'CrossAttention'", "'Attention'"),
    (
        "def forward(x, context=None, mask=None):",
        "def forward(x, encoder_hidden_states=None, attention_mask=None, **kwargs):\n"
        "            context, mask = encoder_hidden_states, attention_mask",
    ),
    ("reshape_heads_to_batch_dim", "head_to_batch_dim"),
    ("reshape_batch_dim_to_heads", "batch_to_head_dim"),
    ('extra_set_kwargs = {"offset": 1}', "extra_set_kwargs = {}"),
    ("height = width = 512", "height = width = 128"),  # G3 (its text2image_ldm_stable)
]
BLEND_LAYERS = (  # G3
    'attention_store["down_cross"][2:4] + attention_store["up_cross"][:3]',
    '[m for m in attention_store["down_cross"] + attention_store["up_cross"] if m.shape[1] == 16]',
)
NOTEBOOK_GLUE = {
    "null_text_w_ptp.ipynb": [
        BLEND_LAYERS,
        ("1, 16, 16, MAX_NUM_WORDS", "1, 4, 4, MAX_NUM_WORDS"),
        ("if att_replace.shape[2] <= 32 ** 2:", "if att_replace.shape[2] <= 8 ** 2:"),
        ("height = width = 512", "height = width = 128"),
    ],
    "prompt-to-prompt_stable.ipynb": [
        BLEND_LAYERS,
        ("1, 16, 16, MAX_NUM_WORDS", "1, 4, 4, MAX_NUM_WORDS"),
        ("if att_replace.shape[2] <= 16 ** 2:", "if att_replace.shape[2] <= 4 ** 2:"),
    ],
}


class _Quiet:  # G2: tqdm as the notebooks use it, without output
    def __init__(self, iterable: Any = None, *args: Any, **kwargs: Any):
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable)

    def update(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass


def stubs() -> None:
    """G2: modules imported for display only."""
    for name in ("cv2", "IPython", "IPython.display"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["IPython.display"].display = lambda *a, **k: None  # type: ignore[attr-defined]
    sys.modules["IPython"].display = sys.modules["IPython.display"]  # type: ignore[attr-defined]


def official_namespace(checkout: Path, notebook: str, backbone: Any, scheduler: Any,
                       steps: int) -> dict[str, Any]:  # fmt: skip
    """The notebook's definitions over the checkout's `ptp_utils` / `seq_aligner`, with the
    harness's constants and tiny-sd as `ldm_stable` (G2)."""
    from diffusers import StableDiffusionPipeline

    stubs()
    sys.modules.pop("seq_aligner", None)
    ptp_utils = load_substituted(checkout / "ptp_utils.py", "ptp_utils", PTP_UTILS_GLUE)
    ptp_utils.tqdm = _Quiet  # type: ignore[attr-defined]
    sys.path.insert(0, str(checkout))  # `import seq_aligner` from the checkout
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            components = {
                k: v for k, v in backbone.components.items()
                if k in ("vae", "text_encoder", "tokenizer", "unet")
            }  # fmt: skip
            model = StableDiffusionPipeline(
                **components, scheduler=scheduler, safety_checker=None,
                feature_extractor=None, requires_safety_checker=False,
            )  # fmt: skip
        namespace: dict[str, Any] = {
            "__name__": f"p2p_notebook_{notebook}",
            "LOW_RESOURCE": False,
            "NUM_DDIM_STEPS": steps,
            "NUM_DIFFUSION_STEPS": steps,
            "GUIDANCE_SCALE": 7.5,
            "MAX_NUM_WORDS": 77,
            "device": torch.device("cpu"),
            "ldm_stable": model,
            "tokenizer": model.tokenizer,
        }
        notebook_definitions(checkout / notebook, NOTEBOOK_GLUE[notebook], namespace)
    finally:
        sys.path.remove(str(checkout))
    namespace["tqdm"] = _Quiet
    return namespace


def controller_for(ns: dict[str, Any], prompts: list[str], words: list[str], steps: int,
                   threshold: float | None, refine: bool, notebook: str) -> Any:  # fmt: skip
    blend = None
    if threshold is not None:
        if notebook == "null_text_w_ptp.ipynb":  # its LocalBlend: th per pooled/unpooled mask
            blend = ns["LocalBlend"](prompts, [words, words], th=(threshold, threshold))
        else:
            blend = ns["LocalBlend"](prompts, [words, words], threshold=threshold)
    kind = ns["AttentionRefine"] if refine else ns["AttentionReplace"]
    controller = kind(prompts, steps, cross_replace_steps=0.4, self_replace_steps=0.4,
                      local_blend=blend)  # fmt: skip
    controller.mapper = controller.mapper.double() if not refine else controller.mapper  # G4
    return controller


def official_real(checkout: Path, backbone: Any, scheduler: Any, x0: torch.Tensor,
                  prompts: list[str], words: list[str], steps: int, threshold: float | None,
                  refine: bool, null_text: bool) -> torch.Tensor:  # fmt: skip
    notebook = "null_text_w_ptp.ipynb"
    ns = official_namespace(checkout, notebook, backbone, scheduler, steps)
    inverter = ns["NullInversion"](ns["ldm_stable"])
    inverter.init_prompt(prompts[0])
    ns["ptp_utils"].register_attention_control(inverter.model, None)
    trajectory = inverter.ddim_loop(x0)
    uncond = inverter.null_optimization(trajectory, 10, 1e-5) if null_text else None
    ns["x_t"] = trajectory[-1]  # its LocalBlend reads the notebook's global `x_t` for the size
    controller = controller_for(ns, prompts, words, steps, threshold, refine, notebook)
    latents, _ = ns["text2image_ldm_stable"](
        ns["ldm_stable"], prompts, controller, latent=trajectory[-1], num_inference_steps=steps,
        guidance_scale=7.5, uncond_embeddings=uncond, return_type="latent",
    )  # fmt: skip
    return latents


def official_synthetic(checkout: Path, backbone: Any, x_t: torch.Tensor, prompts: list[str],
                       words: list[str], steps: int, threshold: float | None,
                       refine: bool) -> torch.Tensor:  # fmt: skip
    notebook = "prompt-to-prompt_stable.ipynb"
    scheduler = type(backbone.components["scheduler"]).from_config(
        backbone.components["scheduler"].config
    )
    ns = official_namespace(checkout, notebook, backbone, scheduler, steps)
    seen: dict[str, torch.Tensor] = {}
    ns["ptp_utils"].latent2image = lambda vae, latents: seen.setdefault("latents", latents)
    controller = controller_for(ns, prompts, words, steps, threshold, refine, notebook)
    ns["ptp_utils"].text2image_ldm_stable(
        ns["ldm_stable"], prompts, controller, num_inference_steps=steps, guidance_scale=7.5,
        latent=x_t, low_resource=False,
    )  # fmt: skip
    return seen["latents"]


#: the official final latents of each case run, for `--store` (a test compares ours with them)
OFFICIAL_LATENTS: dict[str, list[float]] = {}


def ours(case: str) -> tuple[torch.Tensor, dict[str, Any], Any, Any]:
    """Our side of a case: the final [source, target] latents, the method's extras, the
    sample (a Refine case's with its added word) and the x0 the image encodes to."""
    from partedit_bench.api import EditRequest, target_prompt
    from partedit_bench.data.schema import load_image
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.methods.p2p import P2POptions, edit_latents

    sample_id, steps, mode, threshold, added, extra = SETTINGS[case]
    sample = {s.id: s for s in load_suite("partworld").samples}[sample_id]
    if added:  # a Refine case: one word added before the blend word
        target = target_prompt(sample).replace(
            f" {sample.blend_words[0]}", f" {added} {sample.blend_words[0]}", 1
        )
        sample = dataclasses.replace(sample, p2p_template=target)
    synthetic = mode == "synth"
    options = P2POptions(
        steps=steps, local_blend=threshold is not None, blend_threshold=threshold or 0.3,
        null_text=mode == "null",
    )  # fmt: skip
    with float64_alphas():
        backbone = load_backbone("tiny-sd", dtype="float64")
        image = load_image(sample.original_image)
        request = EditRequest(sample, image, 0, options, backbone, synthetic=synthetic)
        mine, extras = edit_latents(backbone, request, options)
        x0 = backbone.encode_images([image])
    return mine, extras, sample, x0


def run_case(checkout: Path, case: str) -> Row:
    from diffusers import DDIMScheduler

    from partedit_bench.api import generation_target, target_prompt
    from partedit_bench.engine.backbones import load_backbone

    _, steps, mode, threshold, _, extra = SETTINGS[case]
    synthetic = mode == "synth"
    mine, extras, sample, x0 = ours(case)
    # the notebooks install their forward on the attention modules for good: a fresh copy
    fresh = load_backbone("tiny-sd", dtype="float64")
    words = list(sample.blend_words)
    refine = extras["mode"] == "refine"
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), float64_alphas(extra != "f32"):
        if synthetic:
            prompts = [sample.prompt_original, generation_target(sample)]
            size = fresh.latent_resolution
            generator = torch.Generator("cpu").manual_seed(sample.seed)  # ours draws x_T so
            x_t = torch.randn(
                (1, 4, size, size), generator=generator, dtype=torch.float64, device="cpu"
            )
            theirs = official_synthetic(checkout, fresh, x_t, prompts, words, steps, threshold,
                                        refine)  # fmt: skip
        else:
            prompts = [sample.p2p_prompt or sample.prompt_original, target_prompt(sample)]
            if extra == "own-scheduler":  # G6: the notebook's own constructor
                scheduler = DDIMScheduler(
                    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    clip_sample=False, set_alpha_to_one=False,
                )  # fmt: skip
            else:
                scheduler = DDIMScheduler.from_config(fresh.components["scheduler"].config)
            theirs = official_real(checkout, fresh, scheduler, x0, prompts, words, steps,
                                   threshold, refine, mode == "null")  # fmt: skip
    OFFICIAL_LATENTS[case] = theirs.double().flatten().tolist()
    diff, scale = max_abs(theirs, mine)
    target_diff, _ = max_abs(theirs[1], mine[1])
    signal = float((mine[1] - mine[0]).abs().max())
    what = {"ddim": "DDIM inversion", "null": "null-text inversion", "synth": "generation"}[mode]
    blend = "no Local Blend" if threshold is None else f"Local Blend {threshold}"
    compared = (
        f"final latents [src, tgt], {extras['mode']}, {what}, {blend}, T {steps} (target row "
        f"{target_diff:.1e}, edit signal {signal:.2f})"
    )
    return Row(case, compared, diff, scale, DEVIATIONS.get(extra))


def main(argv: list[str] | None = None) -> int:
    command = "python -m benchmarks.parity.p2p --official OFFICIAL/prompt-to-prompt --store FILE"
    notebooks = "Enigma-li/prompt-to-prompt 7ec3e5b (p2p README, Parity)"
    return main_with_store(
        argv, __doc__, METHOD, CHECKOUT, CASES, run_case, command,
        lambda: {"notebooks": notebooks, "latents": OFFICIAL_LATENTS},
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
