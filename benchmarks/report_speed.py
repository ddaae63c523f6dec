"""How long `report` takes over N job records with metric rows (target: 10,000 in < 5 s),
for the tables (the HTML gallery, which copies sample images, is not part of the timing).

Writes a synthetic run folder (records and pixel-metric rows in the real on-disk format,
random values), then times `build_report` on it. Usage:

    .venv/bin/python benchmarks/report_speed.py [--jobs 10000] [--folder /tmp/report-speed]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from partedit_bench.config import stable_hash
from partedit_bench.io import json_bytes
from partedit_bench.metrics import METRICS, pixel_manifest
from partedit_bench.metrics.evaluate import MANIFEST_FILE, metric_path
from partedit_bench.report import build_report


def write_run(root: Path, jobs: int) -> None:
    rng = np.random.default_rng(0)
    run_hash = "benchmark"
    (root / "run.json").write_bytes(
        json_bytes(
            {
                "run_hash": run_hash,
                "identity": {},
                "suite": {"name": "synthetic", "path": ""},
                "backbone": {"name": "sdxl", "random_weights": False},
                "note": "",
            }
        )
    )
    manifest_hash = stable_hash(pixel_manifest())
    (root / MANIFEST_FILE).write_bytes(
        json_bytes(
            {"pixel": {"available": True, "hash": manifest_hash, "manifest": pixel_manifest()}}
        )
    )
    variants = [f"method{i}" for i in range(10)]
    parts = [
        "humanoid-head",
        "human-hair",
        "humanoid-torso",
        "animal-head",
        "car-body",
        "car-hood",
        "chair-seat",
    ]
    per_variant = jobs // len(variants)
    names = [m.name for m in METRICS.values() if m.group == "pixel"]
    for variant in variants:
        for index in range(per_variant):
            split = "synth" if index % 2 else "real"
            sample, seed = f"s{index // 2:05d}", index % 2
            folder = root / variant / split
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{sample}__s{seed}.json"
            job_hash = f"{variant}{index}"
            path.write_bytes(
                json_bytes(
                    {
                        "run_hash": run_hash,
                        "job_hash": job_hash,
                        "variant": variant,
                        "uses_gt_mask": False,
                        "split": split,
                        "part": parts[index % len(parts)],
                        "sample_id": sample,
                        "seed": seed,
                        "status": "ok" if index % 97 else "failed",
                        "image": path.with_suffix(".png").name,
                    }
                )
            )
            values = {n: float(v) for n, v in zip(names, rng.random(len(names)), strict=True)}
            metric_path(path, "pixel", manifest_hash).write_bytes(
                json_bytes(
                    {
                        "job_hash": job_hash,
                        "group": "pixel",
                        "manifest_hash": manifest_hash,
                        "values": values,
                    }
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    root = Path(args.folder or tempfile.mkdtemp(prefix="report-speed-"))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    write_run(root, args.jobs)
    start = time.perf_counter()
    result = build_report([root], gallery=False)  # the tables; the gallery copies images
    seconds = time.perf_counter() - start
    rows = len(result["long"])
    print(
        f"report over {args.jobs} job records (+ metric rows): {seconds:.2f} s "
        f"({rows} aggregate rows); target < 5 s: {'met' if seconds < 5 else 'NOT met'}"
    )
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
