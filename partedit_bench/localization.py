"""`partedit-bench localize`: every mask source scored against a suite's GT masks, without
editing (the *where* of PartEdit on its own), and the paper's Figure 27 grid.

Sources: `tokens` (PartEdit's thresholded token mask: the mean blend mask of a PartEdit edit of
the sample, binarized as `mask_iou` reads a job's mask, so its IoU is the partedit jobs'
mask_iou at the same options and seed; `tokens[padding=bg|sot]` the same at chosen options, one
source per value, the paper's Fig. 15), `gt` (the GT mask itself: IoU 1 by construction, the
check of the plumbing), `grounded-sam`, `sam3`, their `tiny-*` test versions, or a folder of
masks. Writes into OUTPUT:

    localization.csv          source, part, n, iou, ci_low, ci_high (part `all`: every sample)
    localization_classes.csv  the same per class
    localization_samples.csv  source, sample_id, class_name, part, iou
    localization.{md,tex}     the table;   localization.json: the sources' checkpoints
    figure27.png              image | GT | one column per source, for the first samples
    masks/<source>/<id>.png   every mask scored
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, json_bytes, png_bytes
from partedit_bench.outputs import child, output_file, output_folder

RESULT_FILES = (
    "localization.csv",
    "localization_classes.csv",
    "localization_samples.csv",
    "localization.md",
    "localization.tex",
    "localization.json",
    "figure27.png",
)


def iou(predicted: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two binary masks; NaN when both are empty (as `mask_iou`)."""
    union = np.logical_or(predicted, gt).sum()
    return float(np.logical_and(predicted, gt).sum() / union) if union else float("nan")


def localize(
    suite_name: str,
    backbone_name: str,
    sources: list[str],
    output: Path,
    seed: int = 0,
    limit: int | None = None,
    partedit_options: dict[str, Any] | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    console: Any = None,
    grid_rows: int = 6,
) -> pd.DataFrame:
    """Scores every source on the suite's samples with a GT mask; returns the per-part table
    (also written, with the rest, into `output`)."""
    from partedit_bench.data.schema import load_image, load_mask
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.mask_sources import cached_mask, check_source, load_source

    if not sources:
        raise UserError("localize --sources names no source")
    sources, token_options = expand_sources(sources)
    for name in sources:
        if name not in token_options:
            check_source(name, "localize --sources")
    output_folder(output, "localize --output")
    for name in RESULT_FILES:
        output_file(output / name, "localize --output", overwrite)
    from partedit_bench.engine.devices import pick_device

    device = pick_device(device)  # auto: cuda when there is one
    suite = load_suite(suite_name)
    samples = [s for s in suite.samples if s.gt_mask][:limit]
    if not samples:
        raise UserError(f"suite '{suite.name}' has no sample with a GT mask")
    backbone = None
    makers: dict[str, Any] = {}
    identities: dict[str, Any] = {}
    for name in sources:
        if name == "gt":
            identities[name] = {"source": "gt"}
            continue
        if name in token_options:
            from partedit_bench.engine.backbones import load_backbone
            from partedit_bench.methods.partedit.localize import TokenSource

            if backbone is None:
                backbone = load_backbone(backbone_name, device)
            options = {**(partedit_options or {}), **token_options[name]}
            makers[name] = TokenSource(
                backbone, seed, suite.is_synthetic_for(backbone.name), options
            )
        else:
            makers[name] = load_source(name, device)
        identities[name] = {
            **makers[name].identity,
            "random_weights": bool(getattr(makers[name], "random_weights", False)),
        }
    rows, masks = [], {}
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("localize", total=len(samples) * len(sources))
        for sample in samples:
            image = load_image(sample.original_image)
            gt = load_mask(sample.gt_mask, image.size)
            for name in sources:
                mask = gt if name == "gt" else cached_mask(makers[name], sample, image)
                masks[(name, sample.id)] = mask
                rows.append(
                    {
                        "source": name,
                        "sample_id": sample.id,
                        "class_name": sample.class_name,
                        "part": sample.part_token,
                        "iou": iou(mask, gt),
                    }
                )
                progress.advance(task)
    frame = pd.DataFrame(rows)
    table = summarize(frame, "part")
    by_class = summarize(frame, "class_name")
    random = [n for n in sources if identities[n].get("random_weights")]
    write_results(output, frame, table, by_class, identities, random, masks, samples, suite)
    grid(output / "figure27.png", samples[:grid_rows], sources, masks, random)
    return table


