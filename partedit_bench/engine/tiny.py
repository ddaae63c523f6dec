"""The offline `tiny-*` backbones: real diffusers classes from small configs, fixed-seed random
weights, the real CLIP tokenizer. Their outputs check the plumbing, not the methods."""

from __future__ import annotations

from typing import Any

import torch

from partedit_bench.engine.clip_bpe import clip_tokenizer


def _tiny_text_encoder(seed: int, with_projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )
    torch.manual_seed(seed)
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    return model.eval()


def _tiny_vae(seed: int, force_upcast: bool = True) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=32,
        sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        force_upcast=force_upcast,
    ).eval()  # type: ignore[attr-defined]


def build_tiny_sd(prediction_type: str = "epsilon", in_channels: int = 4) -> dict[str, Any]:
    """An SD 2.1-shaped model: 3 cross-attention levels (latent 16, 8, 4 at 64 px), linear
    projections, one 32-wide CLIP text encoder, DDIM scheduler with SD's betas."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=32,
        cross_attention_dim=32,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
    ).eval()  # type: ignore[attr-defined]
    scheduler = sd_ddim_scheduler(prediction_type)
    return {
        "unet": unet,
        "vae": _tiny_vae(1),
        "text_encoder": _tiny_text_encoder(2),
        "tokenizer": clip_tokenizer(pad_token="!"),
        "scheduler": scheduler,
    }


def build_tiny_sdxl(in_channels: int = 4) -> dict[str, Any]:
    """An SDXL-shaped model: levels without / with / with cross-attention (latent 16, 8, 4 at
    64 px), 1, 2 and 4 transformer blocks, two CLIP text encoders (32 + 32 wide, the second
    with a projection), text_time conditioning, Euler scheduler."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=32,
        cross_attention_dim=64,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2, 4),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
    ).eval()  # type: ignore[attr-defined]
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return {
        "unet": unet,
        "vae": _tiny_vae(1, force_upcast=False),  # as SDXL's fp16-safe VAE
        "text_encoder": _tiny_text_encoder(2),
        "text_encoder_2": _tiny_text_encoder(3, with_projection=True),
        "tokenizer": clip_tokenizer(),
        "tokenizer_2": clip_tokenizer(pad_token="!"),
        "scheduler": scheduler,
    }


def sd_ddim_scheduler(prediction_type: str = "epsilon") -> Any:
    """Stable Diffusion's DDIM schedule (scaled-linear betas 0.00085 .. 0.012, steps_offset 1),
    the scheduler of the tiny SD models and of the PartWorld backbone."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
