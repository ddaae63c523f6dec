"""What a run is made of: shards (--shard, torchrun, SLURM arrays), jobs (method variant x
sample x seed) and the run's configuration hash."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
