"""The PartWorld backbone's training configuration, its rendered training data and its
diffusers components (see the package docstring for the stages)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from partedit_bench.errors import UserError

MODEL_VERSION = 1
WORK = "_training"
STAGES = ("data", "vae", "decoder", "unet", "export")


@dataclass
class PartWorldTrainConfig:
    """Everything that determines the trained weights (saved beside them)."""

    seed: int = 0
    images: int = 24000
    resolution: int = 64
    data_seed: int = 20_251_127  # no suite uses this seed
    correlation: float = 0.5
    partial_captions: float = 0.3
    empty_captions: float = 0.1
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_steps: int = 1500
    vae_batch: int = 16
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    decoder_steps: int = 1500  # then the decoder alone (the encoder, so the latents, frozen)
    decoder_lr: float = 5e-4
    unet_channels: tuple[int, ...] = (32, 64, 112)
    unet_heads: tuple[int, ...] = (2, 4, 8)
    text_width: int = 64
    text_layers: int = 2
    unet_steps: int = 5000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    threads: int = 0  # 0: torch's default

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartWorldTrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise UserError(f"unknown PartWorld training setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)

    def with_overrides(self, pairs: list[str]) -> PartWorldTrainConfig:
        data = self.to_json()
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in data:
                raise UserError(f"--set expects KEY=VALUE with a known key, got {pair!r}")
            current = data[key]
            if isinstance(current, (tuple, list)):
                data[key] = tuple(int(v) for v in value.split(","))
            else:
                data[key] = type(current)(value)
        return PartWorldTrainConfig.from_json(data)


# ---------------------------------------------------------------------------------------
# Data


def partial_caption(scene: Any, rng: np.random.Generator) -> str:
    """The caption with one part phrase left out (object plus one part at most)."""
    from partedit_bench.data import partworld as pw

    a, where = scene.attrs, scene.setting
    if scene.class_name == "humanoid":
        pattern = "striped " if a["shirt_pattern"] == "striped" else ""
        phrase = (
            f"a person with {pw._hair_words(a)}"
            if rng.random() < 0.5
            else f"a person wearing {pw._article(a['shirt'] + ' ' + pattern + 'shirt')}"
        )
    elif scene.class_name == "quadruped":
        phrase = pw._article(f"{a['fur']} {a['animal']}")
    elif scene.class_name == "car":
        phrase = pw._article(f"{a['body']} car")
    else:
        phrase = pw._article(f"{a['frame']} chair")
    return f"a photo of {phrase} {where}"


def render_dataset(config: PartWorldTrainConfig) -> dict[str, Any]:
    """Renders the training set: images (N, R, R, 3) uint8, full and partial captions."""
    from partedit_bench.data import partworld as pw

    classes = list(pw.CLASSES)
    images = np.empty((config.images, config.resolution, config.resolution, 3), np.uint8)
    full, partial, labels = [], [], []
    for i in range(config.images):
        rng = np.random.default_rng([config.data_seed, i])
        scene = pw.sample_scene(rng, classes[i % len(classes)], config.correlation)
        images[i], _ = pw.render(scene, config.resolution)
        full.append(pw.caption(scene))
        partial.append(partial_caption(scene, rng))
        labels.append({"class": scene.class_name, "setting": scene.setting, **_attrs(scene)})
    return {"images": images, "full": full, "partial": partial, "labels": labels}


def _attrs(scene: Any) -> dict[str, Any]:
    return {k: v for k, v in scene.attrs.items() if isinstance(v, (str, bool))}


# ---------------------------------------------------------------------------------------
# Models


def build_components(config: PartWorldTrainConfig) -> dict[str, Any]:
    """Fresh, seeded modules of the PartWorld backbone."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from partedit_bench.engine.clip_bpe import clip_tokenizer

    torch.manual_seed(config.seed)
    levels = len(config.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=config.vae_channels,
        norm_num_groups=16,
        sample_size=config.resolution,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
    )
    latent = config.resolution // 2 ** (levels - 1)
    unet = UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=config.unet_channels,
        norm_num_groups=16,
        cross_attention_dim=config.text_width,
        attention_head_dim=config.unet_heads,
        use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D",) * len(config.unet_channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(config.unet_channels),
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=config.text_width,
            intermediate_size=4 * config.text_width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=config.text_width,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=1,
        )
    )
    from partedit_bench.engine.tiny import sd_ddim_scheduler

    scheduler = sd_ddim_scheduler("epsilon")
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "scheduler": scheduler,
    }
