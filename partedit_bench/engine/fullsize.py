"""The `random-*` backbones: SDXL base 1.0 and SD 2.1 base (and the instruction-tuned and
inpainting checkpoints that go with them) at their real size, built from their public configs
with fixed-seed random weights. No download: they cost what the real weights cost, so they
measure speed, memory, dtype and device paths (`benchmarks/gpu_check.py`, the slow tests);
their outputs mean nothing.

The configs are those of the hub repositories' `config.json` files (stabilityai/
stable-diffusion-xl-base-1.0, stabilityai/stable-diffusion-2-1-base, timbrooks/
instruct-pix2pix, diffusers/sdxl-instructpix2pix-768, diffusers/
stable-diffusion-xl-1.0-inpainting-0.1), keeping the fields that shape the modules.
"""

from __future__ import annotations

from typing import Any

import torch

from partedit_bench.engine.clip_bpe import clip_tokenizer

SDXL_UNET: dict[str, Any] = dict(
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
SD21_UNET: dict[str, Any] = dict(
    sample_size=64,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
)
#: SD 1.5's UNet (InstructPix2Pix's base): 768-wide text, 8 heads everywhere, conv projections
SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
)
VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
)
#: text encoders: OpenAI CLIP ViT-L/14, OpenCLIP ViT-bigG/14 (SDXL's second), ViT-H/14 (SD 2)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, layers=12, heads=12, act="quick_gelu")
CLIP_BIG_G = dict(hidden_size=1280, intermediate_size=5120, layers=32, heads=20, act="gelu")
CLIP_H = dict(hidden_size=1024, intermediate_size=4096, layers=23, heads=16, act="gelu")


def _text_encoder(spec: dict[str, Any], projection_dim: int, with_projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        max_position_embeddings=77,
        projection_dim=projection_dim,
        hidden_act=spec["act"],
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()


def _unet(config: dict[str, Any], in_channels: int) -> Any:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**config, in_channels=in_channels, out_channels=4)
    return unet.eval()  # type: ignore[attr-defined]


def _vae(scaling_factor: float, force_upcast: bool) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE, scaling_factor=scaling_factor, force_upcast=force_upcast).eval()  # type: ignore[attr-defined]


def build_random_sdxl(in_channels: int = 4) -> dict[str, Any]:
    """SDXL base 1.0 (with the fp16-safe VAE's settings: no upcast), random weights; 8 and 9
    input channels give the InstructPix2Pix and inpainting UNets."""
    from diffusers import EulerDiscreteScheduler

    torch.manual_seed(0)
    return {
        "unet": _unet(SDXL_UNET, in_channels),
        "vae": _vae(0.13025, force_upcast=False),
        "text_encoder": _text_encoder(CLIP_L, 768, with_projection=False),
        "text_encoder_2": _text_encoder(CLIP_BIG_G, 1280, with_projection=True),
        "tokenizer": clip_tokenizer(),
        "tokenizer_2": clip_tokenizer(pad_token="!"),
        "scheduler": EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        ),
    }


def build_random_sd21() -> dict[str, Any]:
    """SD 2.1 base, random weights, with SD's DDIM schedule (the hub folder's own scheduler
    is read from its config when the real weights load)."""
    from partedit_bench.engine.tiny import sd_ddim_scheduler

    torch.manual_seed(0)
    return {
        "unet": _unet(SD21_UNET, 4),
        "vae": _vae(0.18215, force_upcast=True),
        "text_encoder": _text_encoder(CLIP_H, 512, with_projection=False),
        "tokenizer": clip_tokenizer(pad_token="!"),
        "scheduler": sd_ddim_scheduler(),
    }


def build_random_sd15_ip2p() -> dict[str, Any]:
    """InstructPix2Pix (SD 1.5, 8 input channels), random weights: the SD family's ip2p."""
    from partedit_bench.engine.tiny import sd_ddim_scheduler

    torch.manual_seed(0)
    return {
        "unet": _unet(SD15_UNET, 8),
        "vae": _vae(0.18215, force_upcast=True),
        "text_encoder": _text_encoder(CLIP_L, 768, with_projection=False),
        "tokenizer": clip_tokenizer(),
        "scheduler": sd_ddim_scheduler(),
    }


def parameter_count(components: dict[str, Any]) -> int:
    return sum(
        p.numel()
        for m in components.values()
        if isinstance(m, torch.nn.Module)
        for p in m.parameters()
    )
