"""`report/plots/`: the report's figures, drawn from the same aggregated table as the CSV (means
and 95% bootstrap intervals), in one style, as PNG and PDF:

- `tradeoff`: background preservation (psnr_bg) against edit strength (aclip_fg when it has
  values), one point per row with interval whiskers, as PIE-Bench's papers draw it (the no-edit
  reference, 100 dB, left out);
- `parts_<metric>`: per-part bars with intervals (psnr_bg, edit_strength; no-edit rows out);
- `sweep_<method>_<key>`: for each swept option of a grid (`partedit[t_e=10|30|50]`), each metric
  against the option's value with 95% bands (bars with intervals for a categorical option),
  one line per setting of the grid's other keys.

`series()` returns what each figure draws, so that a test compares it with the table.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from partedit_bench.io import atomic_write_bytes

STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 120,
    "savefig.bbox": "tight",
}
SWEEP_METRICS = ("psnr_bg", "leakage", "edit_strength", "mask_iou", "psnr_fg_gt", "aclip_fg")


def _labelled(long: pd.DataFrame) -> pd.DataFrame:
    """`long` with a `label` per table row: the variant, with its block (split and backbone)
    when the report holds several, and its backbone when one block holds several."""
    label = long.variant.astype(str)
    if "backbone" in long and (long.groupby(["block", "variant"]).backbone.nunique() > 1).any():
        label = label + " (" + long.backbone.astype(str) + ")"
    if long.block.nunique() > 1:
        label = label + ", " + long.block.astype(str)
    return long.assign(label=label)


def _overall(long: pd.DataFrame) -> pd.DataFrame:
    return long[(long.part == "all") & long["mean"].notna()]


def series(
    long: pd.DataFrame, grids: dict[str, dict[str, list[Any]]], sweep_plot: str = "auto"
) -> dict[str, Any]:
    """The data of every figure: {figure name: rows of (label, x, y, intervals...)}."""
    long = _labelled(long)
    overall = _overall(long)
    out: dict[str, Any] = {}
    strength = "aclip_fg" if (overall.metric == "aclip_fg").any() else "edit_strength"
    points = []
    for label, rows in overall.groupby("label", sort=False):
        by = rows.set_index("metric")
        if "psnr_bg" in by.index and by.loc["psnr_bg", "mean"] >= 99.99:
            continue  # the no-edit reference (an identical background: 100 dB) off the scale
        if "psnr_bg" in by.index and strength in by.index:
            points.append(
                {
                    "label": label,
                    "x": by.loc[strength, "mean"],
                    "x_ci": (by.loc[strength, "ci_low"], by.loc[strength, "ci_high"]),
                    "y": by.loc["psnr_bg", "mean"],
                    "y_ci": (by.loc["psnr_bg", "ci_low"], by.loc["psnr_bg", "ci_high"]),
                }
            )
    if points:
        out["tradeoff"] = {"x": strength, "y": "psnr_bg", "points": points}
    no_edit = set(overall[(overall.metric == "psnr_bg") & (overall["mean"] >= 99.99)].label)
    parts = long[(long.part != "all") & long["mean"].notna() & ~long.label.isin(no_edit)]
    for metric in ("psnr_bg", "edit_strength"):
        rows = parts[parts.metric == metric]
        if not rows.empty:
            out[f"parts_{metric}"] = rows[["label", "part", "mean", "ci_low", "ci_high"]]
    for key, sweep in _sweeps(overall, grids, sweep_plot).items():
        out[key] = sweep
    return out


def _sweeps(
    overall: pd.DataFrame, grids: dict[str, dict[str, list[Any]]], kind: str = "auto"
) -> dict[str, Any]:
    """For every swept key of every grid: metric -> {other settings -> [(value, mean, lo, hi)]}."""
    out: dict[str, Any] = {}
    by_grid: dict[tuple[str, str], list[str]] = {}
    for variant, axes in grids.items():
        method = variant.split("[", 1)[0]
        by_grid.setdefault((method, repr(sorted(axes.items()))), []).append(variant)
    for (method, _), variants in by_grid.items():
        axes = grids[variants[0]]
        values = {v: _options_of(v) for v in variants}
        for key, swept in axes.items():
            numeric = _numeric(swept) and kind != "bar"
            lines: dict[str, dict[str, list[tuple[Any, float, float, float]]]] = {}
            for metric in SWEEP_METRICS:
                rows = overall[overall.metric == metric]
                if rows.empty:
                    continue
                for variant in variants:
                    match = rows[rows.variant.str.rstrip("†") == variant]
                    for r in match.itertuples():  # one line per block (split, backbone)
                        others = ",".join(f"{k}={values[variant][k]}" for k in axes if k != key)
                        others = others or method
                        if r.label != r.variant:
                            others += f" [{r.label[len(r.variant) :].lstrip(' ,')}]"
                        lines.setdefault(metric, {}).setdefault(others, []).append(
                            (values[variant][key], r.mean, r.ci_low, r.ci_high)
                        )
            for metric in lines:
                for others in lines[metric]:
                    order = {repr(v): i for i, v in enumerate(swept)}
                    lines[metric][others].sort(key=lambda p: order.get(repr(p[0]), 0))
            if lines:
                out[f"sweep_{_file_part(method)}_{_file_part(key)}"] = {
                    "key": key,
                    "numeric": numeric,
                    "values": list(swept),
                    "lines": lines,
                }
    return out


SWEEP_PLOTS = ("auto", "line", "bar")


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)


def check_sweep_plot(grids: dict[str, dict[str, list[Any]]], kind: str) -> None:
    """`report --sweep-plot`: `line` draws every swept option against its value, which a
    non-numeric option (threshold, padding) has not: one line naming it."""
    from partedit_bench.errors import UserError

    if kind not in SWEEP_PLOTS:
        raise UserError(f"report --sweep-plot {kind!r}: one of {', '.join(SWEEP_PLOTS)}")
    if kind != "line":
        return
    for variant, axes in grids.items():
        for key, values in axes.items():
            if not _numeric(values):
                shown = ", ".join(map(str, values))
                raise UserError(
                    f"report --sweep-plot line: {variant.split('[', 1)[0]}'s option '{key}' "
                    f"is not numeric ({shown}); draw it as bars (--sweep-plot bar or auto)"
                )


def _options_of(variant: str) -> dict[str, Any]:
    from partedit_bench.variants import parse_scalar

    inner = variant[variant.index("[") + 1 : variant.rindex("]")] if "[" in variant else ""
    pairs = (item.partition("=") for item in inner.split(",") if "=" in item)
    return {k.strip(): parse_scalar(v.strip()) for k, _, v in pairs}


def _file_part(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_-]", "_", text)[:60] or "x"


def write_plots(
    long: pd.DataFrame,
    grids: dict[str, dict[str, list[Any]]],
    out: Path,
    sweep_plot: str = "auto",
) -> list[Path]:
    """Draws every figure of `series` into `out` (PNG and PDF); returns the PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        for name, data in series(long, grids, sweep_plot).items():
            if name == "tradeoff":
                fig = _tradeoff(plt, data)
            elif name.startswith("parts_"):
                fig = _parts(plt, data, name.removeprefix("parts_"))
            else:
                fig = _sweep(plt, data, name)
            for ext in ("png", "pdf"):
                buffer = io.BytesIO()
                fig.savefig(buffer, format=ext)
                atomic_write_bytes(out / f"{name}.{ext}", buffer.getvalue())
            plt.close(fig)
            written.append(out / f"{name}.png")
    return written


