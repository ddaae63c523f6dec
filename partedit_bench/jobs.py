"""What a run is made of: shards (--shard, torchrun, SLURM arrays), jobs (method variant x
sample x seed), the run's configuration hash, and `perform`: the one path from an
`EditRequest` to a finished edit that `run` (every job) and `edit` (one image) share."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from partedit_bench.api import EditMethod, EditRequest, EditResult, finish, mask_image
from partedit_bench.config import RunConfig, Variant, stable_hash
from partedit_bench.data.schema import Sample
from partedit_bench.data.suites import Suite
from partedit_bench.errors import UserError
from partedit_bench.store import RECORD_VERSION


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    local_rank: int | None = None

    @property
    def label(self) -> str:
        return f"{self.index}-of-{self.count}"


def shard_from(arg: str | None, env: dict[str, str] | os._Environ = os.environ) -> Shard:
    """The shard to run: `--shard i/n`, else RANK/WORLD_SIZE (torchrun, accelerate; the device
    from LOCAL_RANK), else SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else 0/1."""
    local = env.get("LOCAL_RANK")
    local_rank = int(local) if local and local.isdigit() else None
    if arg:
        index_text, sep, count_text = arg.partition("/")
        if not sep or not index_text.isdigit() or not count_text.isdigit():
            raise UserError(f"--shard expects i/n with 0 <= i < n, got '{arg}'")
        index, count = int(index_text), int(count_text)
    elif env.get("WORLD_SIZE") and env.get("RANK"):
        index, count = int(env["RANK"]), int(env["WORLD_SIZE"])
    elif env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT"):
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        index, count = int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    else:
        index, count = 0, 1
    if not 0 <= index < count:
        raise UserError(f"shard index {index} is outside 0..{count - 1}")
    return Shard(index, count, local_rank)


@dataclass
class Job:
    variant: Variant
    sample: Sample
    seed: int

    def stem(self, root: Path) -> Path:
        folder = self.variant.name.replace(os.sep, "_")
        return root / folder / self.sample.split / f"{self.sample.id}__s{self.seed}"


def run_hash_of(cfg: RunConfig, suite: Suite, backbone_name: str) -> tuple[str, dict[str, Any]]:
    """The run's configuration hash; it excludes --shard, --limit, the method list and the
    device, so shards and reruns on other GPUs join the same folder."""
    identity = {
        "suite": suite.name,
        "suite_version": suite.version,
        "backbone": backbone_name,
        "seeds": cfg.seed_list(),
        "dtype": cfg.dtype,
        "record_version": RECORD_VERSION,
    }
    return stable_hash(identity), identity


@dataclass
class Performed:
    """A finished edit, as both `run` and `edit` keep it.

    Args:
        image: the edit at the source's size (Lanczos), what the metrics score.
        mask: the method's mask at the source's size, float in [0, 1] (bilinear), or None.
        mask_png: that mask as the 8-bit PNG image a run stores beside the edit.
        native_size: the method's output size before resizing.
        seconds: the edit's wall time; peak_memory: `MemoryMeter`'s reading.
        result: the method's `EditResult` as returned (step times, extras).
    """

    image: Image.Image
    mask: np.ndarray | None
    mask_png: Image.Image | None
    native_size: tuple[int, int]
    seconds: float
    peak_memory: dict[str, Any]
    result: EditResult


def perform(
    method: EditMethod,
    request: EditRequest,
    *,
    device: str = "cpu",
    check: Any = None,
    on_step: Callable[[int], None] | None = None,
) -> Performed:
    """Runs `method.edit(request)` under `check` (a context manager: `--check-tensors`) with
    `on_step` called after every denoiser call, timed and metered, and brings the edit and
    its mask back to the source's size (`api.finish`, `api.mask_image`)."""
    from partedit_bench.engine.devices import MemoryMeter

    size = request.image.size
    memory = MemoryMeter(device)
    start = time.perf_counter()
    with check or contextlib.nullcontext(), counting_unet_calls(request.backbone, on_step):
        result = method.edit(request)
    seconds = time.perf_counter() - start
    edited, mask = finish(result, size)
    png = None if result.predicted_mask is None else mask_image(result.predicted_mask, size)
    return Performed(edited, mask, png, result.image.size, seconds, memory.read(), result)


class counting_unet_calls:  # noqa: N801 (a context manager, used as a function)
    """Calls `on_step(n)` after every denoiser call (n so far) while active."""

    def __init__(self, backbone: Any, on_step: Callable[[int], None] | None):
        components = getattr(backbone, "components", None) or {}
        self.unet = components.get("unet") or components.get("transformer")
        self.on_step, self.calls, self.handle = on_step, 0, None

    def __enter__(self) -> counting_unet_calls:
        if self.on_step is not None and self.unet is not None:
            self.handle = self.unet.register_forward_hook(self._called)
        return self

    def _called(self, module: Any, args: Any, output: Any) -> None:
        self.calls += 1
        assert self.on_step is not None
        self.on_step(self.calls)

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.remove()
