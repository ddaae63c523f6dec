"""The job executor: prepares a run (suite, variants, backbone, run folder), then computes
each job it owns (resume: a job whose record is intact is not redone; workers on one folder
split the jobs by claim files) and writes its record. The folder's layout is in `store`;
shards, jobs and the run hash in `jobs`; `benchmark.run_benchmark` chains run, evaluate and
report."""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from partedit_bench.api import EditRequest, MethodUnavailable, unsupported_backbone
from partedit_bench.config import RunConfig, resolve_variants, stable_hash
from partedit_bench.data.schema import Sample, load_image, load_mask
from partedit_bench.data.suites import Suite, load_suite
from partedit_bench.engine.backbones import check_backbone_name
from partedit_bench.engine.devices import MemoryMeter, pick_device
from partedit_bench.errors import UserError
from partedit_bench.io import (
    atomic_write_bytes,
    create_exclusive,
    json_bytes,
    png_bytes,
    remove_stale_temps,
)
from partedit_bench.jobs import Job, perform, run_hash_of, shard_from
from partedit_bench.methodset import MethodSet
from partedit_bench.outputs import output_folder
from partedit_bench.store import (
    JobRecord,
    bytes_digest,
    claim_job,
    git_commit,
    now,
    outputs_intact,
    package_versions,
    read_json,
    read_record,
    safe_host,
)


