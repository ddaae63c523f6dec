"""The methods of one run: each checked once before any job (`preflight`), asked for its own
inputs per job (which loads a special checkpoint when its first job comes), and released
after its last job, so that a run holds the backbone and at most one special checkpoint at a
time (kept while the next method shares it)."""

from __future__ import annotations

import gc
from typing import Any

from partedit_bench.api import EditMethod, MethodUnavailable, unsupported_backbone
from partedit_bench.data.schema import Sample
from partedit_bench.jobs import Job


class MethodSet:
    """The run's method objects by variant name, and the reasons of those that cannot run."""

    def __init__(self, variants: list[Any], backbone: Any, samples: list[Sample], console: Any):
        self.backbone, self.console = backbone, console
        self.methods: dict[str, EditMethod] = {}
        self.unavailable: dict[str, str] = {}
        self.released: set[str] = set()
        self.last_job: dict[str, int] = {}
        self.jobs: list[Job] = []
        for variant in variants:
            if unsupported_backbone(variant.cls, backbone):
                continue  # its jobs are recorded as skipped
            method = variant.cls(variant.options)
            try:
                method.preflight(backbone, samples)
            except MethodUnavailable as exc:
                self.skip(variant.name, str(exc))
                continue
            self.methods[variant.name] = method

    def __getitem__(self, name: str) -> EditMethod:
        return self.methods[name]

    def skip(self, name: str, reason: str) -> None:
        """Records a method as unavailable here: its remaining jobs are recorded as skipped."""
        if name not in self.unavailable:
            self.unavailable[name] = reason
            self.console.print(f"[yellow]skipping {name}:[/] {reason}")

    def plan(self, jobs: list[Job]) -> None:
        """The jobs this invocation goes through, in order (one method's jobs together)."""
        self.jobs = jobs
        self.last_job = {job.variant.name: i for i, job in enumerate(jobs)}

    def inputs(self, job: Job) -> dict[str, Any] | None:
        """The method's own inputs for the job hash (this may load its special checkpoint);
        a method that turns out unavailable here has its jobs recorded as skipped."""
        method = self.methods.get(job.variant.name)
        if method is None or job.variant.name in self.unavailable:
            return None
        try:
            return method.inputs_fingerprint(job.sample)
        except MethodUnavailable as exc:
            self.skip(job.variant.name, str(exc))
            return None

    def release_finished(self, index: int) -> None:
        """Before job `index` (len(jobs): after the last): releases the methods whose last job
        is done, except one whose special checkpoint the next job's method shares (same kind:
        released once that method holds it)."""
        upcoming = (
            self.jobs[index].variant.cls.special_checkpoint if index < len(self.jobs) else None
        )
        freed = False
        for name, method in self.methods.items():
            if name in self.released or self.last_job.get(name, -1) >= index:
                continue
            if method.special_checkpoint is not None and method.special_checkpoint == upcoming:
                continue
            method.release()
            self.released.add(name)
            freed = True
        if freed:
            gc.collect()
            device = str(getattr(self.backbone, "device", "cpu"))
            if device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
