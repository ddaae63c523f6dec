"""PartEdit's core pieces against independent references, without a diffusion model: Otsu's
threshold against scikit-image's, the processor (when it neither localizes, swaps nor blends
numerically) against diffusers' own attention processor, masks included, and the small rules
of the threshold and the batch rows."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor

from partedit_bench.methods.partedit import core


def test_otsu_equals_scikit_images_threshold_otsu():
    from skimage.filters import threshold_otsu

    generator = torch.Generator().manual_seed(0)
    for low, high in ((0.0, 1.0), (0.3, 0.9), (-2.0, 5.0)):
        values = low + (high - low) * torch.rand(4000, generator=generator)
        values[:1500] *= 0.5  # two populations
        ours = core.otsu(values)
        theirs = threshold_otsu(values.numpy(), nbins=256)
        assert ours == pytest.approx(float(theirs), abs=1e-5 * (high - low))
    assert core.otsu(torch.full((5, 5), 0.25)) == 0.25  # a constant map: its value


def test_threshold_mask_defaults_dtype_and_unknown_strategy():
    m = torch.linspace(0, 1, 64, dtype=torch.float64).reshape(8, 8)
    default, k = core.threshold_mask(m)
    explicit, k2 = core.threshold_mask(m, "adaptive", 1.5)
    assert torch.equal(default, explicit) and k == k2
    for strategy in ("adaptive", "soft", "binary", "otsu"):
        assert core.threshold_mask(m, strategy)[0].dtype == torch.float64
    with pytest.raises(ValueError, match="unknown threshold strategy 'median'"):
        core.threshold_mask(m, "median")


def test_rows_with_and_without_classifier_free_guidance():
    state = core.EditState(paths=2, cfg=True)
    assert state.rows(core.SRC) == [0, 2] and state.rows(core.EDIT) == [1, 3]
    assert state.cond_row(core.EDIT) == 3
    single = core.EditState(paths=2, cfg=False)
    assert single.rows(core.SRC) == [0] and single.rows(core.EDIT) == [1]
    assert single.cond_row(core.EDIT) == 1
    assert core.EditState().mean_mask() is None  # no step has made a mask yet


@pytest.mark.parametrize("scale_qk", [True, False])
@pytest.mark.parametrize("swap_self", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_the_processor_equals_diffusers_attention_when_nothing_is_edited(
    scale_qk, swap_self, with_mask
):
    """Source and edit rows identical: the self-attention swap (the probabilities path) and the
    fused path must both give diffusers' explicit `AttnProcessor` output, its attention mask and
    the module's scale included (`scale_qk=False`: 1; diffusers' `AttnProcessor2_0` ignores
    that and uses 1 / sqrt(d))."""
    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4, scale_qk=scale_qk).double().eval()
    tokens = torch.randn(2, 16, 8, dtype=torch.float64)  # (uncond, cond) of one path
    hidden = tokens.repeat_interleave(2, dim=0)  # rows: [u src, u edit, c src, c edit]
    mask = None
    if with_mask:  # additive key mask: the last 5 keys blocked for every query
        mask = torch.zeros(4, 1, 16, dtype=torch.float64)
        mask[..., 11:] = -1e4
    state = core.EditState(
        paths=2, cfg=True, latent_size=(4, 4), total_calls=10**6,
        self_replace_steps=1 if swap_self else 0, self_replace_tokens=16,
    )  # fmt: skip
    state.begin_step(0)
    ours = core.PartEditProcessor("down.attn1", state)(attn, hidden, attention_mask=mask)
    theirs = AttnProcessor()(attn, hidden, attention_mask=mask)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    if with_mask:  # and the mask acts: without it the output differs
        unmasked = AttnProcessor()(attn, hidden)
        assert (unmasked - theirs).abs().max() > 1e-3


def test_a_step_mask_uses_the_states_threshold_and_reports_otsu_for_one_part():
    m = torch.linspace(0, 1, 16).reshape(4, 4) ** 2
    for omega in (1.0, 1.5):
        state = core.EditState(mask_size=(4, 4), threshold="adaptive", omega=omega)
        state.begin_step(0)
        state.maps = {"part": [m]}
        state.finish_step()
        normalized = core.aggregate({"part": [m]}, (4, 4), 1)["part"]
        expected, k = core.threshold_mask(normalized, "adaptive", omega)
        assert torch.equal(state.mask, expected) and state.otsu_k == [k]
        assert state.maps == {}  # the step's maps are consumed
    two = core.EditState(mask_size=(4, 4))
    two.begin_step(0)
    two.maps = {"a": [m], "b": [m.flip(0)]}
    two.finish_step()
    assert two.otsu_k == [None]  # one k per step only when there is one part


def test_a_given_mask_blends_while_the_step_is_below_t_e():
    state = core.EditState(fixed_mask=torch.ones(4, 4), t_e=1, latent_size=(4, 4), total_calls=100)
    state.begin_step(0)
    assert state.layer_mask(16) is not None
    state.begin_step(1)
    assert state.layer_mask(16) is None


def test_numpy_mask_is_width_by_height():
    mask = torch.zeros(4, 4)
    mask[:, :2] = 1.0
    array = core.numpy_mask(mask, (6, 2))  # (width, height)
    assert array.shape == (2, 6)
    assert array[:, 0].min() == 1.0 and array[:, -1].max() == 0.0
