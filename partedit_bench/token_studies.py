"""`partedit-bench token-study`: how part tokens localize, the paper's appendix studies, each a
CSV and a figure (PNG and PDF) in one folder.

- `layers` (App. E, Fig. 16): one token trained on every cross-attention layer of the UNet;
  the held-out mIoU of each layer's map alone (timesteps averaged, Otsu), in execution order.
- `images` (App. B, Fig. 13): mIoU against the number of training images, each count trained
  over N seeds (the seed picks the images from the pool and initializes the token); mean and
  standard deviation per count.
- `subsets` (App. J): mIoU across N random subsets of the same size: which images are chosen.
- `time` (App. Q): wall time of training per layer set (`2`, `8`: the first N decoder layers;
  `decoder`: all of them; `all`: every cross-attention layer), with its mIoU.

Every study holds the same images out: a part's samples split into the training pool (the
first `pool`) and the held-out rest, so that the mIoUs compare. Files in OUTPUT:

    token_<study>.csv          one row per trained token (or per layer)
    token_<study>_summary.csv  what the figure draws (mean, std, n per point)
    token_<study>.png / .pdf
"""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from partedit_bench.errors import UserError

STUDIES = ("layers", "images", "subsets", "time")


@dataclass
class StudyConfig:
    """What a study varies (the training recipe itself is a `TrainConfig`)."""

    counts: tuple[int, ...] = (1, 2, 4, 8)  # images: training-set sizes
    seeds: int = 5  # images, subsets: runs per point
    pool: int = 12  # the first `pool` samples of a part train, the rest are held out
    layer_sets: tuple[str, ...] = ("2", "4", "8", "decoder", "all")  # time


def split_pool(samples: list[Any], pool: int, part: str) -> tuple[list[Any], list[Any]]:
    """(training pool, held-out images) of one part; one line when either would be empty."""
    if len(samples) <= pool:
        raise UserError(
            f"token-study: {part} has {len(samples)} images; --pool {pool} leaves none held "
            f"out (use a smaller --pool)"
        )
    return samples[:pool], samples[pool:]


def layer_set(unet: Any, spec: str) -> list[str]:
    """`N` (the first N decoder cross-attention layers), `decoder` or `all`."""
    from partedit_bench.engine.attention import cross_attention_layers

    decoder = cross_attention_layers(unet, "up")
    if spec == "all":
        return cross_attention_layers(unet)
    if spec == "decoder":
        return decoder
    if spec.isdigit() and int(spec) >= 1:
        if int(spec) > len(decoder):
            raise UserError(
                f"token-study --layer-sets {spec}: the UNet has {len(decoder)} decoder "
                "cross-attention layers"
            )
        return decoder[: int(spec)]
    raise UserError(f"token-study --layer-sets: '{spec}' is not N, decoder or all")


def check_study(kind: str, study: StudyConfig, images: int) -> None:
    """The study's settings, checked before a backbone loads (one line each)."""
    from partedit_bench.errors import did_you_mean

    if kind not in STUDIES:
        raise UserError(f"unknown token study '{kind}'{did_you_mean(kind, STUDIES)}")
    if study.seeds < 1:
        raise UserError(f"token-study --seeds must be at least 1, got {study.seeds}")
    if study.pool < 1:
        raise UserError(f"token-study --pool must be at least 1, got {study.pool}")
    if kind == "images":
        if not study.counts or any(n < 1 for n in study.counts):
            raise UserError(f"token-study --counts must be positive, got {study.counts}")
        if max(study.counts) > study.pool:
            raise UserError(
                f"token-study --counts {max(study.counts)} is more than the --pool of "
                f"{study.pool} training images"
            )
    if kind == "subsets" and images > study.pool:
        raise UserError(f"token-study --images {images} is more than the --pool {study.pool}")
    if kind == "time" and not study.layer_sets:
        raise UserError("token-study --layer-sets names no layer set")


