"""`blended_latent`: Blended Latent Diffusion (Avrahami et al., 2023), given the GT mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from partedit_bench.method_api import EditMethod, EditRequest, EditResult, target_prompt


@dataclass
class BlendedLatentOptions:
    steps: int = 50
    guidance: float | None = None  # 7.5 on SD (text_editing_SD2.py), 5.0 on SDXL
    blend_start: float = 0.25  # blending_start_percentage


class BlendedLatent(EditMethod):
    """Denoises with the target prompt inside the GT mask, re-noised source outside."""

    name = "blended_latent"
    needs = frozenset({"target_prompt", "mask"})
    uses_gt_mask = True
    Options = BlendedLatentOptions

    def load(self, backbone: Any) -> None:
        self.backbone = backbone

    def edit(self, request: EditRequest) -> EditResult:
        edited, _ = blend(self.backbone, request, self.options)
        return edited


@torch.no_grad()
def blend(
    backbone: Any,
    request: EditRequest,
    options: BlendedLatentOptions,
    record: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[EditResult, Any]:
    """Runs Blended Latent Diffusion; `record` receives (latents, noised source) per step."""
    from diffusers import DDIMScheduler

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
    x0 = backbone.encode_images([request.image])
    assert request.mask is not None
    mask = torch.from_numpy(np.asarray(request.mask, dtype=np.float32))[None, None]
    latent_mask = (F.interpolate(mask, size=x0.shape[-2:], mode="nearest") > 0.5).to(x0)
    scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)
    scheduler.set_timesteps(options.steps, device=backbone.device)
    timesteps = scheduler.timesteps[int(len(scheduler.timesteps) * options.blend_start) :]
    generator = torch.Generator("cpu").manual_seed(request.seed)

    def noise() -> torch.Tensor:
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)

    latents = scheduler.add_noise(x0, noise(), timesteps[:1])
    for t in timesteps:
        out = unet(
            torch.cat([latents] * 2), t, encoder_hidden_states=context, added_cond_kwargs=added
        ).sample
        u, c = out.chunk(2)
        latents = scheduler.step(u + guidance * (c - u), t, latents).prev_sample
        noised_source = scheduler.add_noise(x0, noise(), t.reshape(1))  # as the reference: t
        latents = latents * latent_mask + noised_source * (1 - latent_mask)
        if record is not None:
            record.append((latents.clone(), noised_source))
    image = backbone.decode_latents(latents)[0]
    return EditResult(
        image=image, extras={"target_prompt": target_prompt(request.sample), "guidance": guidance}
    ), latent_mask
