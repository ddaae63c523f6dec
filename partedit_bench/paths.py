"""Where things live: the repository, the benchmark data (PARTEDIT_BENCH_DATA) and the cache
(PARTEDIT_BENCH_CACHE)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("PARTEDIT_BENCH_DATA", REPO_ROOT / "benchmark_data"))


def cache_root() -> Path:
    default = Path.home() / ".cache" / "partedit-bench"
    return Path(os.environ.get("PARTEDIT_BENCH_CACHE", default))
