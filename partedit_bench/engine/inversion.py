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
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device, work)
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


# ---------------------------------------------------------------------------------------
# LEDITS++'s inversion: edit-friendly DDPM noise maps under SDE-DPM-Solver++ (order 2).


def ledits_timesteps(num_train_timesteps: int, steps: int, skip: float) -> torch.Tensor:
    """LEDITS++'s schedule: `steps` integer timesteps evenly spaced from
    T_train (1 - skip) - 1 down to 1, truncated (SD's 1000 steps, skip 0.15, 30 steps: 849 ... 1).
    The reference builds it with numpy; so does this."""
    import numpy as np

    n = num_train_timesteps
    return torch.from_numpy(np.linspace(n - skip * n - 1, 1, steps).astype(np.int64))


class DPMSolverSDE:
    """SDE-DPM-Solver++ of order 2 (midpoint) on a fixed list of integer timesteps, the sampler
    LEDITS++ inverts and edits with, stepping with given noise.

    Its tables (alpha_t = sqrt(alpha_bar), sigma_t = sqrt(1 - alpha_bar), lambda_t = log
    alpha_t - log sigma_t) are float32, built from the backbone scheduler's `alphas_cumprod`,
    and every step coefficient is a float32 scalar, as in the reference's scheduler; the
    samples keep their own dtype. The step after the last timestep lands on timestep 0. A step
    is first order when it has no previous model output (the first step) and, when sampling
    with fewer than 15 steps and `lower_order_final`, at the last step; the inversion is second
    order there, so it reconstructs exactly only from 15 steps on (as the reference).

    Call `reset()` before a new pass; `step` keeps the previous x0 prediction for order 2.
    """

    def __init__(
        self,
        alphas_cumprod: torch.Tensor,
        timesteps: torch.Tensor,
        prediction_type: str,
        lower_order_final: bool = True,
    ):
        bar = alphas_cumprod.to(torch.float32).cpu()
        self.alpha = bar.sqrt()
        self.sigma = (1 - bar).sqrt()
        self.lam = self.alpha.log() - self.sigma.log()
        self.timesteps = timesteps
        self.prediction_type = prediction_type
        self.lower_order_final = lower_order_final
        self.previous: torch.Tensor | None = None

    def reset(self) -> None:
        self.previous = None

    def data_prediction(
        self, model_out: torch.Tensor, sample: torch.Tensor, t: int
    ) -> torch.Tensor:
        a, s = self.alpha[t], self.sigma[t]
        if self.prediction_type == "epsilon":
            return (sample - s * model_out) / a
        if self.prediction_type == "v_prediction":
            return a * sample - s * model_out
        if self.prediction_type == "sample":
            return model_out
        raise ValueError(f"unsupported prediction type {self.prediction_type!r}")

    def mean_std(
        self, i: int, model_out: torch.Tensor, sample: torch.Tensor, sampling: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and noise scale of the step from timesteps[i] (order 2 after the first step)."""
        n = len(self.timesteps)
        t = int(self.timesteps[i])
        after = int(self.timesteps[i + 1]) if i + 1 < n else 0
        x0 = self.data_prediction(model_out, sample, t)
        previous, self.previous = self.previous, x0
        h = self.lam[after] - self.lam[t]
        decay = self.sigma[after] / self.sigma[t] * torch.exp(-h)
        gain = self.alpha[after] * (1 - torch.exp(-2.0 * h))
        std = self.sigma[after] * torch.sqrt(1.0 - torch.exp(-2 * h))
        first = previous is None or (sampling and self.lower_order_final and i == n - 1 and n < 15)
        if previous is None or first:
            return decay * sample + gain * x0, std
        t_before = int(self.timesteps[i - 1])
        ratio = (self.lam[t] - self.lam[t_before]) / h
        slope = (1.0 / ratio) * (x0 - previous)
        return decay * sample + gain * x0 + 0.5 * gain * slope, std

    def step(
        self, i: int, model_out: torch.Tensor, sample: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        mean, std = self.mean_std(i, model_out, sample, sampling=True)
        return mean + std * noise


@dataclass
class LeditsInversion:
    """LEDITS++'s inversion: the sampler, x_T (at timesteps[0]) and the noise map of each
    sampling step, in sampling order."""

    solver: DPMSolverSDE
    x_T: torch.Tensor
    zs: list[torch.Tensor]

    @property
    def timesteps(self) -> list[int]:
        return [int(t) for t in self.solver.timesteps]


@torch.no_grad()
def ledits_invert(
    predict: Any,
    x0: torch.Tensor,
    scheduler: Any,
    steps: int,
    skip: float,
    generator: torch.Generator,
    prediction_type: str,
    zero_noise_steps: int = 0,
) -> LeditsInversion:
    """LEDITS++'s edit-friendly inversion (Brack et al., 2024; Algorithm 1 of
    Huberman-Spiegelglas et al.): x_t drawn independently from x0 at every timestep of
    `ledits_timesteps`, then, noisiest first, the noise z that takes x_t to x_{t-1} under
    SDE-DPM-Solver++(2) with the guided prediction `predict(x_t, t)`, x_{t-1} replaced by the
    value the sampler will produce. Sampling from x_T with these z gives back x0 (the clean end
    is timestep 0's noise level) when steps >= 15.

    Noise draws: one map per timestep from `generator` in x0's dtype, the least noisy first,
    as the reference. `zero_noise_steps` zeroes the last maps (the SDXL reference's
    `num_zero_noise_steps`)."""
    timesteps = ledits_timesteps(scheduler.config.num_train_timesteps, steps, skip)
    bar = scheduler.alphas_cumprod
    solver = DPMSolverSDE(
        bar, timesteps, prediction_type, scheduler.config.get("lower_order_final", True)
    )
    work = torch.promote_types(x0.dtype, torch.float32)
    x0w = x0.to(work)
    bar_w = bar.to(x0.device, work)
    noisy: list[torch.Tensor] = [torch.empty(0, device=x0.device)] * len(timesteps)
    for i in reversed(range(len(timesteps))):  # least noisy first
        # drawn in float32 on the CPU generator: in half precision the noise maps, from which
        # the edit's z_t are computed back, would lose their low bits
        noise = torch.randn(x0.shape, generator=generator, dtype=work, device="cpu").to(x0.device)
        a = bar_w[int(timesteps[i])]
        noisy[i] = a**0.5 * x0w + (1 - a) ** 0.5 * noise
    xs = [*noisy, x0w]
    zs = []
    solver.reset()
    for i, t in enumerate(timesteps):
        out = predict(xs[i].to(x0.dtype), t).to(work)
        mean, std = solver.mean_std(i, out, xs[i], sampling=False)
        z = (xs[i + 1] - mean) / std
        zs.append(z)
        xs[i + 1] = mean + std * z  # the value the sampler will produce
    for k in range(min(zero_noise_steps, len(zs))):
        zs[len(zs) - 1 - k] = torch.zeros_like(zs[0])
    solver.reset()
    return LeditsInversion(solver, xs[0], zs)
