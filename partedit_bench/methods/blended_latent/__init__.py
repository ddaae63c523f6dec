"""`blended_latent`: Blended Latent Diffusion (Avrahami et al., 2023), given the GT mask."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from partedit_bench.api import (
    EditMethod,
    EditRequest,
    EditResult,
    check_range,
    target_prompt,
)
from partedit_bench.methods.partedit.localize import GivenMask


@dataclass
class BlendedLatentOptions:
    steps: int = 50
    guidance: float | None = None  # 7.5 on SD (text_editing_SD2.py), 5.0 on SDXL
    blend_start: float = 0.25  # blending_start_percentage

    mask_source: str = "gt"  # gt (the paper) | tokens | grounded-sam | sam3 | a folder
    # the source's resize to the backbone's size: bilinear, as both reference scripts
    # (text_editing_SD2.py:82, text_editing_SDXL.py:102); bicubic: the suite's shared encoder
    resize: Literal["bilinear", "bicubic"] = "bilinear"

    def __post_init__(self) -> None:
        from partedit_bench.engine.mask_sources import check_source

        check_source(str(self.mask_source), "blended_latent.mask_source")
        check_range("blended_latent", "steps", self.steps, 1)
        check_range("blended_latent", "blend_start", self.blend_start, 0, 0.99)


class BlendedLatent(GivenMask, EditMethod):
    """Denoises with the target prompt inside the mask (the GT mask by default, option
    `mask_source`), re-noised source outside."""

    name = "blended_latent"
    version = "3"  # #14: the reference scripts' mask, start and samplers; #31: their resize
    needs = frozenset({"target_prompt", "mask"})
    uses_gt_mask = True
    Options = BlendedLatentOptions
    smoke_options = {"steps": 3}

    def load(self, backbone: Any) -> None:
        self.backbone = backbone

    def edit(self, request: EditRequest) -> EditResult:
        request = dataclasses.replace(request, mask=self.given_mask(request))
        edited, _ = blend(self.backbone, request, self.options)
        edited.extras["mask_source"] = self.options.mask_source
        return edited


def latent_mask(mask: Any, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """The GT mask at the latent size as the reference reads it: PIL NEAREST (the pixel at the
    centre of each cell, what `nearest-exact` computes), then 0 below 0.5 and 1 from 0.5."""
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    m = F.interpolate(m, size=size, mode="nearest-exact")
    return (m >= 0.5).to(like.device, like.dtype)


def reference_scheduler(backbone: Any) -> Any:
    """The sampler of the reference scripts: on SD the DDIM scheduler text_editing_SD2.py
    builds (SD's betas, no steps_offset: 980 ... 0 at 50 steps, no sample clipping, final alpha
    from the first step's), on SDXL the pipeline's own scheduler (Euler for SDXL base)."""
    from diffusers import DDIMScheduler

    config = backbone.components["scheduler"].config
    if backbone.family == "sdxl":
        return type(backbone.components["scheduler"]).from_config(config)
    return DDIMScheduler.from_config(
        config, steps_offset=0, clip_sample=False, set_alpha_to_one=False
    )


@torch.no_grad()
def blend(
    backbone: Any,
    request: EditRequest,
    options: BlendedLatentOptions,
    record: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    noises: list[torch.Tensor] | None = None,
) -> tuple[EditResult, Any]:
    """Runs Blended Latent Diffusion; `record` receives (latents, noised source) per step.

    Noise: drawn from the job's seed in order (the start, then one map per step) unless
    `noises` gives them (the parity check injects the reference's draws).
    """
    unet = backbone.unet
    guidance = (
        options.guidance
        if options.guidance is not None
        else (5.0 if backbone.family == "sdxl" else 7.5)
    )
    pipe = backbone.pipeline()
    if backbone.family == "sdxl":
        cond, uncond, pooled, pooled_uncond = pipe.encode_prompt(
            target_prompt(request.sample),
            device=backbone.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
        )
        res = backbone.resolution
        added = {
            "text_embeds": torch.cat([pooled_uncond, pooled]),
            "time_ids": torch.tensor(
                [[res, res, 0, 0, res, res]] * 2, device=backbone.device, dtype=cond.dtype
            ),
        }
    else:
        cond, uncond = pipe.encode_prompt(target_prompt(request.sample), backbone.device, 1, True)
        added = None
    context = torch.cat([uncond, cond])
    from PIL import Image

    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    x0 = backbone.encode_images([request.image], filters[options.resize])
    assert request.mask is not None
    mask = latent_mask(request.mask, tuple(x0.shape[-2:]), x0)
    scheduler = reference_scheduler(backbone)
    scheduler.set_timesteps(options.steps, device=backbone.device)
    first = int(len(scheduler.timesteps) * options.blend_start)
    timesteps = scheduler.timesteps[first:]
    generator = torch.Generator("cpu").manual_seed(request.seed)
    queue = list(noises) if noises is not None else None

    def noise() -> torch.Tensor:
        if queue is not None:
            return queue.pop(0).to(x0.device, x0.dtype)
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device="cpu").to(
            x0.device
        )

    if backbone.family == "sdxl":  # the source noised to the first kept step
        latents = scheduler.add_noise(x0, noise(), timesteps[:1])
    else:  # text_editing_SD2.py starts from pure noise at that step
        latents = noise() * scheduler.init_noise_sigma
    for t in timesteps:
        inp = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        out = unet(inp, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
        u, c = out.chunk(2)
        latents = scheduler.step(u + guidance * (c - u), t, latents).prev_sample
        noised_source = scheduler.add_noise(x0, noise(), t.reshape(1))  # as the reference: t
        latents = latents * mask + noised_source * (1 - mask)
        if record is not None:
            record.append((latents.clone(), noised_source))
    image = backbone.decode_latents(latents)[0]
    return EditResult(
        image=image, extras={"target_prompt": target_prompt(request.sample), "guidance": guidance}
    ), mask


METHOD = BlendedLatent  # what `api.registry()` finds by the folder's name
