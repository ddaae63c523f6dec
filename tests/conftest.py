"""Shared test set-up: an isolated cache, offline hub, and helpers to run the CLI."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CACHE = tempfile.mkdtemp(prefix="partedit-bench-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)  # nothing left in the temp folder
os.environ.setdefault("PARTEDIT_BENCH_CACHE", _CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
# tables are read at one width whatever runs the tests (a terminal, a pipe, an xdist worker)
os.environ["COLUMNS"] = "200"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one thread each (and in the commands a test
    # starts), or the workers' thread pools oversubscribe the cores and every step slows
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
os.environ.pop("RANK", None)
os.environ.pop("WORLD_SIZE", None)
os.environ.pop("SLURM_ARRAY_TASK_ID", None)


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "partedit_bench", *args]


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True, **kwargs
    )


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _log_handlers_follow_the_capture():
    """diffusers / transformers create their stderr handler once, bound to whatever stderr
    was then (a test's capture, closed afterwards): point it at the current one, so a later
    test's log line is not a logging traceback in that test's output."""
    import logging

    for name in ("diffusers", "transformers"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stderr  # (setStream would flush the closed one first)
    yield


@pytest.fixture(scope="session")
def tiny():
    """The one tiny-backbone fixture: `tiny(name, dtype)` builds each offline backbone once per
    session (tests that change a backbone build their own with `load_backbone`)."""
    from partedit_bench.engine.backbones import load_backbone

    built: dict[tuple[str, str], object] = {}

    def get(name: str = "tiny-sd", dtype: str = "float32"):
        if (name, dtype) not in built:
            built[name, dtype] = load_backbone(name, dtype=dtype)
        return built[name, dtype]

    return get
