"""`run_benchmark(cfg)`: `partedit-bench run` as one Python call (run, evaluate, report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partedit_bench.config import RunConfig
from partedit_bench.runner import Runner


@dataclass
class BenchmarkResult:
    """What `run_benchmark` did: the run folder, the exit code (1 when a job failed), this
    invocation's summary, and the report (None when the shard had no jobs)."""

    root: Path
    code: int
    summary: dict[str, Any]
    report: dict[str, Any] | None
    runner: Runner


def run_benchmark(cfg: RunConfig, console: Any = None) -> BenchmarkResult:
    """`partedit-bench run` as one call: 1. run the jobs (resuming), 2. score this
    invocation's jobs with the pixel metrics (cached), 3. write the report of the run folder.

    Example:
        >>> from partedit_bench.config import RunConfig
        >>> result = run_benchmark(RunConfig(methods="identity", backbone="tiny-sd", limit=2))
        >>> result.report["long"]  # the table in long form  # doctest: +SKIP
    """
    from partedit_bench.metrics.evaluate import evaluate_run
    from partedit_bench.report import build_report

    runner = Runner(cfg, console)
    code = runner.run()  # 1.
    if not runner.record_paths:  # e.g. --shard 999/1000 of a smaller run: nothing to do here
        return BenchmarkResult(runner.root, 0, runner.summary, None, runner)
    evaluate_run(  # 2.
        runner.root, metrics=["psnr_bg"], only=set(runner.record_paths), console=runner.console
    )
    report = build_report([runner.root])  # 3.
    return BenchmarkResult(runner.root, code, runner.summary, report, runner)
