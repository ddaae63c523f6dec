"""The paper's Appendix N figure for one edit: per step, the raw normalized token map, its 0.5
binarization, Otsu's binarization and the adaptive threshold T(M) (the blend mask)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from partedit_bench.methods.partedit import core
from partedit_bench.store import JobRecord

COLUMNS = ("normalized map", "binary (0.5)", "Otsu", "adaptive T(M)")


def strip_panels(maps: list[dict[str, torch.Tensor]], omega: float) -> list[dict[str, Any]]:
    """One entry per step: the four panels (at the mask resolution) and Otsu's k. Several parts
    are combined as the method combines them (the maximum over parts, after thresholding)."""
    steps = []
    for normalized in maps:
        panels: dict[str, list[torch.Tensor]] = {c: [] for c in COLUMNS}
        ks = []
        for m in normalized.values():
            adaptive, k = core.threshold_mask(m, "adaptive", omega)
            otsu_mask, _ = core.threshold_mask(m, "otsu", omega)
            panels["normalized map"].append(m)
            panels["binary (0.5)"].append(core.threshold_mask(m, "binary")[0])
            panels["Otsu"].append(otsu_mask)
            panels["adaptive T(M)"].append(adaptive)
            ks.append(k)
        steps.append(
            {
                **{c: torch.stack(v).amax(0).float().cpu().numpy() for c, v in panels.items()},
                "k": ks[0] if len(ks) == 1 else None,
            }
        )
    return steps


def draw_strip(steps: list[dict[str, Any]], title: str) -> bytes:
    """The panels as a PNG: one row per step, one column per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = (1.5 * len(COLUMNS), 1.5 * len(steps) + 0.4)
    fig, axes = plt.subplots(len(steps), len(COLUMNS), figsize=size, squeeze=False)
    for r, step in enumerate(steps):
        for c, column in enumerate(COLUMNS):
            ax = axes[r][c]
            ax.imshow(step[column], cmap="magma" if c == 0 else "gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column, fontsize=7)
            if c == 0:
                ax.set_ylabel(f"step {r}", fontsize=7)
            if c == 2 and step["k"] is not None:
                ax.set_xlabel(f"k = {step['k']:.3f}", fontsize=6)
    fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def job_maps(root: Path, job: str, device: str = "cpu") -> tuple[Any, Any, JobRecord]:
    """Recomputes a finished partedit job of a run folder (`<variant>/<split>/<id>__s<seed>`)
    keeping every step's maps: (the PartEditRun, its options, the record). The recomputed
    edit is compared with the stored one by the caller."""
    from partedit_bench.api import build_options
    from partedit_bench.data.schema import load_image
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.errors import UserError
    from partedit_bench.methods.partedit.method import PartEdit
    from partedit_bench.methods.partedit.sampling import run_partedit
    from partedit_bench.store import load_run, read_record, suite_samples

    parts = job.strip("/").split("/")
    if len(parts) != 3:
        raise UserError(f"job {job!r}: name it VARIANT/SPLIT/SAMPLE-ID__sSEED")
    from partedit_bench.outputs import child

    info = load_run(root)
    record = read_record(child(root, *parts[:2], f"{parts[2]}.json", field="maps job"))
    if record is None:
        raise UserError(f"no job record {root / job}.json (name a job as VARIANT/SPLIT/ID__sSEED)")
    if record.method != "partedit" or record.status != "ok":
        raise UserError(f"job {job} is not a finished partedit job ({record.method})")
    options = build_options(PartEdit, dict(record.options))
    if options.mask_source != "tokens":
        raise UserError(f"job {job} blends a given mask ({options.mask_source}): no token maps")
    sample = suite_samples(info)[record.sample_id]
    dtype = (info.get("identity") or {}).get("dtype") or "auto"
    backbone = load_backbone(info["backbone"]["name"], device, dtype)
    method = PartEdit(options)
    method.preflight(backbone, [sample])
    made_by = (info["suite"].get("synthetic_source") or {}).get("backbone")
    suite_synthetic = made_by == backbone.name
    image = load_image(sample.original_image)
    seed = record.seed
    run = run_partedit(
        backbone, sample, image, seed, options, method.tokens, suite_synthetic, keep_maps=True
    )
    return run, options, record
