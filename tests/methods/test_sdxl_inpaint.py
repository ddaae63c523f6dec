"""SDXL inpainting: the GT mask and the target prompt reach the inpainting pipeline unchanged,
the seed decides the result, and a checkpoint without 9 input channels is refused."""

from __future__ import annotations

import numpy as np
import pytest

from partedit_bench.api import EditRequest, MethodUnavailable, target_prompt
from partedit_bench.data.schema import load_image, load_mask
from partedit_bench.data.suites import load_suite
from partedit_bench.methods.sdxl_inpaint import InpaintOptions, SDXLInpaint
from tests.helpers import spy_on_pipe


def request(sample, backbone, seed=0):
    image = load_image(sample.original_image)
    mask = load_mask(sample.gt_mask, image.size)
    return EditRequest(sample=sample, image=image, seed=seed, options=None, backbone=backbone,
                       mask=mask)  # fmt: skip


def test_the_mask_and_prompt_reach_the_pipeline_and_the_seed_decides(tiny):
    backbone = tiny("tiny-sdxl")
    sample = load_suite("partworld").samples[0]
    method = SDXLInpaint(InpaintOptions(steps=2))
    method.preflight(backbone, [sample])
    assert method.pipe is None  # loaded when the method's first job starts
    method.inputs_fingerprint(sample)
    seen = spy_on_pipe(method)
    first = method.edit(request(sample, backbone))
    mask = np.asarray(seen["mask_image"]) > 127
    np.testing.assert_array_equal(mask, load_mask(sample.gt_mask, mask.shape[::-1]))
    assert seen["prompt"] == target_prompt(sample) == first.extras["target_prompt"]
    again = method.edit(request(sample, backbone))
    other = method.edit(request(sample, backbone, seed=1))
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))


def test_a_checkpoint_without_nine_channels_is_refused(tiny, monkeypatch):
    import partedit_bench.methods.specials as specials

    backbone = tiny("tiny-sdxl")
    monkeypatch.setattr(specials, "load_special", lambda b, kind: tiny("tiny-sdxl"))
    method = SDXLInpaint(InpaintOptions())
    method.preflight(backbone, [])
    with pytest.raises(MethodUnavailable, match="4-channel UNet, not 9"):
        method.inputs_fingerprint(load_suite("partworld").samples[0])
