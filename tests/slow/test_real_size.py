"""Real-size architectures with random weights (`make test-slow`: 3 min 9 s on 2 CPU
cores, 15 GB peak memory): the layer structure the methods' defaults assume, our attention
processors equal to diffusers' at full size, and one denoising step of PartEdit, p2p and
masactrl on the whole `random-sd21` and `random-sdxl` backbones (UNet, VAE and text encoders at
their real size) at 128 px, with the processors each installs seen on every attention module
they must cover."""

from __future__ import annotations

import gc
from collections import Counter

import numpy as np
import pytest
import torch

from partedit_bench.engine.fullsize import SD21_UNET, SDXL_UNET

pytestmark = pytest.mark.slow

SD21 = SD21_UNET
SDXL = SDXL_UNET


@pytest.mark.parametrize(
    ("config", "family", "layers", "query_sides"),
    [(SD21, "sd", 16, {32, 16, 8, 4}), (SDXL, "sdxl", 70, {16, 8})],  # with the mid block
    ids=["sd21", "sdxl"],
)
def test_real_size_unet_layers_and_processors(config, family, layers, query_sides):
    from diffusers import UNet2DConditionModel

    from partedit_bench.engine.attention import (
        RecordingAttnProcessor,
        cross_attention_layers,
        processors,
    )
    from partedit_bench.methods.partedit.sampling import localization_layers

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).eval()
    names = cross_attention_layers(unet)
    assert len(names) == layers
    if family == "sdxl":  # partedit's layers=auto: the released pipeline's 40 of SDXL's 70
        assert len(localization_layers(unet, "auto", [])) == 40
    side = 32  # a 256 px image: one call stays a few seconds on a CPU
    x = torch.randn(2, 4, side, side)
    context = torch.randn(2, 77, config["cross_attention_dim"])
    added = None
    if family == "sdxl":
        added = {"text_embeds": torch.randn(2, 1280), "time_ids": torch.tensor([[256.0] * 6] * 2)}
    with torch.no_grad():
        reference = unet(x, 500, context, added_cond_kwargs=added).sample
        store: dict[str, list[torch.Tensor]] = {}
        recording = {
            n.removesuffix(".processor"): RecordingAttnProcessor(
                n.removesuffix(".processor"), store, record=("probs",)
            )
            for n in unet.attn_processors
        }
        with processors(unet, recording):
            ours = unet(x, 500, context, added_cond_kwargs=added).sample
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4)
    # LEDITS++'s mask resolution is latent / 4: a cross-attention map of that size exists
    sides = {int(v[0].shape[1] ** 0.5) for k, v in store.items() if ".attn2:" in k}
    assert sides == query_sides and side // 4 in sides


@pytest.fixture(scope="module")
def real_size():
    """One real-size backbone at a time (SDXL in float32 is 14 GB): fp32 on the CPU, at 128 px
    (latent 16) so that a step takes seconds."""
    from partedit_bench.engine.backbones import load_backbone

    held: dict[str, object] = {}

    def get(name: str):
        if name not in held:
            held.clear()
            gc.collect()
            backbone = load_backbone(name)
            backbone.resolution = 128
            held[name] = backbone
        return held[name]

    yield get
    held.clear()
    gc.collect()


class ProcessorCensus:
    """Counts, per attention module, the processor class it ran with on each call."""

    def __init__(self, unet):
        self.calls: dict[str, Counter] = {}
        self.handles = []
        for name in (n.removesuffix(".processor") for n in unet.attn_processors):
            module = unet.get_submodule(name)
            self.handles.append(module.register_forward_pre_hook(self._seen(name)))
        self.names = [n.removesuffix(".processor") for n in unet.attn_processors]

    def _seen(self, name):
        def hook(module, args):
            self.calls.setdefault(name, Counter())[type(module.processor).__name__] += 1

        return hook

    def ran_with(self, names):
        return {type_ for n in names for type_ in self.calls.get(n, {})}

    def close(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize(
    ("name", "self_layers", "masactrl_first"),
    [("random-sd21", 16, 10), ("random-sdxl", 70, 44)],
    ids=["sd21", "sdxl"],
)
def test_one_step_of_each_attention_method_at_real_size(
    real_size, name, self_layers, masactrl_first
):
    from partedit_bench.api import EditRequest
    from partedit_bench.data.schema import load_image
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.attention import (
        attention_layers,
        cross_attention_layers,
        decoder_cross_attention_layers,
    )
    from partedit_bench.methods.masactrl import MasaCtrl, MasaCtrlOptions, controlled_layers
    from partedit_bench.methods.p2p import P2POptions, edit_latents
    from partedit_bench.methods.partedit.options import PartEditOptions, parts_of
    from partedit_bench.methods.partedit.sampling import (
        localization_layers,
        official_40,
        run_partedit,
    )
    from partedit_bench.tokens import PartToken

    backbone = real_size(name)
    unet = backbone.unet
    sample = next(s for s in load_suite("partworld").samples if s.p2p_template)
    image = load_image(sample.original_image)
    selfs, crosses = attention_layers(unet, "attn1"), cross_attention_layers(unet)
    assert len(selfs) == len(crosses) == self_layers
    # layer mappings: the released SDXL pipeline's 40 localization layers; MasaCtrl's blocks
    controlled = controlled_layers(unet, MasaCtrlOptions().start_layer)
    assert controlled == selfs[masactrl_first:]
    if name == "random-sdxl":
        official = official_40(crosses)
        assert len(official) == 40 and localization_layers(unet, "auto", []) == set(official)
        assert official[:36] == crosses[24:60] and official[36:] == crosses[:4]
    generator = torch.Generator("cpu").manual_seed(0)
    layers = decoder_cross_attention_layers(unet, 8)
    tokens = {
        p: PartToken(
            torch.randn(2, backbone.text_width, generator=generator, device="cpu"),
            {"part": p, "layers": layers, "fingerprint": backbone.fingerprint},
        )
        for p in parts_of(sample)
    }

    census = ProcessorCensus(unet)
    try:
        run = run_partedit(
            backbone, sample, image, 0, PartEditOptions(steps=1, t_e=1), tokens, True,
            keep_maps=True,
        )  # fmt: skip
        assert census.ran_with(census.names) == {"PartEditProcessor"}
        assert run.result.image.size == (128, 128) and len(run.maps) == 1
        mask = np.asarray(run.result.predicted_mask)
        assert mask.ndim == 2 and 0 <= mask.min() and mask.max() <= 1
        assert run.latents.shape[-2:] == (16, 16) and bool(torch.isfinite(run.latents).all())

        census.calls.clear()
        request = EditRequest(sample=sample, image=image, seed=0, options=None,
                              backbone=backbone, synthetic=True)  # fmt: skip
        latents, _ = edit_latents(backbone, request, P2POptions(steps=1))
        assert census.ran_with(census.names) == {"P2PProcessor"}
        assert latents.shape == (2, 4, 16, 16) and bool(torch.isfinite(latents).all())

        census.calls.clear()
        method = MasaCtrl(MasaCtrlOptions(steps=1, start_step=0))
        method.load(backbone)
        request.options = method.options
        edited = method.edit(request).image
        assert census.ran_with(selfs) == {"MutualSelfAttentionProcessor"}
        assert "MutualSelfAttentionProcessor" not in census.ran_with(crosses)
        assert edited.size == (128, 128)
    finally:
        census.close()
