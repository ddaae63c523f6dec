"""`ef_ddpm`: edit-friendly DDPM inversion + generation with the target prompt
(Huberman-Spiegelglas, Kulikov, Michaeli, CVPR 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from partedit_bench.api import (
    EditMethod,
    EditRequest,
    EditResult,
    check_range,
    target_prompt,
)
from partedit_bench.engine import inversion


@dataclass
class EFDDPMOptions:
    steps: int = 100
    skip: int = 36
    cfg_src: float = 3.5
    cfg_tar: float = 15.0
    eta: float = 1.0
    zero_last_noise: bool = True  # the reference zeroes the last noise map (zs[0] = 0)

    def __post_init__(self) -> None:
        check_range("ef_ddpm", "steps", self.steps, 1)
        check_range("ef_ddpm", "skip", self.skip, 0, self.steps - 1)


class EFDDPM(EditMethod):
    """Inverts the image with the source prompt, regenerates with the target prompt."""

    name = "ef_ddpm"
    version = "2"  # #14: the last noise map zeroed by default
    needs = frozenset({"source_prompt", "target_prompt"})
    Options = EFDDPMOptions
    step_options = ("skip",)
    smoke_options = {"steps": 4, "skip": 1}

    def load(self, backbone: Any) -> None:
        if self.options.eta != 1.0:
            from partedit_bench.errors import UserError

            raise UserError("ef_ddpm: only eta = 1 (the reference's default) is implemented")
        self.backbone = backbone

    def edit(self, request: EditRequest) -> EditResult:
        latents, extras = edit_latents(
            self.backbone,
            request.image,
            request.sample.prompt_original,
            target_prompt(request.sample),
            request.seed,
            self.options,
        )
        return EditResult(image=self.backbone.decode_latents(latents)[0], extras=extras)


@torch.no_grad()
def edit_latents(
    backbone: Any, image: Any, source: str, target: str, seed: int, options: EFDDPMOptions
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Inversion with `source` at cfg_src, then the last `steps - skip` steps with `target` at
    cfg_tar and the stored noise maps."""
    unet = backbone.unet
    prediction = backbone.components["scheduler"].config.prediction_type
    embeds, added = backbone.encode_prompts(["", source, target])

    def predict(x: torch.Tensor, t: int, prompt: int, scale: float) -> torch.Tensor:
        rows = [0, prompt]
        out = unet(
            torch.cat([x, x]),
            t,
            encoder_hidden_states=embeds[rows],
            added_cond_kwargs=None if added is None else {k: v[rows] for k, v in added.items()},
        ).sample
        return out[0:1] + scale * (out[1:2] - out[0:1])

    x0 = backbone.encode_images([image])
    inv = inversion.invert(
        lambda x, t: predict(x, t, 1, options.cfg_src),
        x0,
        backbone.components["scheduler"],
        options.steps,
        torch.Generator("cpu").manual_seed(seed),
        prediction,
        zero_last_noise=options.zero_last_noise,
    )
    x = inv.xs[options.skip]
    for i in range(options.skip, len(inv.timesteps)):
        out = predict(x.to(x0.dtype), inv.timesteps[i], 2, options.cfg_tar)
        eps, x0_hat = inversion.to_eps_x0(out.to(x.dtype), x, inv.alphas[i], prediction)
        mean, sigma = inversion.ddpm_mean_sigma(eps, x0_hat, inv.alphas[i], inv.alphas[i + 1])
        x = mean + sigma * inv.zs[i]
    return x.to(x0.dtype), {"target_prompt": target, "skip": options.skip}


METHOD = EFDDPM  # what `api.registry()` finds by the folder's name
