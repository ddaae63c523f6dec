"""Every method's image preprocessing against its reference's, at a size where resizing happens:
the pixels a method hands to the VAE for a 96 px source on a 64 px tiny backbone equal the
reference's preprocessing re-derived from its code (resize filter, crop, value range). Each
method README's fidelity table names the reference lines; a method added later must add its
reference here (the test fails for a method it does not know)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from partedit_bench.api import METHOD_REGISTRY, EditRequest, build_options, resolve_method_class
from tests.methods.test_contract import backbone_name

SOURCE_SIZE = 96  # the tiny backbones' native size is 64: every method must resize


def pil(filter_: Image.Resampling):
    """PIL resize to the model's square size, then [-1, 1] (x / 127.5 - 1)."""

    def preprocess(image: Image.Image, size: int) -> torch.Tensor:
        array = np.asarray(image.convert("RGB").resize((size, size), filter_), np.float32)
        return torch.from_numpy(array / 127.5 - 1.0).permute(2, 0, 1)[None]

    return preprocess


def torch_nearest(image: Image.Image, size: int) -> torch.Tensor:
    """MasaCtrl `playground_real.ipynb` `load_image`: [-1, 1], then `F.interpolate` (nearest)."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 127.5 - 1.0)
    return F.interpolate(pixels.permute(2, 0, 1)[None], (size, size))


#: method -> its reference's preprocessing of a real image (None: the method encodes no image)
REFERENCE = {
    # null_text_w_ptp.ipynb `load_512`: PIL's default resize (BICUBIC), / 127.5 - 1
    "p2p": pil(Image.Resampling.BICUBIC),
    # DDPM_inversion prompt_to_prompt/ptp_classes.py `load_512`: the same
    "ef_ddpm": pil(Image.Resampling.BICUBIC),
    # PartEdit's real images follow EF-DDPM's (the release has no real-image path)
    "partedit": pil(Image.Resampling.BICUBIC),
    # ledits_pp pipeline_stable_diffusion_ledits.py `load_512`: PIL's default (BICUBIC)
    "ledits_pp": pil(Image.Resampling.BICUBIC),
    # blended-latent-diffusion text_editing_SD2.py:82 / text_editing_SDXL.py:102: BILINEAR
    "blended_latent": pil(Image.Resampling.BILINEAR),
    "masactrl": torch_nearest,
    # diffusers' pipelines resize with their VaeImageProcessor's default, Lanczos
    "ip2p": pil(Image.Resampling.LANCZOS),
    "sdxl_inpaint": pil(Image.Resampling.LANCZOS),
    "flux_kontext": pil(Image.Resampling.LANCZOS),
    "qwen_image_edit": pil(Image.Resampling.LANCZOS),
    # generation-only or no model: nothing encoded
    "stable_flow": pil(Image.Resampling.BICUBIC),  # run_stable_flow.py image2latent: see README
    "identity": None,
}


class Captured(Exception):
    pass


def first_vae_input(cls, backbone, sample, image, gt) -> torch.Tensor | None:
    """Runs the method until its first VAE encoding and returns the pixels it was given."""
    from partedit_bench.methods.specials import loaded_specials

    method = cls(build_options(cls, dict(cls.smoke_options)))
    method.preflight(backbone, [sample])
    method.inputs_fingerprint(sample)
    vaes = [backbone.vae] + [s.vae for s in loaded_specials()]
    seen: list[torch.Tensor] = []

    def capture(pixels, *args, **kwargs):
        seen.append(pixels.detach().float().cpu())
        raise Captured

    for vae in vaes:
        vae.encode = capture
    request = EditRequest(
        sample=sample, image=image, seed=0, options=method.options, backbone=backbone,
        mask=gt if method.needs_gt_mask() else None, synthetic=False,
    )  # fmt: skip
    try:
        method.edit(request)
    except Captured:
        pass
    finally:
        for vae in vaes:
            del vae.encode
        method.release()
    if not seen:
        return None
    pixels = seen[0]
    return pixels[:, :, 0] if pixels.dim() == 5 else pixels  # (Qwen-Image's video VAE: T = 1)


@pytest.fixture(scope="module")
def large_source():
    from partedit_bench.data.schema import load_image, load_mask
    from partedit_bench.data.suites import load_suite

    sample = load_suite("partworld").samples[0]
    image = load_image(sample.original_image)
    big = image.resize((SOURCE_SIZE, SOURCE_SIZE), Image.Resampling.BICUBIC)
    small = load_mask(sample.gt_mask, image.size)
    gt = np.asarray(Image.fromarray(small).resize(big.size, Image.Resampling.NEAREST))
    return sample, big, gt


def test_the_filters_this_test_tells_apart_differ_on_its_image(large_source):
    _, image, _ = large_source
    results = {
        f: pil(f)(image, 64)
        for f in (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.LANCZOS)
    }
    results["nearest"] = torch_nearest(image, 64)
    values = list(results.values())
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert (values[i] - values[j]).abs().max() > 1e-2


@pytest.mark.parametrize("name", sorted(METHOD_REGISTRY))
def test_a_methods_pixels_are_its_references_preprocessing(name, tiny, large_source):
    cls = resolve_method_class(name)
    if not cls.__module__.startswith("partedit_bench.methods."):
        pytest.skip(f"{name}: a method from outside this repository (its own tests check it)")
    assert name in REFERENCE, f"{name}: add its reference's preprocessing to REFERENCE"
    chosen = backbone_name(cls)
    if chosen is None:
        pytest.skip(f"{name}: no tiny backbone of its families")
    sample, image, gt = large_source
    pixels = first_vae_input(cls, tiny(chosen), sample, image, gt)
    if REFERENCE[name] is None:
        assert pixels is None
        return
    assert pixels is not None, f"{name} encoded no image"
    expected = REFERENCE[name](image, pixels.shape[-1])
    assert pixels.shape == expected.shape
    torch.testing.assert_close(pixels, expected, rtol=0, atol=2e-6)


def test_sdxl_inpaint_hands_image_and_mask_to_the_pipelines_own_resizing(
    tiny, large_source, monkeypatch
):
    """The reference's mask is the pipeline's `mask_processor` output (Lanczos, binarized at
    0.5): the adapter passes image and mask at the source's size so that the pipeline makes it."""
    from diffusers import StableDiffusionXLInpaintPipeline

    seen = {}

    def record(self, **kwargs):
        seen.update(kwargs)
        raise Captured

    monkeypatch.setattr(StableDiffusionXLInpaintPipeline, "__call__", record)
    sample, image, gt = large_source
    cls = resolve_method_class("sdxl_inpaint")
    method = cls(build_options(cls, dict(cls.smoke_options)))
    backbone = tiny("tiny-sdxl")
    method.preflight(backbone, [sample])
    method.inputs_fingerprint(sample)
    request = EditRequest(sample, image, 0, method.options, backbone, mask=gt)
    with pytest.raises(Captured):
        method.edit(request)
    native = method.special.resolution
    method.release()
    assert seen["image"].size == seen["mask_image"].size == (SOURCE_SIZE, SOURCE_SIZE)
    assert np.array_equal(np.asarray(seen["mask_image"]) > 127, gt)
    assert seen["height"] == seen["width"] == native != SOURCE_SIZE
