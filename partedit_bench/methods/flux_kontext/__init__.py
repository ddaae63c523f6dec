"""`flux_kontext`: FLUX.1 Kontext [dev] (Black Forest Labs, 2025), an instruction editor on a
flow-matching diffusion transformer, through diffusers' `FluxKontextPipeline`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from partedit_bench.api import (
    EditRequest,
    EditResult,
    check_range,
    require_instructions,
)
from partedit_bench.methods.specials import SpecialCheckpointMethod


@dataclass
class KontextOptions:
    steps: int = 28  # FluxKontextPipeline's default, the model card's example
    guidance: float = 2.5  # the model card's example (distilled guidance, no true CFG)
    instruction: int = 0  # which of the sample's (up to three) instructions

    def __post_init__(self) -> None:
        check_range("flux_kontext", "steps", self.steps, 1)
        check_range("flux_kontext", "guidance", self.guidance, 0)
        check_range("flux_kontext", "instruction", self.instruction, 0, 2)


class FluxKontext(SpecialCheckpointMethod):
    """Edits from the sample's instruction with the Kontext checkpoint: the run's backbone when
    it is one (`flux-kontext`, `tiny-flux-kontext`), else the family's Kontext checkpoint,
    loaded when the method's first job starts."""

    name = "flux_kontext"
    needs = frozenset({"instruction"})
    families = frozenset({"flux"})
    special_checkpoint = "kontext"
    Options = KontextOptions
    smoke_options = {"steps": 2}

    def preflight(self, backbone: Any, samples: list[Any]) -> None:
        super().preflight(backbone, samples)
        require_instructions(samples)

    def is_own_checkpoint(self, backbone: Any) -> bool:
        return is_kontext(backbone)

    def open(self, special: Any) -> Any:
        from diffusers import FluxKontextPipeline

        return special.pipeline(FluxKontextPipeline)

    def edit(self, request: EditRequest) -> EditResult:
        model = self.checkpoint()
        instructions = request.sample.instructp2p_edit
        instruction = instructions[min(self.options.instruction, len(instructions) - 1)]
        size = model.resolution
        image = request.image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        out = self.pipe(
            image=image,
            prompt=instruction,
            height=size,
            width=size,
            max_area=size * size,
            _auto_resize=False,  # the benchmark's square size, not Kontext's preferred ones
            num_inference_steps=self.options.steps,
            guidance_scale=self.options.guidance,
            generator=torch.Generator("cpu").manual_seed(request.seed),
        )
        return EditResult(
            image=out.images[0], extras={"instruction": instruction, "checkpoint": model.name}
        )


def is_kontext(backbone: Any) -> bool:
    return "kontext" in str(backbone.name).lower()


METHOD = FluxKontext  # what `api.registry()` finds by the folder's name
