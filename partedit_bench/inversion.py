"""Edit-friendly DDPM inversion (Huberman-Spiegelglas et al., CVPR 2024) and the noise-
prediction conversions it needs, for every method that edits real images through it (partedit,
ef_ddpm). Honors epsilon, v-prediction and sample prediction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def to_eps_x0(
    model_out: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(epsilon, x0) from a UNet output under the scheduler's prediction type."""
    a, s = alpha.sqrt(), (1 - alpha).sqrt()
    if prediction_type == "epsilon":
        return model_out, (x_t - s * model_out) / a
    if prediction_type == "v_prediction":
        return a * model_out + s * x_t, a * x_t - s * model_out
    if prediction_type == "sample":
        return (x_t - a * model_out) / s, model_out
    raise ValueError(f"unsupported prediction type {prediction_type!r}")


def ddpm_mean_sigma(
    eps: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, alpha_prev: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the DDPM (DDIM eta = 1) step x_t -> x_prev."""
    variance = (1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)
    sigma = variance.clamp(min=0).sqrt()
    mean = alpha_prev.sqrt() * x0 + (1 - alpha_prev - variance).clamp(min=0).sqrt() * eps
    return mean, sigma


@dataclass
class Inversion:
    """An edit-friendly DDPM inversion: the trajectory xs[0] = x_T ... xs[-1] = x_0 and the noise
    maps zs[i] that take xs[i] to xs[i+1] under the source prompt's guided prediction."""

    timesteps: list[int]
    alphas: list[torch.Tensor]  # alpha_bar at each timestep, then at the clean end
    xs: list[torch.Tensor]
    zs: list[torch.Tensor]


def edit_friendly_timesteps(scheduler: Any, steps: int) -> tuple[list[int], torch.Tensor]:
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(scheduler.config)
    ddim.set_timesteps(steps)
    return [int(t) for t in ddim.timesteps], ddim.alphas_cumprod


@torch.no_grad()
def invert(
    predict: Any,
    x0: torch.Tensor,
    scheduler: Any,
    steps: int,
    generator: torch.Generator,
    prediction_type: str,
    zero_last_noise: bool = False,
) -> Inversion:
    """Edit-friendly DDPM inversion (Huberman-Spiegelglas et al., 2024): x_t drawn
    independently for every t from x0, then z_t = (x_{t-1} - mu_t(x_t)) / sigma_t so that DDPM
    sampling with these z reproduces the trajectory exactly. The clean end is x0 itself, at the
    first training timestep's noise level (so its sigma is non-zero).

    Noise draws: one map per timestep from `generator`, the noisiest first (the reference
    draws the least noisy first from torch's global generator).

    Args:
        predict: (x_t (1,C,H,W), t) -> guided model output of the source prompt.
        zero_last_noise: zero the last step's noise map, as the reference does
            (`inversion_forward_process` sets zs[0] = 0): sampling then ends at that step's
            mean, off x0 by sigma_1 * z_1; xs[-1] is set to that end point so that a path
            that follows xs stays what the sampler produces.
    """
    timesteps, alphas_cumprod = edit_friendly_timesteps(scheduler, steps)
    work = torch.promote_types(x0.dtype, torch.float32)
    alphas = [alphas_cumprod[t].to(x0.device, work) for t in timesteps]
    alphas.append(alphas_cumprod[0].to(x0.device, work))
    x0f = x0.to(work)
    xs = []
    for a in alphas[:-1]:
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, work)
        xs.append(a.sqrt() * x0f + (1 - a).sqrt() * noise)
    xs.append(x0f)
    zs = []
    for i, t in enumerate(timesteps):
        out = predict(xs[i].to(x0.dtype), t).to(work)
        eps, x0_hat = to_eps_x0(out, xs[i], alphas[i], prediction_type)
        mean, sigma = ddpm_mean_sigma(eps, x0_hat, alphas[i], alphas[i + 1])
        z = (xs[i + 1] - mean) / sigma
        if zero_last_noise and i == len(timesteps) - 1:
            z = torch.zeros_like(z)
        zs.append(z)
        xs[i + 1] = mean + sigma * z  # the exact value the sampler will produce
    return Inversion(timesteps, alphas, xs, zs)


@torch.no_grad()
def ddim_invert(
    predict: Any, x0: torch.Tensor, scheduler: Any, steps: int, prediction_type: str
) -> tuple[list[int], list[torch.Tensor]]:
    """Deterministic DDIM inversion: x_0 -> x_T along the 50-step-style DDIM schedule, the
    model evaluated at the current (less noisy) point. Returns the timesteps (noisiest first)
    and the latents [x_T, ..., x_0] aligned with them (latents[i] is the input at timesteps[i])."""
    timesteps, alphas_cumprod = edit_friendly_timesteps(scheduler, steps)
    work = torch.promote_types(x0.dtype, torch.float32)
    final = alphas_cumprod[0].to(x0.device, work)  # set_alpha_to_one=False convention
    ascending = list(reversed(timesteps))
    x = x0.to(work)
    trajectory = [x]
    previous_alpha = final
    for t in ascending:
        alpha = alphas_cumprod[t].to(x0.device, work)
        out = predict(x.to(x0.dtype), t).to(work)
        eps, _ = to_eps_x0(out, x, previous_alpha, prediction_type)
        x0_hat = (x - (1 - previous_alpha).sqrt() * eps) / previous_alpha.sqrt()
        x = alpha.sqrt() * x0_hat + (1 - alpha).sqrt() * eps
        trajectory.append(x)
        previous_alpha = alpha
    return timesteps, list(reversed(trajectory))
