"""Parity of `partedit` (synthesis setting) with Gorluxor/PartEdit's released pipeline
(`stable_diffusion_xl_partedit.py`, `PartEditPipeline.__call__`, called as its demo's
`model.py` calls it), on tiny-sdxl.

Both sides in float64 on the CPU, the same weights, the shipped tiny-sdxl part tokens, and the
same x_T (drawn from the sample's seed as ours draws it; given to the official pipeline as
`latents=x_T.repeat(3, 1, 1, 1)`, its three paths). The official pipeline gets the demo's
arguments: `prompt=[prompt_original, edit prompt]`, `cross_attention_kwargs={"edit_type":
"replace", "n_self_replace": 0.0, "n_cross_replace": {"default_": 1.0, <edit words>: f}}`,
`extra_kwargs` omega 1.5 and `edit_steps=t_e`, `embedding_opt` = the token, guidance 7.5,
`output_type="latent"`; ours `PartEditOptions(steps, t_e, cross_replace=f)`, everything else
default. Compared: the final source and edit latents. Glue, nothing else changed:

G1 the word-swap mapper is built in float16 (`get_replacement_mapper_`, :2180) and `einsum`
   refuses mixed dtypes: it is cast to float64 (exact here: its entries are 0 and 1).
G2 the 40-layer list assumes SDXL's 70 cross-attention layers; tiny-sdxl has 22:
   `extra_kwargs["_layers_to_use"]` = the token's layers as indices into the execution-order
   cross-attention calls (the official hook for exactly this).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmarks.parity.common import (
    CHECKOUTS,
    Row,
    load_file,
    main_with_store,
    max_abs,
)

METHOD = "partedit"
CHECKOUT = CHECKOUTS[METHOD]
#: (sample, steps, t_e, cross-replace fraction)
CASES = ["pw0-00003:5:5:0.4", "pw0-00003:5:3:0.4", "pw0-00000:5:5:0.4", "pw0-00003:5:5:0.3",
         "pw0-00006:8:8:0.4", "pw0-00003:5:5:0.4:chartreuse"]  # fmt: skip
#: a case's last field: the sample's edit word replaced (a word of more tokens than "red")
DEVIATIONS = {
    "chartreuse": "3 tokens replace 1: the official mapper shares 1/3 in float16, ours exactly "
    "(the fidelity table's `mapper precision`)",
}


def official(checkout: Path, backbone: Any, sample: Any, token: Any, x_t: torch.Tensor,
             steps: int, t_e: int, cross: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    from partedit_bench.engine.attention import cross_attention_layers
    from partedit_bench.methods.partedit.options import plain_prompt

    module = load_file(checkout / "stable_diffusion_xl_partedit.py", "partedit_official")
    mapper = module.get_replacement_mapper
    module.get_replacement_mapper = lambda *a, **k: mapper(*a, **k).double()  # G1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = module.PartEditPipeline(**backbone.pipeline().components)
    every = cross_attention_layers(backbone.unet)
    layers = [every.index(name) for name in token.layers]  # G2
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        out = pipe(
            prompt=[sample.prompt_original, plain_prompt(sample)],
            num_inference_steps=steps,
            guidance_scale=7.5,
            latents=x_t.repeat(3, 1, 1, 1),
            cross_attention_kwargs={
                "edit_type": "replace",
                "n_self_replace": 0.0,
                "n_cross_replace": {"default_": 1.0, sample.edit: cross},
            },
            extra_kwargs={"omega": 1.5, "edit_steps": t_e, "_layers_to_use": layers},
            embedding_opt=token.embedding.to(torch.float64),
            output_type="latent",
            height=backbone.resolution,
            width=backbone.resolution,
        )
    latents = out.images
    return latents[0], latents[1]  # the source path, the edit path


#: the official latents of each case run, for `--store` (tests compare ours with them)
OFFICIAL_LATENTS: dict[str, dict[str, list[float]]] = {}


def run_case(checkout: Path, case: str) -> Row:
    from partedit_bench.data.schema import load_image
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.methods.partedit import PartEdit
    from partedit_bench.methods.partedit.options import PartEditOptions
    from partedit_bench.methods.partedit.sampling import run_partedit

    sample_id, steps_text, t_e_text, cross_text, *word = case.split(":")
    steps, t_e, cross = int(steps_text), int(t_e_text), float(cross_text)
    backbone = load_backbone("tiny-sdxl", dtype="float64")
    sample = {s.id: s for s in load_suite("partworld").samples}[sample_id]
    if word:  # the same edit with another word
        swap = lambda text: text.replace(f" {sample.edit} ", f" {word[0]} ")  # noqa: E731
        sample = dataclasses.replace(
            sample, edit=word[0], prompt_changed=swap(sample.prompt_changed),
            p2p_template=swap(sample.p2p_template),
        )  # fmt: skip
    options = PartEditOptions(steps=steps, t_e=t_e, cross_replace=cross)
    method = PartEdit(options)
    method.preflight(backbone, [sample])
    image = load_image(sample.original_image)
    run = run_partedit(backbone, sample, image, sample.seed, options, method.tokens, True)
    size = backbone.latent_resolution
    generator = torch.Generator("cpu").manual_seed(sample.seed)
    x_t = torch.randn((1, 4, size, size), generator=generator, dtype=torch.float64, device="cpu")
    fresh = load_backbone("tiny-sdxl", dtype="float64")  # the pipeline patches its own copy
    source, edit = official(
        checkout, fresh, sample, method.tokens[sample.part_token], x_t, steps, t_e, cross
    )
    OFFICIAL_LATENTS[case] = {
        "source": source.flatten().tolist(),
        "edit": edit.flatten().tolist(),
        "shape": list(edit.shape),
    }
    mine_source, mine_edit = run.latents[0], run.latents[1]
    edit_diff, scale = max_abs(edit, mine_edit)
    source_diff, _ = max_abs(source, mine_source)
    signal, _ = max_abs(mine_edit, mine_source)
    compared = (
        f"edit latent, {steps} steps, t_e {t_e}, cross {cross} (source latent: "
        f"{source_diff:.2e}; edit signal {signal:.3g})"
    )
    deviation = DEVIATIONS.get(word[0]) if word else None
    return Row(case, compared, max(edit_diff, source_diff), scale, deviation)


def main(argv: list[str] | None = None) -> int:
    command = "python -m benchmarks.parity.partedit --official OFFICIAL/PartEdit --store FILE"
    return main_with_store(
        argv, __doc__, METHOD, CHECKOUT, CASES, run_case, command,
        lambda: {"latents": OFFICIAL_LATENTS},
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
