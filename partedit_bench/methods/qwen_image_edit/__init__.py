"""`qwen_image_edit`: Qwen-Image-Edit (Qwen team, 2025), an instruction editor on a 20B MMDiT
whose text encoder, Qwen2.5-VL, reads the image with the instruction, through diffusers'
`QwenImageEditPipeline` (or `QwenImageEditPlusPipeline` for the 2509 release)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from partedit_bench.api import (
    EditMethod,
    EditRequest,
    EditResult,
    check_range,
    require_instructions,
)
from partedit_bench.errors import UserError

#: the model cards' steps: Qwen-Image-Edit 50, Qwen-Image-Edit-2509 40
CARD_STEPS = {False: 50, True: 40}


@dataclass
class QwenEditOptions:
    steps: int = 0  # 0: the model card's (50, or 40 for the 2509 "Plus" release)
    true_cfg: float = 4.0  # both model cards' true_cfg_scale (real CFG, two passes per step)
    negative_prompt: str = " "  # both model cards' (a space: CFG on, nothing to avoid)
    instruction: int = 0  # which of the sample's (up to three) instructions

    def __post_init__(self) -> None:
        check_range("qwen_image_edit", "steps", self.steps, 0)
        if self.steps == 1:  # diffusers stretches the schedule to shift_terminal: 0 / 0 at 1
            raise UserError(
                "option qwen_image_edit.steps=1 must be 0 (the model card's) or at least 2: "
                "Qwen-Image's schedule (shift_terminal 0.02) is NaN with a single step"
            )
        check_range("qwen_image_edit", "true_cfg", self.true_cfg, 0)
        check_range("qwen_image_edit", "instruction", self.instruction, 0, 2)


class QwenImageEdit(EditMethod):
    """Edits from the sample's instruction with the run's Qwen-Image-Edit backbone (the
    backbone is the editor: no other checkpoint)."""

    name = "qwen_image_edit"
    version = "2"  # #31: the source handed to the pipeline unresized (its own preprocessing)
    needs = frozenset({"instruction"})
    families = frozenset({"qwen-image"})
    Options = QwenEditOptions
    smoke_options = {"steps": 2}

    def preflight(self, backbone: Any, samples: list[Any]) -> None:
        import diffusers

        from partedit_bench.engine.backbones import is_qwen_plus

        require_instructions(samples)
        self.plus = is_qwen_plus(backbone)
        cls = diffusers.QwenImageEditPlusPipeline if self.plus else diffusers.QwenImageEditPipeline
        self.backbone, self.pipe = backbone, backbone.pipeline(cls)

    @property
    def steps(self) -> int:
        return self.options.steps or CARD_STEPS[self.plus]

    def edit(self, request: EditRequest) -> EditResult:
        instructions = request.sample.instructp2p_edit
        instruction = instructions[min(self.options.instruction, len(instructions) - 1)]
        size = self.backbone.resolution
        # the source as it is: the pipeline sizes its condition images itself (Lanczos to about
        # 1024 x 1024 for the VAE, 384 x 384 for the 2509 VL model), as for any user's input;
        # resizing here first would resize twice
        image = request.image.convert("RGB")
        out = self.pipe(
            image=[image] if self.plus else image,
            prompt=instruction,
            negative_prompt=self.options.negative_prompt,
            true_cfg_scale=self.options.true_cfg,
            height=size,
            width=size,
            num_inference_steps=self.steps,
            generator=torch.Generator("cpu").manual_seed(request.seed),
        )
        return EditResult(
            image=out.images[0],
            extras={"instruction": instruction, "steps": self.steps, "plus": self.plus},
        )


METHOD = QwenImageEdit  # what `api.registry()` finds by the folder's name
