"""LEDITS++: the inversion reconstructs its input, the schedule and masks are the reference's,
warm-up and the attention-resolution error."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from partedit_bench.api import EditRequest
from partedit_bench.data.schema import load_image
from partedit_bench.data.suites import load_suite
from partedit_bench.engine import inversion
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.errors import UserError
from partedit_bench.methods.ledits_pp import (
    LeditsOptions,
    LeditsPP,
    attention_mask,
    concept,
    edit_latents,
    masked_guidance,
)


def run(backbone, sample, **options):
    method = LeditsPP(LeditsOptions(**options))
    method.load(backbone)
    request = EditRequest(
        sample=sample,
        image=load_image(sample.original_image),
        seed=0,
        options=method.options,
        backbone=backbone,
    )
    return method, request, edit_latents(method, request)


def test_timesteps_are_the_references_linspace():
    t = inversion.ledits_timesteps(1000, 30, 0.15)
    assert len(t) == 30 and t[0] == 849 and t[-1] == 1 and t.dtype == torch.int64
    assert inversion.ledits_timesteps(1000, 6, 0.15).tolist() == [849, 679, 509, 340, 170, 1]


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sd-v", "tiny-sdxl"])
def test_inversion_reconstructs_its_input_from_15_steps(name):
    backbone = load_backbone(name, dtype="float64")
    sample = load_suite("partworld").samples[3]
    _, request, result = run(backbone, sample, steps=15, edit_guidance=0.0)
    how = "sample" if backbone.family == "sdxl" else "mode"
    from partedit_bench.methods.ledits_pp import encode_image_latents

    x0 = encode_image_latents(backbone, request.image, how, torch.Generator().manual_seed(0))
    assert (result.latents - x0).abs().max() < 1e-4
    # fewer than 15 steps: the sampler's last step is first order, the inversion's second
    # order (the reference's lower_order_final), so the input comes back only approximately
    _, _, short = run(backbone, sample, steps=6, edit_guidance=0.0)
    assert (short.latents - x0).abs().max() > 1e-3


def test_measure_reconstruction_reports_the_inversions_own_error():
    """The reported reconstruction error equals the one measured from outside: the edit with
    no edit guidance (the sampler over the inversion's noise) against the input's latents, at
    15 steps (both about 1e-14 or less) and at 6 (the sampler's first-order last step: above
    1e-3)."""
    from partedit_bench.methods.ledits_pp import encode_image_latents

    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = load_suite("partworld").samples[3]
    for steps in (15, 6):
        _, request, result = run(backbone, sample, steps=steps, measure_reconstruction=True)
        _, _, plain = run(backbone, sample, steps=steps, edit_guidance=0.0)
        x0 = encode_image_latents(backbone, request.image, "mode", torch.Generator().manual_seed(0))
        outside = float((plain.latents - x0).abs().max())
        assert result.extras["reconstruction_max_abs"] == pytest.approx(
            outside, rel=1e-6, abs=1e-12
        )
    assert outside > 1e-3  # (6 steps: the reported value is not a constant)


def test_guidance_acts_only_inside_the_implicit_mask():
    torch.manual_seed(0)
    guidance = torch.randn(1, 4, 16, 16, dtype=torch.float64)
    out, mask = masked_guidance(guidance, 0.9, "noise", None)
    magnitude = guidance.abs().sum(1)[0]
    kept = mask.bool()
    assert kept.sum() == 26  # the top 10 % of 256 positions, the quantile included
    assert magnitude[kept].min() >= magnitude[~kept].max()
    assert torch.equal(out[:, :, kept], guidance[:, :, kept])
    assert not out[:, :, ~kept].any()
    cross = torch.zeros(16, 16, dtype=torch.float64)
    cross[:8] = 1
    both, both_mask = masked_guidance(guidance, 0.9, "intersect", cross)
    assert torch.equal(both_mask.bool(), kept & cross.bool())
    assert not both[:, :, ~both_mask.bool()].any()
    only, only_mask = masked_guidance(guidance, 0.9, "attention", cross)
    assert torch.equal(only_mask, cross) and not only[:, :, 8:].any()


def test_attention_mask_follows_the_summed_token_maps():
    heads, res = 2, 8
    maps = torch.full((heads, res, res, 77), 1e-3, dtype=torch.float64)
    maps[:, 2:4, 5:7, 3] = 1.0  # one of the summed positions peaks on a 2 x 2 patch
    maps[:, 6:8, 0:2, 0] = 5.0  # the start token is never counted
    mask = attention_mask([maps, maps], 75, 0.9, (16, 16))
    assert mask.shape == (16, 16)
    assert mask[4:8, 10:14].all() and not mask[12:16, 0:4].any()


def test_warmup_delays_the_guidance_and_sdxl_defaults_are_the_sdxl_references():
    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = load_suite("partworld").samples[3]
    method, _, result = run(backbone, sample, steps=6, warmup=2)
    assert result.extras["guided_steps"] == 4
    assert method.defaults() == (6, 2, "mode")
    xl = LeditsPP(LeditsOptions())
    xl.load(load_backbone("tiny-sdxl"))
    assert xl.defaults() == (100, 10, "sample")
    sd = LeditsPP(LeditsOptions())
    sd.load(backbone)
    assert sd.defaults() == (30, 0, "mode")


def test_guided_edit_differs_from_the_reconstruction_only_where_guided():
    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = load_suite("partworld").samples[3]
    _, _, plain = run(backbone, sample, steps=4, edit_guidance=0.0)
    _, _, edited = run(backbone, sample, steps=4, warmup=3)
    # one guided step, the last: the edit moves the latents only where its mask is on
    diff = (edited.latents - plain.latents).abs()[0].amax(0)
    assert diff.max() > 1e-3
    assert not diff[edited.masks[-1] == 0].any()


def test_a_missing_mask_resolution_names_the_ones_there_are():
    backbone = load_backbone("tiny-sd")
    sample = load_suite("partworld").samples[3]
    with pytest.raises(UserError, match=r"no cross-attention layer at 5x5.*16, 8, 4"):
        run(backbone, sample, steps=2, attention_resolution=5)


def test_concept_and_options():
    sample = load_suite("partworld").samples[3]
    assert (
        concept(sample) == "red head"
    )  # pw0-00003: "... a gray horse with a red <animal-head> ..."
    with pytest.raises(UserError, match="edit_threshold"):
        LeditsOptions(edit_threshold=1.5)
    assert dataclasses.replace(LeditsOptions(), mask="noise").mask == "noise"


def test_partedit_with_ledits_inversion_keeps_the_source_path_on_the_input():
    from partedit_bench.methods.partedit.options import PartEditOptions
    from partedit_bench.methods.partedit.sampling import run_partedit
    from tests.methods.test_partedit import random_tokens, sample_of

    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = sample_of()
    image = load_image(sample.original_image)
    options = PartEditOptions(steps=15, inversion="ledits")
    tokens = random_tokens(backbone, ["animal-head"])
    edit = run_partedit(backbone, sample, image, 0, options, tokens, synthetic=False)
    x0 = backbone.encode_images([image])
    assert (edit.latents[0] - x0[0]).abs().max() < 1e-6  # the source row comes back
    assert (edit.latents[1] - x0[0]).abs().max() > 1e-3  # the edit row does not
