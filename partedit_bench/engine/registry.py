"""The named backbones (hub ids, shipped folders, tiny builders) and the special checkpoints each
method needs per backbone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partedit_bench.engine.flux import build_random_flux, build_tiny_flux
from partedit_bench.engine.fullsize import (
    build_random_sd15_ip2p,
    build_random_sd21,
    build_random_sdxl,
)
from partedit_bench.engine.qwen import build_random_qwen_image, build_tiny_qwen_image
from partedit_bench.engine.tiny import build_tiny_sd, build_tiny_sdxl


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    resolution: int
    description: str
    hub_id: str | None = None
    builder: Callable[..., dict[str, Any]] | None = None
    folder: Path | None = None  # weights shipped in this repository
    #: built directly on the run's device (real-size random weights: seconds on a GPU instead
    #: of a minute on the CPU; the tiny ones are built on the CPU, so their weights, and the
    #: tokens trained on them, are the same everywhere)
    build_on_device: bool = False
    #: the builder takes the run's dtype and casts each model as soon as it is built (the
    #: real-size DiTs would not fit a GPU side by side in float32 while being built)
    builds_in_dtype: bool = False


#: The trained PartWorld model shipped with the repository (see its model card).
PARTWORLD_FOLDER = Path(__file__).resolve().parents[2] / "models" / "partworld-sd"

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "partworld-sd",
            "sd",
            64,
            "offline SD-family model trained on PartWorld (default)",
            folder=PARTWORLD_FOLDER,
        ),
        BackboneSpec(
            "sdxl",
            "sdxl",
            1024,
            "Stable Diffusion XL base 1.0 (fp16-fixed VAE)",
            hub_id="stabilityai/stable-diffusion-xl-base-1.0",
        ),
        BackboneSpec(
            "sd21",
            "sd",
            512,
            "Stable Diffusion 2.1 base (epsilon, 512 px)",
            hub_id="stabilityai/stable-diffusion-2-1-base",
        ),
        BackboneSpec(
            "tiny-sd", "sd", 64, "offline SD-shaped model, random weights", builder=build_tiny_sd
        ),
        BackboneSpec(
            "tiny-sd-v",
            "sd",
            64,
            "tiny-sd with v-prediction, random weights",
            builder=lambda: build_tiny_sd(prediction_type="v_prediction"),
        ),
        BackboneSpec(
            "tiny-sdxl",
            "sdxl",
            64,
            "offline SDXL-shaped model, random weights",
            builder=build_tiny_sdxl,
        ),
        BackboneSpec(
            "sd-ip2p",
            "sd",
            512,
            "InstructPix2Pix (SD 1.5 based, 8-channel UNet)",
            hub_id="timbrooks/instruct-pix2pix",
        ),
        BackboneSpec(
            "sdxl-ip2p",
            "sdxl",
            768,
            "InstructPix2Pix SDXL (8-channel UNet)",
            hub_id="diffusers/sdxl-instructpix2pix-768",
        ),
        BackboneSpec(
            "sdxl-inpaint",
            "sdxl",
            1024,
            "SDXL inpainting 0.1 (9-channel UNet)",
            hub_id="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        ),
        BackboneSpec(
            "tiny-sd-ip2p",
            "sd",
            64,
            "tiny-sd with an 8-channel UNet, random weights",
            builder=lambda: build_tiny_sd(in_channels=8),
        ),
        BackboneSpec(
            "tiny-sdxl-ip2p",
            "sdxl",
            64,
            "tiny-sdxl with an 8-channel UNet, random weights",
            builder=lambda: build_tiny_sdxl(in_channels=8),
        ),
        BackboneSpec(
            "tiny-sdxl-inpaint",
            "sdxl",
            64,
            "tiny-sdxl with a 9-channel UNet, random weights",
            builder=lambda: build_tiny_sdxl(in_channels=9),
        ),
        BackboneSpec(
            "flux-dev",
            "flux",
            1024,
            "FLUX.1 [dev] (flow-matching transformer, bf16 on a GPU)",
            hub_id="black-forest-labs/FLUX.1-dev",
        ),
        BackboneSpec(
            "flux-kontext",
            "flux",
            1024,
            "FLUX.1 Kontext [dev] (instruction editing, bf16 on a GPU)",
            hub_id="black-forest-labs/FLUX.1-Kontext-dev",
        ),
        BackboneSpec(
            "tiny-flux",
            "flux",
            64,
            "offline FLUX-shaped model, random weights",
            builder=build_tiny_flux,
        ),
        BackboneSpec(
            "tiny-flux-kontext",
            "flux",
            64,
            "tiny-flux behind FLUX.1 Kontext's pipeline, random weights",
            builder=build_tiny_flux,
        ),
        BackboneSpec(
            "qwen-image-edit",
            "qwen-image",
            1024,
            "Qwen-Image-Edit (20B MMDiT, Qwen2.5-VL 7B text encoder, bf16 on a GPU)",
            hub_id="Qwen/Qwen-Image-Edit",
        ),
        BackboneSpec(
            "qwen-image-edit-plus",
            "qwen-image",
            1024,
            "Qwen-Image-Edit-2509 ('Plus': several input images, bf16 on a GPU)",
            hub_id="Qwen/Qwen-Image-Edit-2509",
        ),
        BackboneSpec(
            "tiny-qwen-image",
            "qwen-image",
            64,
            "offline Qwen-Image-Edit-shaped model (tiny Qwen2.5-VL), random weights",
            builder=build_tiny_qwen_image,
        ),
        BackboneSpec(
            "tiny-qwen-image-plus",
            "qwen-image",
            64,
            "tiny-qwen-image behind Qwen-Image-Edit-2509's pipeline, random weights",
            builder=build_tiny_qwen_image,
        ),
        BackboneSpec(
            "random-sdxl",
            "sdxl",
            1024,
            "SDXL base 1.0's architecture, random weights (speed, memory and dtype checks)",
            builder=build_random_sdxl,
            build_on_device=True,
        ),
        BackboneSpec(
            "random-sd21",
            "sd",
            512,
            "SD 2.1 base's architecture, random weights (speed, memory and dtype checks)",
            builder=build_random_sd21,
            build_on_device=True,
        ),
        BackboneSpec(
            "random-sdxl-ip2p",
            "sdxl",
            768,
            "InstructPix2Pix SDXL's architecture, random weights",
            builder=lambda: build_random_sdxl(in_channels=8),
            build_on_device=True,
        ),
        BackboneSpec(
            "random-sdxl-inpaint",
            "sdxl",
            1024,
            "SDXL inpainting 0.1's architecture, random weights",
            builder=lambda: build_random_sdxl(in_channels=9),
            build_on_device=True,
        ),
        BackboneSpec(
            "random-flux",
            "flux",
            1024,
            "FLUX.1-dev's architecture, random weights (speed, memory and dtype checks)",
            builder=build_random_flux,
            build_on_device=True,
            builds_in_dtype=True,
        ),
        BackboneSpec(
            "random-flux-kontext",
            "flux",
            1024,
            "random-flux behind FLUX.1 Kontext's pipeline, random weights",
            builder=build_random_flux,
            build_on_device=True,
            builds_in_dtype=True,
        ),
        BackboneSpec(
            "random-qwen-image",
            "qwen-image",
            1024,
            "Qwen-Image-Edit's architecture, random weights (speed, memory and dtype checks)",
            builder=build_random_qwen_image,
            build_on_device=True,
            builds_in_dtype=True,
        ),
        BackboneSpec(
            "random-sd15-ip2p",
            "sd",
            512,
            "InstructPix2Pix (SD 1.5)'s architecture, random weights",
            builder=build_random_sd15_ip2p,
            build_on_device=True,
        ),
    )
}

#: Special checkpoints a method needs, per run backbone (by name, then by family).
SPECIAL_CHECKPOINTS: dict[str, dict[str, str]] = {
    "ip2p": {
        "tiny-sd": "tiny-sd-ip2p",
        "tiny-sd-v": "tiny-sd-ip2p",
        "tiny-sdxl": "tiny-sdxl-ip2p",
        "random-sdxl": "random-sdxl-ip2p",
        "random-sd21": "random-sd15-ip2p",
        "sd": "sd-ip2p",
        "sdxl": "sdxl-ip2p",
    },
    "kontext": {
        "tiny-flux": "tiny-flux-kontext",
        "random-flux": "random-flux-kontext",
        "flux": "flux-kontext",
    },
    "inpaint": {
        "tiny-sdxl": "tiny-sdxl-inpaint",
        "random-sdxl": "random-sdxl-inpaint",
        "sdxl": "sdxl-inpaint",
    },
}


def default_methods_file(backbone: str) -> Path | None:
    """The method options a shipped backbone's default run uses (`default_methods.yaml` in its
    folder), if it has them."""
    spec = BACKBONES.get(backbone)
    folder = spec.folder if spec is not None else None
    if folder is not None and (folder / "default_methods.yaml").is_file():
        return folder / "default_methods.yaml"
    return None