class Runner:
    """Runs one invocation of `partedit-bench run` (one shard of the job list)."""

    def __init__(self, cfg: RunConfig, console: Any = None):
        from rich.console import Console

        self.cfg = cfg
        self.console = console or Console(stderr=True)

    # 1. everything that can fail on bad input is checked before anything is written
    def prepare(self) -> None:
        cfg = self.cfg
        if cfg.output:  # not a file, not below one
            output_folder(cfg.output, "--output")
        self.seeds = cfg.seed_list()
        self.shard = shard_from(cfg.shard)
        self.method_config = cfg.method_config_path()
        self.variants = resolve_variants(cfg.methods, cfg.set, self.method_config)
        self.suite = load_suite(cfg.suite)
        limit = cfg.limit_value()
        self.samples = self.suite.samples[:limit] if limit else self.suite.samples
        if not self.samples:
            raise UserError(f"suite '{self.suite.name}' has no samples")
        without_image = [s.id for s in self.samples if not s.original_image]
        if without_image:
            raise UserError(
                f"suite '{self.suite.name}' has no source images for "
                f"{len(without_image)} samples; build them with `partedit-bench data "
                f"build-synth --suite {cfg.suite} --backbone BACKBONE`"
            )
        without_mask = [s.id for s in self.samples if not s.gt_mask]
        if without_mask:
            raise UserError(
                f"{len(without_mask)} samples of suite '{self.suite.name}' have no GT "
                f"mask ({', '.join(without_mask[:3])}...); attach masks with "
                f"`partedit-bench data import-masks {self.suite.path.parent} SOURCE`"
            )
        Suite(
            self.suite.name, self.suite.version, "", self.suite.path, self.samples
        ).validate_files()
        self.root = cfg.output_dir()
        check_backbone_name(cfg.backbone)
        self.run_hash, self.identity = run_hash_of(cfg, self.suite, cfg.backbone)
        existing = self.root / "run.json"
        if existing.exists():
            previous = read_json(existing)
            if previous is None:
                raise UserError(f"{existing} is unreadable; remove it or pass --overwrite")
            if previous.get("run_hash") != self.run_hash and not cfg.overwrite:
                diff = {
                    k: (previous.get("identity", {}).get(k), v)
                    for k, v in self.identity.items()
                    if previous.get("identity", {}).get(k) != v
                }
                shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
                raise UserError(
                    f"run folder {self.root} holds a different configuration "
                    f"({shown}); use another --output or pass --overwrite"
                )
        self.device = pick_device(cfg.device, self.shard.local_rank)

    def load_backbone(self) -> None:
        from partedit_bench.engine.backbones import load_backbone

        with self.console.status(f"loading backbone {self.cfg.backbone} on {self.device}"):
            self.backbone = load_backbone(self.cfg.backbone, self.device, self.cfg.dtype)
        if self.backbone.random_weights:
            self.console.print(f"[yellow]{self.backbone.name}: {self.backbone.note}[/]")

    def write_run_json(self) -> None:
        info = {
            "run_hash": self.run_hash,
            "identity": self.identity,
            "config": {k: v for k, v in vars(self.cfg).items()},
            "method_config": self.method_config,
            "grids": {v.name: dict(v.spec.grid) for v in self.variants if v.spec.grid},
            "suite": {
                "name": self.suite.name,
                "version": self.suite.version,
                "path": str(self.suite.path),
                "size": len(self.suite.samples),
                "synthetic_source": self.suite.synthetic_source,
            },
            "backbone": self.backbone.describe(),
            "note": self.backbone.note,
            "versions": package_versions(),
            "git_commit": git_commit(),
            "created": now(),
            "host": socket.gethostname(),
            "scoring": {
                "resize": "edited images are resized to the sample's size with Lanczos "
                "before scoring; masks are never resized"
            },
        }
        path = self.root / "run.json"
        if self.cfg.overwrite and path.exists():
            previous = read_json(path) or {}
            if previous.get("run_hash") != self.run_hash:
                atomic_write_bytes(path, json_bytes(info))
                return
        create_exclusive(path, json_bytes(info))

    def jobs(self) -> list[Job]:
        every = [
            Job(v, s, seed) for v in self.variants for s in self.samples for seed in self.seeds
        ]
        return every[self.shard.index :: self.shard.count]

    def job_hash(self, job: Job, sample_digest: str, inputs: dict[str, Any] | None) -> str:
        """Names every input that changes a job's output: the run, the method, its code
        version and options, the sample's fields and files, the seed, the backbone's weights
        and the method's own inputs (part tokens, special checkpoints)."""
        return stable_hash(
            {
                "run": self.run_hash,
                "method": job.variant.spec.method,
                "method_version": job.variant.cls.version,
                "options": job.variant.options_dict(),
                "sample": sample_digest,
                "seed": job.seed,
                "backbone": self.backbone.fingerprint if job.variant.cls.uses_backbone else None,
                "inputs": inputs or {},
            }
        )

    def run(self) -> int:
        self.prepare()
        remove_stale_temps(self.root)  # of killed runs, evaluations and reports
        self.load_backbone()
        self.methods = MethodSet(self.variants, self.backbone, self.samples, self.console)
        self.write_run_json()
        started = now()
        jobs = self.jobs()
        counts = {"ok": 0, "failed": 0, "skipped": 0, "cached": 0, "claimed": 0}
        failures: list[str] = []
        self.record_paths: list[Path] = []
        digests: dict[str, str] = {}
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(
                f"shard {self.shard.index}/{self.shard.count}", total=len(jobs)
            )
            self.methods.plan(jobs)
            for index, job in enumerate(jobs):
                self.methods.release_finished(index)
                if job.sample.id not in digests:
                    self.rerender_if_missing(job.sample)
                    digests[job.sample.id] = job.sample.digest()
                inputs = self.methods.inputs(job)
                job_hash = self.job_hash(job, digests[job.sample.id], inputs)
                stem = job.stem(self.root)
                self.record_paths.append(stem.with_suffix(".json"))
                if self.reusable(stem, job_hash):
                    counts["cached"] += 1
                    progress.advance(task)
                    continue
                claim = stem.with_suffix(".claim")
                stem.parent.mkdir(parents=True, exist_ok=True)
                if not claim_job(claim):  # another worker on this folder computes it
                    counts["claimed"] += 1
                    progress.advance(task)
                    continue
                if self.reusable(stem, job_hash):  # finished by another worker meanwhile
                    claim.unlink(missing_ok=True)
                    counts["cached"] += 1
                    progress.advance(task)
                    continue
                progress.update(task, description=f"{job.variant.name} {job.sample.id}")
                try:
                    status = self.run_job(job, job_hash, stem)
                finally:
                    claim.unlink(missing_ok=True)
                counts[status] += 1
                if status == "failed":
                    failures.append(f"{job.variant.name} {job.sample.id} s{job.seed}")
                progress.advance(task)
                if not self.console.is_terminal:  # a log file gets a line per computed job
                    done = sum(counts.values())
                    self.console.print(
                        f"[{done}/{len(jobs)}] {job.variant.name} {job.sample.id} "
                        f"s{job.seed}: {status}",
                        highlight=False,
                        markup=False,
                    )
        self.methods.release_finished(len(jobs))
        summary = {
            "shard": self.shard.label,
            "started": started,
            "finished": now(),
            "jobs": len(jobs),
            **counts,
            "failures": failures,
            "device": self.device,
            "host": socket.gethostname(),
        }
        shards = self.root / "shards"
        # the latest invocation of this shard, and one file per invocation (the history)
        atomic_write_bytes(shards / f"{self.shard.label}.json", json_bytes(summary))
        stamp = f"{time.time_ns():020d}"  # sortable, unique per invocation
        history = shards / self.shard.label / f"{stamp}-{safe_host()}-{os.getpid()}.json"
        atomic_write_bytes(history, json_bytes(summary))
        self.summary = summary
        return 1 if failures else 0

    def tensor_check(self) -> Any:
        """`--check-tensors`: the job's tensors checked at every layer of the backbone and of
        the special checkpoints loaded now."""
        import contextlib

        if not self.cfg.check_tensors:
            return contextlib.nullcontext()
        from partedit_bench.engine.devices import checked_tensors
        from partedit_bench.methods.specials import loaded_specials

        return checked_tensors([self.backbone, *loaded_specials()])

    def reusable(self, stem: Path, job_hash: str) -> bool:
        """Whether the job's record can be trusted as done (same hash, files intact)."""
        record = read_record(stem.with_suffix(".json"))
        return bool(
            not self.cfg.recompute
            and record
            and record.job_hash == job_hash
            and record.status in ("ok", "skipped")
            and (record.status != "ok" or outputs_intact(stem.parent, record))
        )

    def run_job(self, job: Job, job_hash: str, stem: Path) -> str:
        record = JobRecord(
            run_hash=self.run_hash,
            job_hash=job_hash,
            variant=job.variant.name,
            method=job.variant.spec.method,
            sample_id=job.sample.id,
            split=job.sample.split,
            part=job.sample.part_token,
            seed=job.seed,
            status="failed",  # until it is known
            options=job.variant.options_dict(),
            grid=dict(job.variant.spec.grid),
            uses_gt_mask=self.uses_gt_mask(job),
            backbone_fingerprint=self.backbone.fingerprint,
            started=now(),
            shard=self.shard.label,
        )
        for pattern in (".json", ".png", "_mask.png"):  # this job's own outputs only
            for leftover in stem.parent.glob(f".{stem.name}{pattern}.*.tmp"):
                leftover.unlink(missing_ok=True)
        reason = self.skip_reason(job)
        if reason:
            record.status, record.error, record.finished = "skipped", reason, now()
            atomic_write_bytes(stem.with_suffix(".json"), record.to_bytes())
            return "skipped"
        start, memory = time.perf_counter(), MemoryMeter(self.device)
        try:
            self.rerender_if_missing(job.sample)  # (again: the cache may go mid-job too)
            image = load_image(job.sample.original_image)
            adapter = self.methods[job.variant.name]
            mask = load_mask(job.sample.gt_mask, image.size) if adapter.needs_gt_mask() else None
            request = EditRequest(
                sample=job.sample,
                image=image,
                seed=job.seed,
                options=job.variant.options,
                backbone=self.backbone,
                mask=mask,
                synthetic=self.suite.is_synthetic_for(self.backbone.name),
            )
            done = perform(adapter, request, device=self.device, check=self.tensor_check())
            record.native_size = list(done.native_size)
            data = png_bytes(done.image)
            atomic_write_bytes(stem.with_suffix(".png"), data)
            record.image = stem.with_suffix(".png").name
            record.files = {record.image: bytes_digest(data)}
            if done.mask_png is not None:
                mask_path = stem.parent / f"{stem.name}_mask.png"
                data = png_bytes(done.mask_png)
                atomic_write_bytes(mask_path, data)
                record.predicted_mask = mask_path.name
                record.files[mask_path.name] = bytes_digest(data)
            record.status, record.error = "ok", None
            record.step_times, record.extras = done.result.step_times, done.result.extras
            record.peak_memory = done.peak_memory
        except KeyboardInterrupt:
            raise
        except MethodUnavailable as exc:  # e.g. its special checkpoint went missing
            self.methods.skip(job.variant.name, str(exc))
            record.status, record.error = "skipped", str(exc)
        except Exception as exc:  # a failing job is recorded; the run goes on
            tail = "".join(traceback.format_exception(exc)[-3:]).strip()
            record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
            record.traceback = tail
            self.console.print(
                f"[red]failed[/] {job.variant.name} {job.sample.id} "
                f"s{job.seed}: {type(exc).__name__}: {exc}"
            )
        record.wall_time_s = round(time.perf_counter() - start, 4)
        if record.peak_memory is None:  # (a failed job: the peak until it failed)
            record.peak_memory = memory.read()
        record.finished = now()
        atomic_write_bytes(stem.with_suffix(".json"), record.to_bytes())
        return record.status

    def rerender_if_missing(self, sample: Sample) -> None:
        """A procedural suite's render cache (PARTEDIT_BENCH_CACHE) deleted during a run is
        rendered again: its files are deterministic in the suite's definition."""
        if "generator" not in self.suite.definition:
            return
        files = [sample.original_image, sample.gt_mask, sample.extra.get("gt_edited_image")]
        if all(not f or Path(f).is_file() for f in files):
            return
        load_suite(self.cfg.suite)  # renders every missing file of the suite again

    def uses_gt_mask(self, job: Job) -> bool:
        """Whether the job's adapter, with its options, is given the GT mask (the class's
        declaration for a method that is unavailable here and only recorded as skipped)."""
        adapter = self.methods.methods.get(job.variant.name)
        return adapter.needs_gt_mask() if adapter is not None else job.variant.cls.uses_gt_mask

    def skip_reason(self, job: Job) -> str | None:
        if job.variant.name in self.methods.unavailable:
            return self.methods.unavailable[job.variant.name]
        cls = job.variant.cls
        unsupported = unsupported_backbone(cls, self.backbone)
        if unsupported:
            return unsupported
        if self.uses_gt_mask(job) and not job.sample.gt_mask:
            return f"{cls.name} needs a GT mask and sample {job.sample.id} has none"
        return None
