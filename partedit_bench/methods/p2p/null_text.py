"""Null-text inversion (Mokady et al., CVPR 2023), as the reference notebook runs it for
Prompt-to-Prompt's real-image edits: one unconditional embedding per step, optimized so that
the guided DDIM step from the current latent lands on the inverted trajectory."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def null_text_optimization(
    backbone: Any,
    trajectory: list[torch.Tensor],
    timesteps: Any,
    scheduler: Any,
    cond: tuple[torch.Tensor, Any],
    uncond: tuple[torch.Tensor, Any],
    guidance: float,
    inner_steps: int,
) -> list[torch.Tensor]:
    """Per step, optimizes the unconditional embedding so that the guided DDIM step from the
    current latent lands on the inverted trajectory (Adam, lr 1e-2 (1 - i/100), early stop at
    loss < 1e-5 + 2e-5 i); returns one unconditional embedding per step."""
    unet = backbone.unet
    dtype = uncond[0].dtype
    # the optimized embedding is a float32 master copy, cast for each UNet call, and the loss
    # is float32: in half precision Adam's epsilon (1e-8) is 0 and the update divides by zero
    master = torch.promote_types(dtype, torch.float32)
    embedding = uncond[0].detach().to(master)
    latent = trajectory[0].to(dtype)
    out: list[torch.Tensor] = []
    for i, t in enumerate(timesteps):
        with torch.no_grad():
            cond_out = unet(
                latent, t, encoder_hidden_states=cond[0], added_cond_kwargs=cond[1]
            ).sample
        # a fresh tensor per step: Adam updates it in place, and the embeddings kept for the
        # earlier steps must not change with it
        embedding = embedding.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([embedding], lr=1e-2 * (1 - i / 100))
        target = trajectory[i + 1].to(latent.dtype)
        for _ in range(inner_steps):
            with torch.enable_grad():
                uncond_out = unet(
                    latent,
                    t,
                    encoder_hidden_states=embedding.to(dtype),
                    added_cond_kwargs=uncond[1],
                ).sample
                guided = uncond_out + guidance * (cond_out - uncond_out)
                step = scheduler.step(guided, t, latent).prev_sample
                loss = F.mse_loss(step.to(master), target.to(master))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if loss.item() < 1e-5 + i * 2e-5:
                break
        embedding = embedding.detach().clone()
        out.append(embedding.to(dtype))
        with torch.no_grad():
            uncond_out = unet(
                latent, t, encoder_hidden_states=out[-1], added_cond_kwargs=uncond[1]
            ).sample
            latent = scheduler.step(
                uncond_out + guidance * (cond_out - uncond_out), t, latent
            ).prev_sample
    return out
