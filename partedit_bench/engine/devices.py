"""Devices: picking one (`auto`: the shard's GPU, else the CPU; explicit ones checked) and a
job's peak memory."""

from __future__ import annotations

import resource
import sys
from typing import Any

from partedit_bench.errors import UserError
from partedit_bench.jobs import Shard


def pick_device(device: str, shard: Shard) -> str:
    """`auto`: the shard's GPU when there is one, else the CPU; an explicit device is checked
    (one line when it is not a device or not available here)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return f"cuda:{shard.local_rank or 0}"
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
