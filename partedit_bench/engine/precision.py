"""Precision: the dtype a run asks for, how weights are read and cast to it, a float16 VAE
that needs float32 (SDXL's original VAE), and latents that overflowed refused before they are
decoded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from partedit_bench.errors import UserError, did_you_mean


def resolve_dtype(
    dtype: str, device: torch.device, random_weights: bool, family: str = ""
) -> torch.dtype:
    """`auto`: real weights on a GPU in float16 (bfloat16 for FLUX and Qwen-Image, which are
    trained and released in it), everything else in float32."""
    if dtype == "auto":
        if device.type != "cuda" or random_weights:
            return torch.float32
        return torch.bfloat16 if family in ("flux", "qwen-image") else torch.float16
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "float64": torch.float64,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in table:
        raise UserError(f"unknown dtype '{dtype}'{did_you_mean(dtype, table)}")
    return table[dtype]


@contextlib.contextmanager
def vae_precision(vae: Any) -> Iterator[None]:
    """A float16 VAE whose config asks for it (`force_upcast`: SDXL's original VAE overflows in
    float16) runs in float32 for the duration, as diffusers' pipelines do; SDXL's fp16-fixed
    VAE and bfloat16 (float32's range) run as they are."""
    upcast = next(vae.parameters()).dtype == torch.float16 and bool(
        getattr(vae.config, "force_upcast", False)
    )
    if upcast:
        torch.nn.Module.to(vae, torch.float32)
    try:
        yield
    finally:
        if upcast:
            torch.nn.Module.to(vae, torch.float16)


class NonFiniteLatents(RuntimeError):
    """Latents with NaN or inf values reached the VAE decoder: decoded, they would be a black
    or noise image scored as an edit."""


def refuse_non_finite(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
    x = args[0]
    if isinstance(x, torch.Tensor) and not bool(torch.isfinite(x).all()):
        raise NonFiniteLatents(
            "the latents to decode hold NaN or inf values: the edit overflowed or diverged "
            "(in float16, try --dtype bfloat16, which has float32's range, or float32)"
        )


def read_dtype(torch_dtype: torch.dtype) -> torch.dtype:
    """The dtype to read weights in: the run's, except bfloat16, read as float32 so that the
    weights are fingerprinted as stored and cast afterwards."""
    return torch.float32 if torch_dtype == torch.bfloat16 else torch_dtype


def cast_module(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Casts a module's floating-point weights, keeping the modules diffusers marks as float32
    (`_keep_in_fp32_modules`) in float32 as `from_pretrained(dtype=...)` does."""
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    if not keep:
        torch.nn.Module.to(module, dtype)  # (diffusers' own .to warns even with nothing to keep)
        return
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point() and not any(k in name for k in keep):
            tensor.data = tensor.data.to(dtype)


def built(module: Any, dtype: torch.dtype) -> Any:
    """A freshly built model cast to `dtype` (as `cast_module`) and in eval mode: the
    real-size random builders cast each model as soon as it exists."""
    cast_module(module, dtype)
    return module.eval()
