"""Aggregation of metric rows into publication tables (CSV, LaTeX, Markdown, terminal).

Rows are method variants (GT-mask users marked with a dagger), columns are metrics with their
direction, in blocks per split and backbone (the paper's Table 1 puts synth on SDXL beside real
on SD 2.1). Seeds of a sample are averaged first; the mean's 95% interval is a percentile
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
from partedit_bench.io import atomic_write_bytes
from partedit_bench.metrics import DEFAULT_COLUMNS, METRICS
from partedit_bench.metrics.evaluate import MANIFEST_FILE, load_run, metric_path
from partedit_bench.runner import iter_records, read_json

BOOTSTRAP_SAMPLES = 1000
GT_MARK = "†"
KEY = ["block", "variant", "part"]


def load_rows(roots: Sequence[Path]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per job of every run: identifiers, status and metric values."""
    rows, runs = [], []
    for root in roots:
        info = load_run(root)
        manifests = read_json(root / MANIFEST_FILE) or {}
        hashes = {g: m["hash"] for g, m in manifests.items() if m.get("available")}
        backbone = info["backbone"]["name"]
        runs.append({"root": str(root), "info": info, "manifests": manifests})
        for path in iter_records(root):
            record = read_json(path)
            if record is None or record.get("run_hash") != info["run_hash"]:
                continue
            row = {
                "run": str(root),
                "backbone": Path(backbone).name,
                "block": f"{record['split']} ({Path(backbone).name})",
                "variant": record["variant"] + (GT_MARK if record.get("uses_gt_mask") else ""),
                "split": record["split"],
                "part": record["part"],
                "sample_id": record["sample_id"],
                "seed": record["seed"],
                "status": record["status"],
            }
            if record["status"] == "ok":
                for group, manifest_hash in hashes.items():
                    values = read_json(metric_path(path, group, manifest_hash))
                    if values and values.get("job_hash") == record["job_hash"]:
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
    """95% percentile bootstrap interval of the mean."""
    if len(values) < 2:
        return float("nan"), float("nan")
    index = rng.integers(0, len(values), size=(BOOTSTRAP_SAMPLES, len(values)))
    means = values[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def aggregate(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table: one row per (block, variant, part, metric) with mean, CI, n, failures.
    `part` is "all" for the whole block."""
    ok = frame[frame.status == "ok"]
    per_sample = ok.groupby(["block", "variant", "part", "sample_id"], sort=False)[list(metrics)]
    per_sample = per_sample.mean().reset_index()  # seeds averaged first
    status = (
        frame.groupby(["block", "variant", "part"])["status"].value_counts().unstack(fill_value=0)
    )
    rng = np.random.default_rng(0)
    out = []
    for part_scope in ("all", "part"):
        keys = ["block", "variant"] if part_scope == "all" else ["block", "variant", "part"]
        counts = status.groupby(level=keys).sum()
        for key, group in per_sample.groupby(keys, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            block, variant = key[0], key[1]
            part = key[2] if part_scope == "part" else "all"
            count_row = counts.loc[key if len(key) > 1 else key[0]]
            for metric in metrics:
                values = group[metric].to_numpy(dtype=np.float64)
                finite = values[~np.isnan(values)]
                low, high = bootstrap_ci(finite, rng)
                excluded = group.loc[np.isnan(values), "sample_id"].tolist()
                out.append(
                    {
                        "block": block,
                        "variant": variant,
                        "part": part,
                        "metric": metric,
                        "mean": float(finite.mean()) if len(finite) else float("nan"),
                        "ci_low": low,
                        "ci_high": high,
                        "n": int(len(finite)),
                        "excluded_nan": len(excluded),
                        "excluded_samples": " ".join(excluded[:20]),
                        "failed": int(count_row.get("failed", 0)),
                        "skipped": int(count_row.get("skipped", 0)),
                    }
                )
        # variants whose every job failed still get a row
        for key in counts.index:
            key = key if isinstance(key, tuple) else (key,)
            if (
                part_scope == "all"
                and not ((per_sample.block == key[0]) & (per_sample.variant == key[1])).any()
            ):
                for metric in metrics:
                    out.append(
                        {
                            "block": key[0],
                            "variant": key[1],
                            "part": "all",
                            "metric": metric,
                            "mean": float("nan"),
                            "ci_low": float("nan"),
                            "ci_high": float("nan"),
                            "n": 0,
                            "excluded_nan": 0,
                            "excluded_samples": "",
                            "failed": int(counts.loc[key].get("failed", 0)),
                            "skipped": int(counts.loc[key].get("skipped", 0)),
                        }
                    )
    return pd.DataFrame(out)


def _fmt(mean: float, low: float, high: float) -> str:
    if np.isnan(mean):
        return "n/a"
    if np.isnan(low):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {(high - low) / 2:.2g}"


def wide_table(long: pd.DataFrame, metrics: Sequence[str], part: str = "all") -> pd.DataFrame:
    """Means as a (variant) x (block, metric) table."""
    sub = long[long.part == part]
    return sub.pivot_table(
        index="variant", columns=["block", "metric"], values="mean", dropna=False, sort=False
    ).reindex(columns=pd.MultiIndex.from_product([sub.block.unique(), list(metrics)]))


def _latex_escape(text: str) -> str:
    for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text.replace(GT_MARK, "$^\\dagger$")


def latex_table(long: pd.DataFrame, metrics: Sequence[str], caption: str) -> str:
    """booktabs LaTeX with the best value of each column in bold, generated by pandas."""
    means = wide_table(long, metrics)
    bold = np.zeros(means.shape, dtype=bool)
    for j, (_, metric) in enumerate(means.columns):
        column = means.iloc[:, j]
        if column.notna().sum() >= 2:
            best = column.max() if METRICS[metric].higher_is_better else column.min()
            bold[:, j] = (column == best).to_numpy()
    arrows = {True: "$\\uparrow$", False: "$\\downarrow$"}
    means.columns = pd.MultiIndex.from_tuples(
        [
            (_latex_escape(block), f"{_latex_escape(m)} {arrows[METRICS[m].higher_is_better]}")
            for block, m in means.columns
        ]
    )
    means.index = [_latex_escape(v) for v in means.index]
    styler = means.style.format(precision=3, na_rep="n/a").apply(
        lambda frame: np.where(bold, "font-weight: bold", ""), axis=None
    )
    return styler.to_latex(
        hrules=True,
        convert_css=True,
        caption=_latex_escape(caption),
        multicol_align="c",
        column_format="l" + "r" * means.shape[1],
    )


def markdown_table(long: pd.DataFrame, metrics: Sequence[str], part: str = "all") -> str:
    sub = long[long.part == part]
    lines = []
    for block in sub.block.unique():
        rows = sub[sub.block == block]
        header = ["variant"] + [f"{m} {METRICS[m].arrow}" for m in metrics] + ["n", "failed"]
        lines += [
            f"**{block}**" + ("" if part == "all" else f" / {part}"),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for variant, group in rows.groupby("variant", sort=False):
            cells = group.set_index("metric")
            values = [_fmt(*cells.loc[m, ["mean", "ci_low", "ci_high"]]) for m in metrics]
            lines.append(
                "| "
                + " | ".join(
                    [
                        variant,
                        *values,
                        str(int(cells["n"].max())),
                        str(int(cells["failed"].iloc[0])),
                    ]
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def notes_for(runs: list[dict[str, Any]], long: pd.DataFrame) -> list[str]:
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
    roots: Sequence[Path], output: Path | None = None, metrics: Sequence[str] | None = None
) -> dict[str, Any]:
    """Writes report/table.{csv,tex,md} and returns what the terminal shows."""
    frame, runs = load_rows(roots)
    metrics = list(metrics or DEFAULT_COLUMNS)
    long = aggregate(frame, metrics)
    out = Path(output) if output else Path(roots[0]) / "report"
    notes = notes_for(runs, long)
    caption = "Mean over samples (seeds averaged first); best in bold. " + " ".join(
        n for n in notes if "random weights" in n or GT_MARK in n
    )
    atomic_write_bytes(out / "table.csv", long.to_csv(index=False).encode())
    atomic_write_bytes(out / "table.tex", latex_table(long, metrics, caption).encode())
    md = ["# partedit-bench report", "", markdown_table(long, metrics), "## Per part", ""]
    md += [
        markdown_table(long, metrics, part)
        for part in sorted(p for p in long.part.unique() if p != "all")
    ]
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
    return {"long": long, "metrics": metrics, "notes": notes, "output": out}


def print_report(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    long = result["long"]
    overall = long[long.part == "all"]
    has_value = overall.groupby("metric")["n"].max()
    metrics = [m for m in result["metrics"] if has_value.get(m, 0) > 0]
    empty = [m for m in result["metrics"] if m not in metrics]
    for block in overall.block.unique():
        table = Table(title=block)
        table.add_column("variant")
        for m in metrics:
            table.add_column(f"{m} {METRICS[m].arrow}", justify="right")
        table.add_column("n", justify="right")
        table.add_column("failed", justify="right")
        for variant, group in overall[overall.block == block].groupby("variant", sort=False):
            cells = group.set_index("metric")
            table.add_row(
                variant,
                *[_fmt(*cells.loc[m, ["mean", "ci_low", "ci_high"]]) for m in metrics],
                str(int(cells["n"].max())),
                str(int(cells["failed"].iloc[0])),
            )
        console.print(table)
    if empty:
        console.print(f"[yellow]note:[/] no values (n/a) for {', '.join(empty)}", highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"tables written to {result['output']}/table.{{csv,tex,md}}")
