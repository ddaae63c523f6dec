"""`sdxl_inpaint`: SDXL inpainting of the GT mask region (diffusers' inpainting pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from partedit_bench.api import (
    EditRequest,
    EditResult,
    MethodUnavailable,
    check_range,
    target_prompt,
)
from partedit_bench.methods.partedit.localize import GivenMask
from partedit_bench.methods.specials import SpecialCheckpointMethod


@dataclass
class InpaintOptions:
    steps: int = 50
    guidance: float = 7.5
    strength: float = 0.9999

    mask_source: str = "gt"  # gt (the paper) | tokens | grounded-sam | sam3 | a folder

    def __post_init__(self) -> None:
        from partedit_bench.engine.mask_sources import check_source

        check_source(str(self.mask_source), "sdxl_inpaint.mask_source")
        check_range("sdxl_inpaint", "steps", self.steps, 1)
        check_range("sdxl_inpaint", "guidance", self.guidance, 0)
        check_range("sdxl_inpaint", "strength", self.strength, 0.0001, 1)


class SDXLInpaint(GivenMask, SpecialCheckpointMethod):
    """Repaints the GT mask region with the target prompt on the 9-channel SDXL checkpoint."""

    name = "sdxl_inpaint"
    version = "2"  # #31: image and mask resized by the pipeline's own processors
    needs = frozenset({"target_prompt", "mask"})
    families = frozenset({"sdxl"})
    special_checkpoint = "inpaint"
    uses_gt_mask = True
    Options = InpaintOptions
    smoke_options = {"steps": 3}

    def open(self, special: Any) -> Any:
        from diffusers import StableDiffusionXLInpaintPipeline

        channels = special.unet.config.in_channels
        if channels != 9:
            raise MethodUnavailable(f"{special.name} has a {channels}-channel UNet, not 9")
        return special.pipeline(StableDiffusionXLInpaintPipeline)

    def edit(self, request: EditRequest) -> EditResult:
        self.checkpoint()
        size = (self.special.resolution, self.special.resolution)
        given = self.given_mask(request)  # the GT mask unless option mask_source says otherwise
        # image and mask at the source's size: the pipeline resizes both itself, as the
        # reference does (its image and mask processors: Lanczos, the mask then binarized at 0.5)
        mask = Image.fromarray(np.asarray(given, np.uint8) * 255)
        prompt = target_prompt(request.sample)
        out = self.pipe(
            prompt=prompt,
            image=request.image.convert("RGB"),
            mask_image=mask,
            strength=self.options.strength,
            num_inference_steps=self.options.steps,
            guidance_scale=self.options.guidance,
            height=size[1],
            width=size[0],
            generator=torch.Generator("cpu").manual_seed(request.seed),
        )
        return EditResult(
            image=out.images[0],
            extras={
                "target_prompt": prompt,
                "checkpoint": self.special.name,
                "mask_source": self.options.mask_source,
            },
        )


METHOD = SDXLInpaint  # what `api.registry()` finds by the folder's name
