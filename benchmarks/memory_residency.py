"""Which model copies a run of several methods holds: after every job of a tiny run of every
method (tiny-sdxl, so that both ip2p and sdxl_inpaint load their special checkpoints), the
backbones alive in the process, their weights' size, and the process's resident memory.

    .venv/bin/python benchmarks/memory_residency.py [--backbone tiny-sdxl]

A run should hold its backbone and at most one special checkpoint at a time (loaded when its
method starts, released after its last job, kept only while the next method shares it).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # (run as a script)


def rss_mib() -> float:
    """The process's resident memory now (Linux /proc), else its peak."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        pages = int(statm.read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def live_backbones() -> list[Any]:
    from partedit_bench.engine.backbones import Backbone

    gc.collect()
    with warnings.catch_warnings():  # (isinstance on some torch objects warns)
        warnings.simplefilter("ignore")
        return [o for o in gc.get_objects() if isinstance(o, Backbone)]


def weights_mib(backbone: Any) -> float:
    import torch

    return (
        sum(
            p.numel() * p.element_size()
            for m in backbone.components.values()
            if isinstance(m, torch.nn.Module)
            for p in m.parameters()
        )
        / 2**20
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="tiny-sdxl")
    args = parser.parse_args()
    from partedit_bench.config import RunConfig
    from partedit_bench.runner import Runner

    rows: list[tuple[str, list[str], float, float]] = []

    class Watched(Runner):
        def run_job(self, job: Any, *rest: Any) -> str:
            status = super().run_job(job, *rest)
            alive = live_backbones()
            names = sorted(b.name for b in alive)
            rows.append((job.variant.name, names, sum(map(weights_mib, alive)), rss_mib()))
            return status

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "methods.yaml"
        config.write_text(
            "options:\n"
            + "".join(
                f"  {m}: {{steps: 2}}\n"
                for m in ("partedit", "blended_latent", "ip2p", "sdxl_inpaint", "p2p")
            )
            + "  ef_ddpm: {steps: 3, skip: 1}\n  ledits_pp: {steps: 3, warmup: 1}\n"
            + "  masactrl: {steps: 2, start_step: 1}\n"
            + "variants:\n  - ip2p[image_guidance=2.0]\n"
        )
        cfg = RunConfig(
            backbone=args.backbone,
            limit=1,
            output=str(Path(folder) / "run"),
            method_config=str(config),
            device="cpu",
        )
        before = rss_mib()
        Watched(cfg).run()
    print(f"RSS before the run: {before:.0f} MiB")
    print(f"{'after job':28s} {'backbones alive':60s} {'weights MiB':>11s} {'RSS MiB':>8s}")
    for variant, names, weights, rss in rows:
        print(f"{variant:28s} {', '.join(names):60s} {weights:11.1f} {rss:8.0f}")
    most = max(len(names) for _, names, _, _ in rows)
    print(f"most backbones alive at once: {most} (the run's backbone + {most - 1} special)")


if __name__ == "__main__":
    main()
