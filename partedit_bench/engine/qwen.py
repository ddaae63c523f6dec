"""The `qwen-image` family's offline backbone, `tiny-qwen-image`: Qwen-Image-Edit's components
from small configs with fixed-seed random weights (real diffusers / transformers classes:
`QwenImageTransformer2DModel`, `AutoencoderKLQwenImage` with 16 latent channels, a
`Qwen2_5_VLForConditionalGeneration` text encoder that sees the image through its vision tower,
and a `Qwen2VLProcessor`), with a small word-level Qwen2 tokenizer built with `tokenizers`
(the real Qwen vocabulary is not at hand offline; unknown words map to `<unk>`). Its outputs
check the plumbing, not the methods."""

from __future__ import annotations

import re
import string
from typing import Any

import torch

from partedit_bench.engine.flux import WORDS

#: Qwen's chat and vision special tokens, in the order the tiny tokenizer numbers them
SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<unk>",
)
#: the words of the edit pipelines' prompt templates (their system prompts)
TEMPLATE_WORDS = (
    "system user assistant describe key features input image color shape size texture objects "
    "background then explain how user's text instruction should alter or modify generate new "
    "that meets requirements while maintaining consistency original where appropriate picture"
).split()
#: the tiny processor's largest image, in pixels (its vision tower sees at most 8 x 8 patches
#: of 14 px: 16 tokens after the 2 x 2 merge; the real processor allows 12.8 megapixels)
TINY_MAX_PIXELS = 112 * 112


def tiny_qwen_tokenizer() -> Any:
    """A word-level Qwen2 tokenizer: the special tokens first, lowercased words split on
    whitespace and punctuation (newlines are tokens, as Qwen's chat template needs)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import Qwen2TokenizerFast  # type: ignore[attr-defined]

    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for word in [*WORDS, *TEMPLATE_WORDS, "\n", *string.ascii_lowercase, *string.digits]:
        vocab.setdefault(word, len(vocab))
    for mark in string.punctuation:
        vocab.setdefault(mark, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    marks = re.escape(string.punctuation)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(rf"\n|[{marks}]"), behavior="isolated"),
        ]
    )
    wrapped = Qwen2TokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        bos_token=None,
    )
    wrapped.add_special_tokens({"additional_special_tokens": list(SPECIAL[1:7])})
    return wrapped


def build_tiny_qwen_image() -> dict[str, Any]:
    """A Qwen-Image-Edit-shaped model: a 2-layer MMDiT of 3 heads of 16 (no guidance
    embedding: Qwen-Image uses true CFG), the Qwen-Image VAE (16 latent channels, 8x spatial
    compression as the real one), a 2-layer Qwen2.5-VL (16 wide, a 2-block vision tower), its
    processor, and the flow-matching Euler scheduler with Qwen-Image's dynamic shift."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )
    from transformers import (  # type: ignore[attr-defined]
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = tiny_qwen_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL}
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    ).eval()  # type: ignore[attr-defined]
    torch.manual_seed(1)
    vae = AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()  # type: ignore[attr-defined]
    torch.manual_seed(2)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": len(tokenizer),
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=56 * 56, max_pixels=TINY_MAX_PIXELS, size=None
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "processor": processor,
        "scheduler": scheduler,
    }


def build_random_qwen_image(dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Qwen-Image-Edit's architecture with fixed-seed random weights (`random-qwen-image`):
    the 60-block MMDiT (20.4B parameters), Qwen2.5-VL 7B (8.3B: 28 decoder layers of 3584, a
    32-block vision tower) and the Qwen-Image VAE, from Qwen/Qwen-Image-Edit's configs, each
    cast to `dtype` as soon as it is built; the processor sees images up to 12.8 megapixels as
    the real one. The tokenizer is the tiny word-level one. For speed, memory and dtype checks:
    its outputs mean nothing."""
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import (  # type: ignore[attr-defined]
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from partedit_bench.engine.precision import built

    torch.manual_seed(0)
    components = build_tiny_qwen_image()  # the tokenizer and the scheduler
    tokenizer = components["tokenizer"]
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL}
    components["transformer"] = built(QwenImageTransformer2DModel(), dtype)
    components["vae"] = built(AutoencoderKLQwenImage(), dtype)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "rope_scaling": {
                "mrope_section": [16, 24, 24],
                "rope_type": "default",
                "type": "default",
            },
            "rope_theta": 1000000.0,
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 3584,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "window_size": 112,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    components["text_encoder"] = built(Qwen2_5_VLForConditionalGeneration(config), dtype)
    components["processor"] = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, size=None),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )
    return components
