"""Devices: picking one (`auto`: the shard's GPU, else the CPU; explicit ones checked), a
job's peak memory, and a check that every tensor entering a model is on its device and in its
dtype (`run --check-tensors`)."""

from __future__ import annotations

import contextlib
import functools
import resource
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from partedit_bench.errors import UserError


def pick_device(device: str, local_rank: int | None = None) -> str:
    """`auto`: the GPU of `local_rank` (a shard's) when there is one, else the CPU; an
    explicit device is checked (one line when it is not a device or not available here)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return f"cuda:{local_rank or 0}"
        return "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"--device '{device}' is not a device (cpu, cuda, cuda:N, mps)") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device is available on this machine")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available on this machine")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device '{device}': only cpu, cuda and mps are supported")
    return device


class MemoryMeter:
    """Peak memory of one job: CUDA allocator peak on a GPU, else the process's max RSS
    (a high-water mark over the whole process, recorded as such)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(device)
        self.device = device

    def read(self) -> dict[str, Any]:
        if self.cuda:
            import torch

            return {
                "bytes": int(torch.cuda.max_memory_allocated(self.device)),
                "kind": "cuda_max_allocated",
            }
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if sys.platform == "darwin" else 1024
        return {"bytes": int(rss * scale), "kind": "process_max_rss"}


class TensorMismatch(RuntimeError):
    """A tensor reached a model layer on another device or in another dtype than its weights."""


@contextlib.contextmanager
def checked_tensors(backbones: Iterable[Any]) -> Iterator[None]:
    """While active, every layer with weights of the backbones' models (UNet, VAE, text
    encoders) checks each tensor it is called with: on the weights' device, and, when floating,
    in their dtype; a mismatch raises TensorMismatch naming the layer. On a CPU the dtype half
    finds silent float32 promotions in a half-precision run; on a GPU the device half finds
    tensors made without `device=`. A model that keeps some modules in float32 by design
    (transformers' `_keep_in_fp32_modules`, e.g. T5's feed-forward output in FLUX's text
    encoder) passes float32 activations on: its layers are checked for the device only."""
    import torch

    handles = []
    for backbone in backbones:
        for part, model in backbone.components.items():
            if not isinstance(model, torch.nn.Module):
                continue
            mixed = bool(getattr(model, "_keep_in_fp32_modules", None))
            for name, layer in model.named_modules():
                if next(layer.parameters(recurse=False), None) is None:
                    continue
                hook = functools.partial(_check_inputs, f"{part}.{name}".rstrip("."), not mixed)
                handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _tensors(value: Any) -> Iterator[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _check_inputs(
    where: str, dtype: bool, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    weight = next(layer.parameters(recurse=False))
    for tensor in _tensors((args, kwargs)):
        if tensor.device != weight.device:
            raise TensorMismatch(
                f"{where} was called with a tensor on {tensor.device}; its weights are on "
                f"{weight.device}"
            )
        if dtype and tensor.is_floating_point() and tensor.dtype != weight.dtype:
            raise TensorMismatch(
                f"{where} was called with a {str(tensor.dtype).split('.')[-1]} tensor; its "
                f"weights are {str(weight.dtype).split('.')[-1]}"
            )