def _whisker(mean: float, ci: Sequence[float]) -> list[list[float]]:
    low, high = ci
    return [
        [max(0.0, mean - low) if low == low else 0.0],
        [max(0.0, high - mean) if high == high else 0.0],
    ]


def _tradeoff(plt: Any, data: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for p in data["points"]:
        ax.errorbar(
            p["x"], p["y"], xerr=_whisker(p["x"], p["x_ci"]), yerr=_whisker(p["y"], p["y_ci"]),
            fmt="o", capsize=2, ms=4,
        )  # fmt: skip
        ax.annotate(p["label"], (p["x"], p["y"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    ax.set_xlabel(f"{data['x']} (edit) →")
    ax.set_ylabel(f"{data['y']} (background) →")
    ax.set_title("background preservation against edit strength (95% CI)")
    return fig


def _parts(plt: Any, rows: pd.DataFrame, metric: str) -> Any:
    parts = sorted(rows.part.unique())
    variants = list(dict.fromkeys(rows.label))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(parts) + 2), 3.4))
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        own = rows[rows.label == variant].set_index("part")
        xs = [j + i * width for j, p in enumerate(parts) if p in own.index]
        means = [own.loc[p, "mean"] for p in parts if p in own.index]
        errs = [
            [own.loc[p, "mean"] - own.loc[p, "ci_low"] for p in parts if p in own.index],
            [own.loc[p, "ci_high"] - own.loc[p, "mean"] for p in parts if p in own.index],
        ]
        errs = [[0.0 if e != e else max(0.0, e) for e in side] for side in errs]
        ax.bar(xs, means, width, yerr=errs, capsize=1.5, label=variant)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(parts))], parts, rotation=20)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per part (95% CI)")
    ax.legend(fontsize=6, ncol=2)
    return fig


