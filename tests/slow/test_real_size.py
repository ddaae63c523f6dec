"""Real-size architectures with random weights, one UNet call each (`make test-slow`): the
layer structure the methods' defaults assume, and our attention processors equal to
diffusers' at full size."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

SD21 = dict(
    sample_size=64,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
)
SDXL = dict(
    sample_size=128,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)


@pytest.mark.parametrize(
    ("config", "family", "layers", "query_sides"),
    [(SD21, "sd", 16, {32, 16, 8, 4}), (SDXL, "sdxl", 70, {16, 8})],  # with the mid block
    ids=["sd21", "sdxl"],
)
def test_real_size_unet_layers_and_processors(config, family, layers, query_sides):
    from diffusers import UNet2DConditionModel

    from methods.partedit.sampling import localization_layers
    from partedit_bench.engine.attention import (
        RecordingAttnProcessor,
        cross_attention_layers,
        processors,
    )

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
