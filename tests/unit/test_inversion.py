"""`engine/inversion.py` against independent references: the prediction-type definitions,
diffusers' own DDIM (eta 0 and eta 1) and SDE-DPM-Solver++ steps, and exact reconstruction.
Toy predictors instead of a UNet, so that these run in seconds (and under mutation testing)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from partedit_bench.engine import inversion

BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def sd_scheduler(**extra: object) -> DDIMScheduler:
    return DDIMScheduler(
        **BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1, **extra
    )


def float64_sampler(steps: int) -> DDIMScheduler:
    """diffusers' DDIM with its float32 alpha table's values in float64, the precision ours
    computes in (otherwise its square roots round at 1e-7)."""
    sampler = sd_scheduler()
    sampler.alphas_cumprod = sampler.alphas_cumprod.double()
    sampler.final_alpha_cumprod = torch.as_tensor(sampler.final_alpha_cumprod).double()
    sampler.set_timesteps(steps)
    return sampler


def field(seed: int) -> torch.Tensor:
    return torch.randn(
        1, 4, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


BASE = field(1)


def eps_of_t(x: torch.Tensor, t: int) -> torch.Tensor:
    """A prediction that depends on the timestep only: DDIM inversion is then exact."""
    return torch.sin(BASE + int(t) / 97.0)


def eps_of_x(x: torch.Tensor, t: int) -> torch.Tensor:
    """A prediction that depends on the input too."""
    return 0.3 * torch.tanh(x) + torch.cos(BASE * int(t) / 500.0)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_to_eps_x0_inverts_each_prediction_types_definition(kind):
    x0, eps, alpha = field(2), field(3), torch.tensor(0.37, dtype=torch.float64)
    a, s = alpha.sqrt(), (1 - alpha).sqrt()
    x_t = a * x0 + s * eps  # the forward process
    out = {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[kind]
    got_eps, got_x0 = inversion.to_eps_x0(out, x_t, alpha, kind)
    torch.testing.assert_close(got_eps, eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_x0, x0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="unsupported prediction type"):
        inversion.to_eps_x0(out, x_t, alpha, "flow")


def test_edit_friendly_timesteps_are_the_ddim_schedulers():
    timesteps, alphas = inversion.edit_friendly_timesteps(sd_scheduler(), 7)
    reference = sd_scheduler()
    reference.set_timesteps(7)
    assert timesteps == [int(t) for t in reference.timesteps]
    assert torch.equal(alphas, reference.alphas_cumprod)


@pytest.mark.parametrize("zero_last", [False, True])
def test_edit_friendly_inversion_is_reproduced_by_diffusers_ddim_eta_1(zero_last):
    x0, steps = field(4), 6
    inv = inversion.invert(
        eps_of_x, x0, sd_scheduler(), steps, torch.Generator().manual_seed(5), "epsilon",
        zero_last_noise=zero_last,
    )  # fmt: skip
    # x_T is drawn from x0 with the generator's first map (the noisiest first)
    first = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5)).double()
    a = inv.alphas[0]
    torch.testing.assert_close(inv.xs[0], a.sqrt() * x0 + (1 - a).sqrt() * first)
    sampler = float64_sampler(steps)
    x = inv.xs[0]
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(
            eps_of_x(x, t), t, x, eta=1.0, variance_noise=inv.zs[i]
        ).prev_sample  # DDPM posterior, diffusers' own formula
        torch.testing.assert_close(x, inv.xs[i + 1], rtol=0, atol=1e-10)
    if zero_last:
        assert torch.count_nonzero(inv.zs[-1]) == 0
        assert (x - x0).abs().max() > 1e-4  # ends at the last mean, not on x0
    else:
        torch.testing.assert_close(x, x0, rtol=0, atol=1e-10)


def test_ddim_inversion_is_undone_by_diffusers_ddim_sampling():
    x0, steps = field(6), 8
    timesteps, trajectory = inversion.ddim_invert(eps_of_t, x0, sd_scheduler(), steps, "epsilon")
    assert len(trajectory) == steps + 1 and torch.equal(trajectory[-1], x0)
    sampler = float64_sampler(steps)
    assert timesteps == [int(t) for t in sampler.timesteps]
    x = trajectory[0]
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(eps_of_t(x, t), t, x, eta=0.0).prev_sample
        torch.testing.assert_close(x, trajectory[i + 1], rtol=0, atol=1e-10)


def test_ddim_inversion_step_is_the_deterministic_ddim_update_at_the_less_noisy_point():
    x0, steps = field(7), 5
    scheduler = sd_scheduler()
    timesteps, trajectory = inversion.ddim_invert(eps_of_x, x0, scheduler, steps, "epsilon")
    bar = scheduler.alphas_cumprod.double()
    ascending = list(reversed(timesteps))
    previous = bar[0]  # set_alpha_to_one=False: the clean end is timestep 0's level
    x = x0
    for k, t in enumerate(ascending):  # the DDIM equation run upwards, written out
        eps = eps_of_x(x, t)
        x = (
            bar[t].sqrt() * (x - (1 - previous).sqrt() * eps) / previous.sqrt()
            + (1 - bar[t]).sqrt() * eps
        )
        previous = bar[t]
        torch.testing.assert_close(trajectory[steps - 1 - k], x, rtol=0, atol=1e-12)


def test_ledits_timesteps_are_a_truncated_linspace():
    assert inversion.ledits_timesteps(1000, 6, 0.15).tolist() == [849, 679, 509, 340, 170, 1]
    assert inversion.ledits_timesteps(1000, 4, 0.0).tolist() == [999, 666, 333, 1]


@pytest.mark.parametrize("steps", [8, 16])
@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_sde_dpm_solver_steps_are_diffusers_sde_dpmsolver_plus_plus(steps, kind):
    """Order 2 after the first step, the first-order last step below 15 steps, landing on
    timestep 0's noise level: diffusers' multistep scheduler with `sigma_min` as the end."""
    reference = DPMSolverMultistepScheduler(
        **BETAS, algorithm_type="sde-dpmsolver++", solver_order=2, prediction_type=kind,
        final_sigmas_type="sigma_min", lower_order_final=True,
    )  # fmt: skip
    timesteps = inversion.ledits_timesteps(1000, steps, 0.15)
    reference.set_timesteps(timesteps=timesteps.tolist())
    ours = inversion.DPMSolverSDE(reference.alphas_cumprod, timesteps, kind)
    x_ref = x_ours = field(8).float()
    for i, t in enumerate(timesteps):
        noise = field(100 + i).float()
        x_ref = reference.step(
            eps_of_x(x_ref, t).float(), int(t), x_ref, variance_noise=noise
        ).prev_sample
        x_ours = ours.step(i, eps_of_x(x_ours, t).float(), x_ours, noise)
        torch.testing.assert_close(x_ours, x_ref, rtol=1e-4, atol=1e-5)


def test_sde_dpm_solver_data_prediction_and_unknown_type():
    bar = sd_scheduler().alphas_cumprod
    x, out = field(9).float(), field(10).float()
    a, s = bar[500].sqrt(), (1 - bar[500]).sqrt()
    for kind, x0 in (("epsilon", (x - s * out) / a), ("v_prediction", a * x - s * out),
                     ("sample", out)):  # fmt: skip
        solver = inversion.DPMSolverSDE(bar, torch.tensor([500, 1]), kind)
        torch.testing.assert_close(solver.data_prediction(out, x, 500), x0)
    with pytest.raises(ValueError, match="unsupported prediction type"):
        inversion.DPMSolverSDE(bar, torch.tensor([500, 1]), "flow").data_prediction(out, x, 500)
    # its tables are float32 whatever table it is given, as the reference scheduler's
    solver = inversion.DPMSolverSDE(bar.double(), torch.tensor([500, 1]), "epsilon")
    assert {solver.alpha.dtype, solver.sigma.dtype, solver.lam.dtype} == {torch.float32}


@pytest.mark.parametrize("steps", [15, 20])
def test_ledits_inversion_sampled_with_its_noise_returns_the_input(steps):
    x0 = field(11)
    inv = inversion.ledits_invert(
        eps_of_x, x0, sd_scheduler(), steps, 0.15, torch.Generator().manual_seed(3), "epsilon"
    )
    assert inv.timesteps == inversion.ledits_timesteps(1000, steps, 0.15).tolist()
    x = inv.x_T
    inv.solver.reset()
    for i, t in enumerate(inv.timesteps):
        x = inv.solver.step(i, eps_of_x(x, t), x, inv.zs[i])
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-9)


def test_ledits_inversion_draws_least_noisy_first_and_zeroes_the_last_maps():
    x0, steps = field(12), 6
    inv = inversion.ledits_invert(
        eps_of_x, x0, sd_scheduler(), steps, 0.15, torch.Generator().manual_seed(3), "epsilon",
        zero_noise_steps=2,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(3)
    draws = [torch.randn(x0.shape, generator=generator, dtype=torch.float64) for _ in range(steps)]
    a = sd_scheduler().alphas_cumprod.double()[inv.timesteps[0]]
    # x_T (the noisiest) is made from the last draw
    torch.testing.assert_close(inv.x_T, a**0.5 * x0 + (1 - a) ** 0.5 * draws[-1])
    assert [int(torch.count_nonzero(z)) == 0 for z in inv.zs] == [False] * 4 + [True] * 2
