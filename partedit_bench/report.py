"""Aggregation of metric rows into publication tables (CSV, LaTeX, Markdown, terminal).

Rows are method variants (GT-mask users marked with a dagger), columns are metrics with their
direction, in blocks per split and backbone (the paper's Table 1 puts synth on SDXL beside real
on SD 2.1), or with `by_backbone=False` in blocks per split with a column naming the backbone
each row ran on (runs of several backbones in one table: SD/SDXL methods beside the DiT
editors). Seeds of a sample are averaged first; the mean's 95% interval is a percentile
bootstrap over samples; NaN rows (an empty mask region, a metric that does not apply) are
excluded per metric and counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, remove_stale_temps
from partedit_bench.metrics import DEFAULT_COLUMNS, METRICS
from partedit_bench.outputs import output_folder
from partedit_bench.store import (
    MANIFEST_FILE,
    RANDOM_WEIGHTS_NOTE,
    check_outputs,
    files_digest,
    iter_records,
    load_run,
    metric_path,
    read_json,
    read_record,
)
from partedit_bench.tables import GT_MARK, latex_table, markdown_table, shows_backbone, text_rows

BOOTSTRAP_SAMPLES = 1000
KEY = ["block", "variant", "backbone", "part"]


def load_rows(
    roots: Sequence[Path], by_backbone: bool = True
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per job of every run: identifiers, status and metric values. Blocks are
    `split (backbone)`, or the split alone without `by_backbone`."""
    rows, runs = [], []
    for root in roots:
        info = load_run(root)
        manifests = read_json(root / MANIFEST_FILE) or {}
        hashes = {g: m["hash"] for g, m in manifests.items() if m.get("available")}
        backbone = info["backbone"]["name"]
        runs.append({"root": str(root), "info": info, "manifests": manifests})
        for path in iter_records(root):
            record = read_record(path)
            if record is None or record.run_hash != info["run_hash"]:
                continue
            row = {
                "run": str(root),
                "backbone": Path(backbone).name,
                "block": f"{record.split} ({Path(backbone).name})" if by_backbone else record.split,
                "variant": record.variant + (GT_MARK if record.uses_gt_mask else ""),
                "split": record.split,
                "part": record.part,
                "sample_id": record.sample_id,
                "seed": record.seed,
                "status": record.status,
                "reason": record.error if record.status == "skipped" else None,
                "notes": record.notes,
                "seconds": record.wall_time_s if record.status == "ok" else None,
            }
            if record.status == "ok":
                check_outputs(path, record)
                digest = files_digest(record)
                for group, manifest_hash in hashes.items():
                    values = read_json(metric_path(path, group, manifest_hash))
                    if (
                        values
                        and values.get("job_hash") == record.job_hash
                        and values.get("files") == digest
                    ):
                        row.update(
                            {k: np.nan if v is None else v for k, v in values["values"].items()}
                        )
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise UserError(f"no job records in {', '.join(str(r) for r in roots)}")
    for name in METRICS:
        if name not in frame:
            frame[name] = np.nan
    return frame, runs


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of `values` (1-D, finite)."""
    low, high = bootstrap_columns(values[:, None], rng)
    return float(low[0]), float(high[0])


def bootstrap_columns(
    matrix: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap intervals of the column means of `matrix` (n, m), all columns
    resampled with the same sample indices; NaN when n < 2."""
    n = matrix.shape[0]
    if n < 2:
        return np.full(matrix.shape[1], np.nan), np.full(matrix.shape[1], np.nan)
    index = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    means = matrix[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return low, high


def _stats(
    group: pd.DataFrame | None, metrics: Sequence[str], rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Mean, bootstrap CI, n and excluded samples of each metric over one group's samples."""
    if group is None or group.empty:
        return [
            {
                "metric": m,
                "mean": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "n": 0,
                "excluded_nan": 0,
                "excluded_samples": "",
            }
            for m in metrics
        ]
    matrix = group[list(metrics)].to_numpy(dtype=np.float64)
    missing = np.isnan(matrix)
    complete = ~missing.any(axis=0)
    low, high = np.full(len(metrics), np.nan), np.full(len(metrics), np.nan)
    if complete.any():
        low[complete], high[complete] = bootstrap_columns(matrix[:, complete], rng)
    ids = group["sample_id"].to_numpy()
    out = []
    for j, metric in enumerate(metrics):
        finite = matrix[~missing[:, j], j]
        if not complete[j] and len(finite):
            low[j], high[j] = bootstrap_ci(finite, rng)
        excluded = ids[missing[:, j]].tolist()
        out.append(
            {
                "metric": metric,
                "mean": finite.mean() if len(finite) else np.nan,
                "ci_low": low[j],
                "ci_high": high[j],
                "n": len(finite),
                "excluded_nan": len(excluded),
                "excluded_samples": " ".join(excluded[:20]),
            }
        )
    return out


def aggregate(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table: one row per (block, variant, backbone, part, metric) with mean, CI, n,
    failures. `part` is "all" for the whole block. Seeds of a sample are averaged first."""
    ok = frame[frame.status == "ok"]
    per_sample = ok.groupby([*KEY, "sample_id"], sort=False)[list(metrics)].mean().reset_index()
    status = frame.groupby(KEY, sort=False)["status"].value_counts().unstack(fill_value=0)
    for column in ("failed", "skipped"):
        if column not in status:
            status[column] = 0
    rng = np.random.default_rng(0)
    # the records' mean wall time per edit of each row (the method's edit, loading excluded)
    timed = ok.assign(seconds=pd.to_numeric(ok.get("seconds"), errors="coerce"))
    seconds = timed.groupby(["block", "variant", "backbone"], sort=False)["seconds"].mean()
    out = []
    for keys in (["block", "variant", "backbone"], KEY):
        counts = status.groupby(level=keys, sort=False)[["failed", "skipped"]].sum()
        groups = dict(iter(per_sample.groupby(keys, sort=False)))
        for key, count in counts.iterrows():
            labels = dict(zip(keys, key, strict=True))
            for row in _stats(groups.get(key), metrics, rng):
                out.append(
                    {
                        "block": labels["block"],
                        "variant": labels["variant"],
                        "backbone": labels["backbone"],
                        "part": labels.get("part", "all"),
                        **row,
                        "failed": int(count["failed"]),
                        "skipped": int(count["skipped"]),
                        "s_per_edit": seconds.get(
                            (labels["block"], labels["variant"], labels["backbone"]), np.nan
                        ),
                    }
                )
    return pd.DataFrame(out)


def notes_for(
    runs: list[dict[str, Any]], long: pd.DataFrame, frame: pd.DataFrame | None = None
) -> list[str]:
    notes = []
    for run in runs:
        info = run["info"]
        if info.get("note"):
            notes.append(f"{info['backbone']['name']} ({run['root']}): {info['note']}")
        aclip = run["manifests"].get("aclip", {})
        if not aclip.get("available"):
            notes.append(
                f"aclip_* n/a for {run['root']}: "
                f"{aclip.get('reason', 'not evaluated (run `partedit-bench evaluate`)')}"
            )
    if frame is not None and "reason" in frame:
        skipped = frame[frame.status == "skipped"].groupby(["variant", "reason"]).size()
        for (variant, reason), count in skipped.items():
            notes.append(f"{variant}: {count} job(s) skipped: {reason}")
    if frame is not None and "notes" in frame:
        noted = frame[frame.status == "ok"].explode("notes").dropna(subset=["notes"])
        for (variant, note), count in noted.groupby(["variant", "notes"]).size().items():
            notes.append(f"{variant}: {count} job(s): {note}")
    if frame is not None and "judge_unparsed" in frame:
        ok = frame[frame.status == "ok"]
        for variant, count in ok.groupby("variant")["judge_unparsed"].sum().items():
            if count > 0:
                notes.append(
                    f"{variant}: {int(count)} judge answer(s) had no readable score list "
                    "(recorded as unparseable: those metrics are NaN, not 0)"
                )
    if (long.variant.str.endswith(GT_MARK)).any():
        notes.append(f"{GT_MARK} uses the ground-truth mask")
    excluded = long[(long.part == "all") & (long.excluded_nan > 0) & (long.n > 0)]
    for _, row in excluded.iterrows():
        notes.append(
            f"{row.variant} / {row.block} / {row.metric}: {row.excluded_nan} sample(s) "
            f"excluded as NaN ({row.excluded_samples})"
        )
    return notes


def build_report(
    roots: Sequence[Path],
    output: Path | None = None,
    metrics: Sequence[str] | None = None,
    gallery: bool = True,
    by_backbone: bool = True,
    sweep_plot: str = "auto",
) -> dict[str, Any]:
    """Writes report/table.{csv,tex,md} and returns what the terminal shows. Without
    `by_backbone`, blocks are splits and rows name their backbone (several backbones' runs in
    one table). `sweep_plot`: how a swept option is drawn (`auto`: lines for numbers, bars
    otherwise; `line` refuses a sweep over a non-numeric option in one line; `bar`)."""
    from partedit_bench.plots import check_sweep_plot, write_plots

    frame, runs = load_rows(roots, by_backbone)
    grids: dict[str, Any] = {}
    for r in runs:
        grids.update(r["info"].get("grids") or {})
    check_sweep_plot(grids, sweep_plot)  # before anything is written
    metrics = list(metrics or DEFAULT_COLUMNS)
    long = aggregate(frame, metrics)
    if not by_backbone:  # a method skipped on one backbone (another family) is not a row
        ran = frame[frame.status != "skipped"].groupby(["variant", "backbone"]).size()
        long = long[[pair in ran.index for pair in zip(long.variant, long.backbone, strict=True)]]
    out = Path(output) if output else Path(roots[0]) / "report"
    output_folder(out, "report output")  # not a file, not below one
    remove_stale_temps(out)  # of a killed report
    notes = notes_for(runs, long, frame)
    random = sorted({r["info"]["backbone"]["name"] for r in runs if r["info"].get("note")})
    caption = "Mean over samples (seeds averaged first); best in bold."
    if random:
        caption += f" {', '.join(Path(n).name for n in random)}: {RANDOM_WEIGHTS_NOTE}."
    if long.variant.str.endswith(GT_MARK).any():
        caption += f" {GT_MARK} uses the ground-truth mask."
    atomic_write_bytes(out / "table.csv", long.to_csv(index=False).encode())
    shown, columns, left_out = table_view(long, metrics)  # the CSV keeps everything
    notes += left_out
    atomic_write_bytes(out / "table.tex", latex_table(shown, columns, caption).encode())
    parts = sorted(p for p in shown.part.unique() if p != "all")
    atomic_write_bytes(
        out / "table_parts.tex",
        "\n".join(latex_table(shown, columns, f"{p}: {caption}", p) for p in parts).encode(),
    )
    md = ["# partedit-bench report", "", markdown_table(shown, columns), "## Per part", ""]
    md += [markdown_table(shown, columns, part) for part in parts]
    md += ["## Notes", ""] + [f"- {n}" for n in notes]
    atomic_write_bytes(out / "table.md", ("\n".join(md) + "\n").encode())
    atomic_write_bytes(
        out / "manifest.json",
        json.dumps(
            {
                "runs": [r["root"] for r in runs],
                "metrics": metrics,
                "metric_manifests": {r["root"]: r["manifests"] for r in runs},
                "bootstrap": {
                    "samples": BOOTSTRAP_SAMPLES,
                    "interval": "95% percentile",
                    "seed": 0,
                },
                "notes": notes,
            },
            indent=2,
        ).encode(),
    )
    plots = write_plots(long, grids, out / "plots", sweep_plot)
    if gallery:
        from partedit_bench.gallery import write_gallery

        try:
            write_gallery(Path(roots[0]), frame, out)
        except UserError as exc:  # e.g. the run's suite is gone: the tables still stand
            notes.append(f"no gallery: {exc}")
    return {"long": long, "metrics": metrics, "notes": notes, "output": out, "plots": plots}


def table_view(
    long: pd.DataFrame, metrics: Sequence[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """What the paper-facing tables show: the metrics with a value and the rows with a
    finished job (a method skipped on this backbone is a note, not a row of n/a), and the
    notes saying what was left out (`table.csv` keeps it all)."""
    overall = long[long.part == "all"]
    has_value = overall.groupby("metric")["n"].max()
    columns = [m for m in metrics if has_value.get(m, 0) > 0] or list(metrics)
    ran = overall[overall.n > 0][["variant", "backbone"]].drop_duplicates()
    keep = {tuple(p) for p in ran.itertuples(index=False)}
    pairs = list(zip(long.variant, long.backbone, strict=True))
    shown = long[[p in keep for p in pairs]] if keep else long
    notes = []
    empty = [m for m in metrics if m not in columns]
    if empty:
        notes.append(f"no values (n/a), left out of the tables: {', '.join(empty)}")
    gone = sorted({v for v, b in pairs if (v, b) not in keep}) if keep else []
    if gone:
        notes.append(f"no finished job, left out of the tables: {', '.join(gone)}")
    return shown, columns, notes


def print_report(result: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    long, metrics, _ = table_view(result["long"], result["metrics"])
    for block, rows in text_rows(long, metrics).items():
        table = Table(title=block)
        table.add_column("variant")
        if shows_backbone(long):
            table.add_column("backbone")
        for m in metrics:
            table.add_column(f"{m} {METRICS[m].arrow}", justify="right")
        table.add_column("n", justify="right")
        table.add_column("failed", justify="right")
        table.add_column("s / edit", justify="right")
        for row in rows:  # variant names hold brackets (partedit[t_e=30]): text, not markup
            table.add_row(*(escape(str(cell)) for cell in row))
        console.print(table)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    console.print(
        f"tables written to {result['output']}/table.{{csv,tex,md}}, gallery.html, "
        f"{len(result.get('plots') or [])} plots in plots/"
    )