def _sweep(plt: Any, data: dict[str, Any], name: str) -> Any:
    metrics = list(data["lines"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 2.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        groups = data["lines"][metric]
        width = 0.8 / max(1, len(groups))
        for k, (others, points) in enumerate(groups.items()):
            xs = (
                [p[0] for p in points]
                if data["numeric"]
                else [i + k * width for i in range(len(points))]  # grouped bars
            )
            means = [p[1] for p in points]
            lows = [p[2] if p[2] == p[2] else p[1] for p in points]
            highs = [p[3] if p[3] == p[3] else p[1] for p in points]
            if data["numeric"]:
                ax.plot(xs, means, marker="o", ms=3, label=others)
                ax.fill_between(xs, lows, highs, alpha=0.2)
            else:
                errs = [[m - lo for m, lo in zip(means, lows, strict=True)],
                        [hi - m for m, hi in zip(means, highs, strict=True)]]  # fmt: skip
                ax.bar(xs, means, width, yerr=errs, capsize=2, label=others)
                ticks = [i + 0.4 - width / 2 for i in range(len(points))]
                ax.set_xticks(ticks, [str(p[0]) for p in points])
        ax.set_xlabel(data["key"])
        ax.set_title(metric)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(name.replace("_", " "), fontsize=8, y=1.04)
    return fig


def write_qualitative(root: Path, sample_ids: list[str], result: dict[str, Any]) -> Path:
    """`plots/qualitative.{png,pdf}`: one row per chosen sample, the source and each row's edit
    at the run's first seed (the layout of the paper's Figs. 8, 9 and 14)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from partedit_bench.data.schema import load_image
    from partedit_bench.errors import UserError, did_you_mean
    from partedit_bench.store import first_seed_edits, load_run, suite_samples

    info = load_run(root)
    samples = suite_samples(info)
    for sample_id in sample_ids:
        if sample_id not in samples:
            raise UserError(f"report --samples: no sample '{sample_id}' in the run's suite"
                            f"{did_you_mean(sample_id, samples)}")  # fmt: skip
    _, current = first_seed_edits(root, info)
    edits = {(r.variant, r.sample_id): p.parent / str(r.image) for p, r in current}
    variants = list(dict.fromkeys(v for v, _ in sorted(edits)))
    columns = ["source", *variants]
    size = (1.4 * len(columns), 1.5 * len(sample_ids) + 0.3)
    fig, axes = plt.subplots(len(sample_ids), len(columns), figsize=size, squeeze=False)
    for r, sample_id in enumerate(sample_ids):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            path = samples[sample_id].original_image if c == 0 else edits.get((column, sample_id))
            if path is not None:
                ax.imshow(load_image(path))
            if r == 0:  # a variant's options one per line: long names stay readable
                ax.set_title(column.replace("[", "\n").replace(",", "\n").rstrip("]"), fontsize=6)
            if c == 0:
                ax.set_ylabel(sample_id, fontsize=6)
    out = Path(result["output"]) / "plots"
    for ext in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=120, bbox_inches="tight")
        atomic_write_bytes(out / f"qualitative.{ext}", buffer.getvalue())
    plt.close(fig)
    return out / "qualitative.png"