def run_study(
    kind: str,
    backbone: Any,
    part: str,
    samples: list[Any],
    config: Any,
    study: StudyConfig,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """One study on one backbone and part: its raw rows (see the module's docstring)."""
    from partedit_bench.tokens.training import train_token

    pool, held = split_pool(samples, study.pool, part)
    if config.heldout:
        held = held[: config.heldout]
    base = {
        "backbone": backbone.name,
        "part": part,
        "heldout": len(held),
        "heldout_ids": " ".join(s.id for s in held),
    }
    rows: list[dict[str, Any]] = []

    def trained(subset: list[Any], **changes: Any) -> Any:
        one = dataclasses.replace(config, images=len(subset), heldout=0, **changes)
        result = train_token(backbone, part, subset + held, one)
        if progress is not None:
            progress()
        return result

    if kind == "layers":
        rows += _per_layer(backbone, part, pool, held, config, trained, base)
    elif kind in ("images", "subsets"):
        counts = study.counts if kind == "images" else (config.images,)
        for n in counts:
            for seed in range(study.seeds):
                chosen = np.random.default_rng(seed).choice(len(pool), n, replace=False)
                subset = [pool[i] for i in sorted(chosen)]
                result = trained(subset, seed=config.seed + seed)
                rows.append(
                    {
                        **base,
                        "images": n,
                        "seed": seed,
                        "miou": result.miou,
                        "train_s": round(result.seconds, 3),
                        "train_ids": " ".join(s.id for s in subset),
                    }
                )
    elif kind == "time":
        for spec in study.layer_sets:
            names = layer_set(backbone.unet, spec)
            wall = time.perf_counter()
            result = trained(pool[: config.images], layers=tuple(names))
            rows.append(
                {
                    **base,
                    "layer_set": spec,
                    "layers": len(names),
                    "steps": config.steps,
                    "train_s": round(result.seconds, 3),
                    "wall_s": round(time.perf_counter() - wall, 3),
                    "miou": result.miou,
                }
            )
    return rows


def _per_layer(
    backbone: Any,
    part: str,
    pool: list[Any],
    held: list[Any],
    config: Any,
    trained: Any,
    base: dict[str, Any],
) -> list[dict[str, Any]]:
    """Fig. 16: a token on every cross-attention layer, then each layer's held-out mIoU."""
    import torch

    from partedit_bench.engine.attention import cross_attention_layers
    from partedit_bench.tokens.training import (
        aggregate_maps,
        cache_queries,
        otsu_iou,
        token_maps,
        training_timesteps,
    )

    names = cross_attention_layers(backbone.unet)
    result = trained(pool[: config.images], layers=tuple(names))
    timesteps = training_timesteps(backbone, config.timesteps)
    cache = cache_queries(backbone, held, names, timesteps, config.seed + 1)
    size = (int(cache.masks.shape[-2]), int(cache.masks.shape[-1]))
    embedding = result.token.embedding.to(backbone.device, backbone.dtype)
    rows = []
    with torch.no_grad():
        maps = token_maps(backbone, cache, embedding)
        for index, name in enumerate(names):
            ious = otsu_iou(aggregate_maps({name: maps[name]}, size), cache.masks)
            h, w = cache.shapes[name]
            rows.append(
                {
                    **base,
                    "index": index,
                    "layer": name,
                    "block": name.split(".attentions")[0],
                    "map": f"{h}x{w}",
                    "miou": float(np.nanmean(ious)),
                    "all_layers_miou": result.miou,
                }
            )
    return rows


def summary(kind: str, frame: pd.DataFrame) -> pd.DataFrame:
    """What the figure draws: per backbone and part, the mean (and std, n) of each point."""
    keys = ["backbone", "part"]
    if kind == "layers":
        return frame[[*keys, "index", "layer", "map", "miou"]].rename(columns={"miou": "mean"})
    x = {"images": "images", "subsets": "seed", "time": "layer_set"}[kind]
    value = "train_s" if kind == "time" else "miou"
    grouped = frame.groupby([*keys, x], sort=False)
    out = grouped[value].agg(["mean", "std", "count"]).reset_index()
    if kind == "time":
        out["miou"] = grouped["miou"].mean().to_numpy()
        out["layers"] = grouped["layers"].first().to_numpy()
    if kind == "subsets":  # one point per subset; the figure adds their mean and spread
        out["std"] = float("nan")
    return out.rename(columns={"count": "n"})


def _figure(kind: str, table: pd.DataFrame, fmt: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from partedit_bench.plots import STYLE

    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(5.0 if kind == "layers" else 3.4, 2.6))
        groups = list(table.groupby(["backbone", "part"], sort=False))
        width = 0.8 / max(1, len(groups))
        for k, ((backbone, part), rows) in enumerate(groups):
            label = f"{backbone} {part}" if table.backbone.nunique() > 1 else part
            if kind == "layers":
                ax.plot(rows["index"], rows["mean"], marker="o", ms=3, label=label)
                ax.set_xticks(rows["index"], rows["map"], rotation=90, fontsize=5)
                ax.set_xlabel("cross-attention layer (execution order), map size")
                ax.set_ylabel("held-out mIoU")
            elif kind == "images":
                std = rows["std"].fillna(0)
                ax.plot(rows["images"], rows["mean"], marker="o", ms=3, label=label)
                ax.fill_between(rows["images"], rows["mean"] - std, rows["mean"] + std, alpha=0.2)
                ax.set_xlabel("training images")
                ax.set_ylabel("held-out mIoU (mean ± std over seeds)")
            elif kind == "subsets":
                xs = [k] * len(rows)
                ax.scatter(xs, rows["mean"], s=8, label=label)
                ax.errorbar(
                    [k], [rows["mean"].mean()], yerr=[rows["mean"].std(ddof=1) if len(rows) > 1
                                                      else 0.0],
                    fmt="_", color="black", capsize=4,
                )  # fmt: skip
                ax.set_xticks(range(len(groups)), [f"{b}\n{p}" for (b, p), _ in groups])
                ax.set_ylabel("held-out mIoU per subset")
            else:
                bars = [i + k * width for i in range(len(rows))]
                ax.bar(bars, rows["mean"], width, label=label)
                for x, (_, r) in zip(bars, rows.iterrows(), strict=True):
                    ax.annotate(f"{r['miou']:.2f}", (x, r["mean"]), fontsize=5, ha="center",
                                va="bottom")  # fmt: skip
                ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))],
                              [f"{s}\n({n})" for s, n in zip(rows["layer_set"], rows["layers"],
                                                             strict=True)])  # fmt: skip
                ax.set_xlabel("layer set (layers); mIoU above each bar")
                ax.set_ylabel("training wall time (s)")
        ax.legend(fontsize=6)
        ax.set_title(
            {
                "layers": "mIoU of each layer's map (App. E)",
                "images": "mIoU vs training images (App. B)",
                "subsets": "mIoU across image subsets (App. J)",
                "time": "training time per layer set (App. Q)",
            }[kind]
        )
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt)
        plt.close(fig)
    return buffer.getvalue()


def write_study(kind: str, frame: pd.DataFrame, output: Path) -> dict[str, Path]:
    """The CSVs and the figure of a study into `output` (checked by the caller)."""
    from partedit_bench.io import atomic_write_bytes

    table = summary(kind, frame)
    paths = {
        "csv": output / f"token_{kind}.csv",
        "summary": output / f"token_{kind}_summary.csv",
        "png": output / f"token_{kind}.png",
        "pdf": output / f"token_{kind}.pdf",
    }
    atomic_write_bytes(paths["csv"], frame.to_csv(index=False).encode())
    atomic_write_bytes(paths["summary"], table.to_csv(index=False).encode())
    atomic_write_bytes(paths["png"], _figure(kind, table, "png"))
    atomic_write_bytes(paths["pdf"], _figure(kind, table, "pdf"))
    return paths


def result_files(kind: str) -> list[str]:
    return [f"token_{kind}{end}" for end in (".csv", "_summary.csv", ".png", ".pdf")]
