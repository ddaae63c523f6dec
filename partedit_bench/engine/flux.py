"""The `flux` family's offline backbone, `tiny-flux` (and `tiny-flux-kontext`, the same
weights behind FLUX.1 Kontext's pipeline): real diffusers / transformers classes from small
configs with fixed-seed random weights, FLUX's 16 latent channels (packed 2 x 2 into 64
transformer channels), a CLIP text encoder with the real CLIP tokenizer and a T5 encoder with
a small word-level T5 tokenizer built with `tokenizers` (the real T5 vocabulary is not at
hand offline; unknown words map to `<unk>`). Their outputs check the plumbing, not the
methods."""

from __future__ import annotations

import string
from typing import Any

import torch

from partedit_bench.engine.clip_bpe import clip_tokenizer

#: the tiny T5 tokenizer's words: the suites' prompt vocabulary, then single characters
WORDS = (
    "a an the of with and in on to into photo picture man woman person boy girl cat dog "
    "horse cow sheep bird animal car chair head hair torso body hood seat robotic golden red "
    "blue green yellow black white wooden metal stone striped make turn change give replace"
).split()
T5_MAX_LENGTH = 32


def tiny_t5_tokenizer() -> Any:
    """A word-level T5 tokenizer: `<pad>` 0, `</s>` 1 (appended), `<unk>` 2, lowercased words
    split on whitespace and punctuation."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in [*WORDS, *string.ascii_lowercase, *string.digits]:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0
    )


def flux_vae(widths: tuple[int, ...], layers_per_block: int, force_upcast: bool = True) -> Any:
    """FLUX.1's AutoencoderKL shape (16 latent channels, no quant convs, its shift and scale)
    at the given widths: (128, 256, 512, 512) x 2 layers is FLUX.1-dev's."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        layers_per_block=layers_per_block,
        block_out_channels=widths,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
        force_upcast=force_upcast,
    ).eval()  # type: ignore[attr-defined]


def build_tiny_flux() -> dict[str, Any]:
    """A FLUX.1-shaped model: 1 double-stream and 2 single-stream blocks, 2 heads of 16,
    guidance embedding (as FLUX.1-dev and Kontext-dev), an AutoencoderKL with 16 latent
    channels and FLUX's shift/scale, CLIP (pooled, 32 wide) and T5 (32 wide) text encoders,
    and the flow-matching Euler scheduler with FLUX's dynamic shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from partedit_bench.engine.tiny import _tiny_text_encoder

    tokenizer_2 = tiny_t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    ).eval()  # type: ignore[attr-defined]
    torch.manual_seed(1)
    vae = flux_vae((32, 64, 64, 64), layers_per_block=1, force_upcast=False)
    torch.manual_seed(3)
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": _tiny_text_encoder(2),
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": t5,
        "tokenizer_2": tokenizer_2,
        "scheduler": scheduler,
    }


def build_random_flux(dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """FLUX.1-dev's architecture with fixed-seed random weights (`random-flux`): the
    transformer (19 double-stream + 38 single-stream blocks, 24 heads of 128, guidance
    embedding: 11.9B parameters), T5-XXL's encoder (4.8B), CLIP-L (0.12B) and the 16-channel
    VAE, from black-forest-labs/FLUX.1-dev's configs; each model is cast to `dtype` as soon as
    it is built (in float32 they would not fit a GPU side by side while being built). The T5
    tokenizer is the tiny word-level one (the real vocabulary is not at hand offline). For
    speed, memory and dtype checks: its outputs mean nothing."""
    from diffusers import FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from partedit_bench.engine.fullsize import CLIP_L, _text_encoder
    from partedit_bench.engine.precision import built

    torch.manual_seed(0)
    components = build_tiny_flux()  # the tokenizers and the scheduler: FLUX.1-dev's settings
    components["transformer"] = built(FluxTransformer2DModel(guidance_embeds=True), dtype)
    components["text_encoder_2"] = built(
        T5EncoderModel(
            T5Config(
                vocab_size=32128,
                d_model=4096,
                d_kv=64,
                d_ff=10240,
                num_layers=24,
                num_heads=64,
                feed_forward_proj="gated-gelu",
            )
        ),
        dtype,
    )
    components["text_encoder"] = built(_text_encoder(CLIP_L, 768, with_projection=False), dtype)
    components["vae"] = built(flux_vae((128, 256, 512, 512), layers_per_block=2), dtype)
    return components


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) latents as FLUX's sequence of 2x2 patches, (B, H/2 * W/2, 4C), row-major
    over patches, each patch's features channel-major (what `FluxPipeline` feeds its
    transformer; written here so that no private pipeline method is called)."""
    b, c, h, w = latents.shape
    patches = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of `pack_latents` for (height, width) latents."""
    b, _, features = packed.shape
    c = features // 4
    grid = packed.reshape(b, height // 2, width // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(b, c, height, width)


def latent_image_ids(rows: int, columns: int, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """The position ids of a rows x columns grid of patches, (rows * columns, 3): 0, the row,
    the column (FLUX's RoPE reads the last two)."""
    r, c = torch.meshgrid(
        torch.arange(rows, device=device), torch.arange(columns, device=device), indexing="ij"
    )
    ids = torch.stack([torch.zeros_like(r), r, c], dim=-1).reshape(rows * columns, 3)
    return ids.to(dtype=dtype)
