"""Grounding DINO, SAM and SAM 3 at test size: the real `transformers` classes built from small
configs with fixed-seed random weights and offline processors (a word-level BERT vocabulary for
Grounding DINO's text). They check the plumbing of the mask sources, not segmentation."""

from __future__ import annotations

import tempfile
from typing import Any

import torch

#: The words the tiny Grounding DINO tokenizer knows (the part phrases of the suites).
WORDS = (
    "a",
    "the",
    "head",
    "hair",
    "torso",
    "body",
    "hood",
    "seat",
    "car",
    "chair",
    "horse",
    "cow",
    "dog",
    "cat",
    "man",
    "woman",
    "person",
    "humanoid",
    "human",
    "animal",
    "quadruped",
    "biped",
    "truck",
    "robot",
    "bear",
    "sheep",
    "giraffe",
    "statue",
)


def tiny_grounding_dino(seed: int = 0) -> tuple[Any, Any]:
    from transformers import (  # type: ignore[attr-defined]
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    swin = SwinConfig(  # type: ignore[call-arg]
        image_size=128,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    bert = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(  # type: ignore[call-arg]
        backbone_config=swin,
        text_config=bert,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
        use_timm_backbone=False,
    )
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        with open(f"{folder}/vocab.txt", "w") as fh:
            fh.write("\n".join(vocab) + "\n")
        tokenizer = BertTokenizerFast(vocab_file=f"{folder}/vocab.txt")
    images = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 128})
    return model, GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer)


def tiny_sam(seed: int = 0) -> tuple[Any, Any]:
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor
    from transformers.models.sam.configuration_sam import (
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        output_channels=16,
        mlp_dim=32,
        window_size=4,
        global_attn_indexes=[1],
        num_pos_feats=8,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        mlp_dim=32,
        iou_head_hidden_dim=16,
    )
    torch.manual_seed(seed)
    model = SamModel(
        SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    ).eval()
    images = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    return model, SamProcessor(image_processor=images)


def tiny_sam3(seed: int = 0) -> tuple[Any, Any]:
    """SAM 3 (`Sam3Model`) with a 2-layer ViT at 112 px, one-layer DETR encoder / decoder and
    a one-layer CLIP text tower, and the real CLIP BPE tokenizer (written offline)."""
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from partedit_bench.engine.clip_bpe import clip_tokenizer

    width = 32
    config = Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": 112,
                "patch_size": 14,
                "window_size": 4,
                "global_attn_indexes": [1],
                "pretrain_image_size": 112,
            },
            "fpn_hidden_size": width,
            "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
        },
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "projection_dim": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
        },
        geometry_encoder_config={
            "hidden_size": width,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        detr_encoder_config={
            "hidden_size": width,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        detr_decoder_config={
            "hidden_size": width,
            "num_layers": 1,
            "num_queries": 10,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        mask_decoder_config={"hidden_size": width, "num_attention_heads": 2},
    )
    torch.manual_seed(seed)
    model = Sam3Model(config).eval()
    images = Sam3ImageProcessor(size={"height": 112, "width": 112})
    return model, Sam3Processor(image_processor=images, tokenizer=clip_tokenizer())
