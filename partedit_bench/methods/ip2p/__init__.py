"""`ip2p`: InstructPix2Pix (Brooks, Holynski, Efros, CVPR 2023) through diffusers' pipelines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from partedit_bench.api import (
    EditRequest,
    EditResult,
    MethodUnavailable,
    check_range,
    require_instructions,
)
from partedit_bench.methods.specials import SpecialCheckpointMethod


@dataclass
class IP2POptions:
    steps: int = 100
    guidance: float | None = None  # 7.5 (SD pipeline default), 5.0 (SDXL pipeline default)
    image_guidance: float = 1.5
    instruction: int = 0  # which of the sample's (up to three) instructions

    def __post_init__(self) -> None:
        check_range("ip2p", "steps", self.steps, 1)
        if self.guidance is not None:
            check_range("ip2p", "guidance", self.guidance, 0)
        check_range("ip2p", "image_guidance", self.image_guidance, 0)
        check_range("ip2p", "instruction", self.instruction, 0, 2)


class InstructPix2Pix(SpecialCheckpointMethod):
    """Edits from the sample's instruction on the instruction-tuned 8-channel checkpoint."""

    name = "ip2p"
    needs = frozenset({"instruction"})
    special_checkpoint = "ip2p"
    Options = IP2POptions
    smoke_options = {"steps": 3}

    def preflight(self, backbone: Any, samples: list[Any]) -> None:
        super().preflight(backbone, samples)
        require_instructions(samples)

    def open(self, special: Any) -> Any:
        from diffusers import (
            StableDiffusionInstructPix2PixPipeline,
            StableDiffusionXLInstructPix2PixPipeline,
        )

        if special.unet.config.in_channels != 8:
            raise MethodUnavailable(
                f"{special.name} has a {special.unet.config.in_channels}-channel UNet, not 8"
            )
        sdxl = special.family == "sdxl"
        cls = (
            StableDiffusionXLInstructPix2PixPipeline
            if sdxl
            else StableDiffusionInstructPix2PixPipeline
        )
        return special.pipeline(cls)

    def edit(self, request: EditRequest) -> EditResult:
        self.checkpoint()
        instructions = request.sample.instructp2p_edit
        instruction = instructions[min(self.options.instruction, len(instructions) - 1)]
        size = self.special.resolution
        guidance = (
            self.options.guidance
            if self.options.guidance is not None
            else (5.0 if self.special.family == "sdxl" else 7.5)
        )
        image = request.image.resize((size, size), Image.Resampling.LANCZOS)
        out = self.pipe(
            instruction,
            image=image,
            num_inference_steps=self.options.steps,
            guidance_scale=guidance,
            image_guidance_scale=self.options.image_guidance,
            generator=torch.Generator("cpu").manual_seed(request.seed),
        )
        return EditResult(
            image=out.images[0],
            extras={"instruction": instruction, "checkpoint": self.special.name},
        )


METHOD = InstructPix2Pix  # what `api.registry()` finds by the folder's name