def expand_sources(sources: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """PartEdit's token masks at chosen options, in the variant syntax of `--methods`:
    `tokens[padding=bg|sot|eot|zero|context]` is five sources, one per padding (the paper's
    Fig. 15), each named by its values. Returns the sources in order and, for each token
    source, its PartEdit options (checked here: an unknown option or value is one line)."""
    from partedit_bench.api import build_options
    from partedit_bench.methods.partedit.options import PartEditOptions
    from partedit_bench.variants import parse_variants

    class _Tokens:  # PartEdit's options under the name `tokens`, for the checks' messages
        name, Options = "tokens", PartEditOptions

    names: list[str] = []
    options: dict[str, dict[str, Any]] = {}
    for text in sources:
        if text != "tokens" and not text.startswith("tokens["):
            names.append(text)
            continue
        for spec in parse_variants(text):
            overrides = dict(spec.overrides)
            build_options(_Tokens, overrides)  # type: ignore[arg-type]
            if "mask_source" in overrides:
                raise UserError(f"localize --sources {text}: tokens are the mask source")
            if spec.name in options:
                raise UserError(f"localize --sources names {spec.name} twice")
            names.append(spec.name)
            options[spec.name] = overrides
    return names, options


def summarize(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean IoU per source and `by` (and `all`), with a 95% bootstrap interval over samples
    (NaN rows excluded and counted out of n)."""
    from partedit_bench.report import bootstrap_ci

    rows = []
    for source in dict.fromkeys(frame.source):
        own = frame[frame.source == source]
        groups = [("all", own)] + [(k, g) for k, g in own.groupby(by, sort=True)]
        for key, group in groups:
            values = group.iou.dropna().to_numpy()
            rng = np.random.default_rng(0)
            low, high = bootstrap_ci(values, rng) if len(values) else (np.nan, np.nan)
            rows.append(
                {
                    "source": source,
                    by: key,
                    "n": len(values),
                    "iou": float(values.mean()) if len(values) else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def write_results(
    output: Path,
    frame: pd.DataFrame,
    table: pd.DataFrame,
    by_class: pd.DataFrame,
    identities: dict[str, Any],
    random: list[str],
    masks: dict[tuple[str, str], np.ndarray],
    samples: list[Any],
    suite: Any,
) -> None:
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output / "localization.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(output / "localization_classes.csv", by_class.to_csv(index=False).encode())
    atomic_write_bytes(output / "localization_samples.csv", frame.to_csv(index=False).encode())
    shown = table.copy()
    shown["source"] = [s + (" (random weights)" if s in random else "") for s in shown.source]
    shown["iou (95% CI)"] = [
        f"{r.iou:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.n else "n/a"
        for r in shown.itertuples()
    ]
    shown = shown[["source", "part", "n", "iou (95% CI)"]]
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in shown.values)
    note = (
        f"\nIoU of each mask source with the GT part masks of {suite.name} "
        f"({len(samples)} samples); 95% bootstrap intervals over samples."
    )
    if random:
        note += f" {', '.join(random)}: random weights (checks the plumbing, not the model)."
    atomic_write_bytes(output / "localization.md", (header + body + note + "\n").encode())
    latex = shown.style.hide(axis="index").to_latex(
        hrules=True, caption=note.strip().replace("_", "\\_")
    )
    atomic_write_bytes(output / "localization.tex", latex.replace("_", "\\_").encode())
    atomic_write_bytes(
        output / "localization.json",
        json_bytes({"suite": suite.name, "samples": len(samples), "sources": identities}),
    )
    for (name, sample_id), mask in masks.items():
        folder = "folder" if Path(name).is_dir() else re.sub(r"[^0-9A-Za-z_.-]+", "_", name)
        path = child(output, "masks", folder.strip("_"), f"{sample_id}.png", field="sample id")
        atomic_write_bytes(path, png_bytes(Image.fromarray(mask.astype(np.uint8) * 255)))


def grid(
    path: Path,
    samples: list[Any],
    sources: list[str],
    masks: dict[tuple[str, str], np.ndarray],
    random: list[str],
) -> None:
    """Figure 27's layout: image | GT | each source's mask, one row per sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from partedit_bench.data.schema import load_image, load_mask

    columns = ["image", "GT"] + [s for s in sources if s != "gt"]
    fig, axes = plt.subplots(
        len(samples),
        len(columns),
        figsize=(1.6 * len(columns), 1.6 * len(samples)),
        squeeze=False,
    )
    for r, sample in enumerate(samples):
        image = load_image(sample.original_image)
        gt = load_mask(sample.gt_mask, image.size)
        for c, column in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if column == "image":
                ax.imshow(image)
                ax.set_ylabel(f"{sample.id}\n{sample.part_token}", fontsize=6)
            else:
                mask = gt if column == "GT" else masks[(column, sample.id)]
                ax.imshow(mask, cmap="gray", vmin=0, vmax=1)
                if column != "GT":
                    ax.set_xlabel(f"IoU {iou(mask, gt):.2f}", fontsize=6)
            if r == 0:
                title = "folder" if Path(column).is_dir() else column
                ax.set_title(title + (" *" if column in random else ""), fontsize=7)
    if random:
        fig.suptitle("* random weights", fontsize=6, y=0.995)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
