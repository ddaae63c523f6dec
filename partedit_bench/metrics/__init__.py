"""Metrics: pure functions in `functional`, thin declarations here (name, direction, group),
Alpha-CLIP in `alpha_clip`, and the evaluate stage in `evaluate`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from partedit_bench.metrics import functional as F


@dataclass
class ScoredEdit:
    """What the metrics see of one edit. Images (H, W, 3) float in [0, 1]; masks bool (H, W).

    Args:
        source: the sample's image. edited: the edit at the sample's size. mask: the GT part M.
        target: the true edited image (suites that have one). predicted_mask: the method's own
            mask estimate in [0, 1]. fg_text: the foreground text for aclip_fg.
    """

    source: np.ndarray
    edited: np.ndarray
    mask: np.ndarray
    target: np.ndarray | None = None
    predicted_mask: np.ndarray | None = None
    fg_text: str = ""


@dataclass(frozen=True)
class Metric:
    """A metric's declaration; the math lives in `functional`."""

    name: str
    higher_is_better: bool
    group: str  # "pixel" (weight-free) or "aclip" (needs Alpha-CLIP checkpoints)
    description: str
    compute: Callable[[ScoredEdit], float] | None = None

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


def _needs(field: str, fn: Callable[[ScoredEdit], float]) -> Callable[[ScoredEdit], float]:
    def wrapped(e: ScoredEdit) -> float:
        return float("nan") if getattr(e, field) is None else fn(e)

    return wrapped


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "psnr_bg",
            True,
            "pixel",
            "PSNR over background pixels (MSE floor 1e-10)",
            lambda e: F.psnr_bg(e.source, e.edited, e.mask),
        ),
        Metric(
            "ssim_bg",
            True,
            "pixel",
            "mean Gaussian SSIM map over background pixels",
            lambda e: F.ssim_bg(e.source, e.edited, e.mask),
        ),
        Metric(
            "psnr_bg_pie",
            True,
            "pixel",
            "PIE-Bench: PSNR of both images times B",
            lambda e: F.psnr_bg_pie(e.source, e.edited, e.mask),
        ),
        Metric(
            "ssim_bg_pie",
            True,
            "pixel",
            "PIE-Bench: SSIM of both images times B",
            lambda e: F.ssim_bg_pie(e.source, e.edited, e.mask),
        ),
        Metric(
            "leakage",
            False,
            "pixel",
            "mean absolute change on the background",
            lambda e: F.leakage(e.source, e.edited, e.mask),
        ),
        Metric(
            "edit_strength",
            True,
            "pixel",
            "mean absolute change on the part",
            lambda e: F.edit_strength(e.source, e.edited, e.mask),
        ),
        Metric(
            "mask_iou",
            True,
            "pixel",
            "IoU of the method's predicted mask with the GT mask",
            _needs("predicted_mask", lambda e: F.mask_iou(e.predicted_mask, e.mask)),
        ),
        Metric(
            "psnr_fg_gt",
            True,
            "pixel",
            "PSNR on the part between the edit and the true edit",
            _needs("target", lambda e: F.psnr_fg_gt(e.target, e.edited, e.mask)),
        ),
        Metric("aclip_fg", True, "aclip", "Alpha-CLIP(edited, alpha=M) vs CLIP text of the edit"),
        Metric("aclip_bg", True, "aclip", "Alpha-CLIP(source, alpha=B) vs Alpha-CLIP(edited, B)"),
        Metric("aclip_avg", True, "aclip", "mean of aclip_fg and aclip_bg"),
    )
}

#: Shown in tables by default (the paper's Table 1 columns plus the weight-free extras).
DEFAULT_COLUMNS = (
    "aclip_fg",
    "aclip_bg",
    "aclip_avg",
    "psnr_bg",
    "ssim_bg",
    "leakage",
    "edit_strength",
    "mask_iou",
    "psnr_fg_gt",
)

TEXT_RULE = "prompt_changed with each <part-token> replaced by the sample's plain part words"


def foreground_text(prompt_changed: str, part_words: str) -> str:
    """T_fg: the edit prompt with the part token written as plain words
    (`a man with a robotic <humanoid-head>` -> `a man with a robotic head`)."""
    return re.sub(r"<[^<>]+>", part_words, prompt_changed).strip()


def pixel_manifest() -> dict[str, Any]:
    return {
        "group": "pixel",
        "version": 1,
        "metrics": {m.name: m.description for m in METRICS.values() if m.group == "pixel"},
        "mse_floor": F.MSE_FLOOR,
        "ssim": "skimage structural_similarity full map, gaussian sigma 1.5, population "
        "covariance, data_range 1, channel mean, no border crop",
        "images": "float64 in [0, 1]; edits resized to the sample's size (Lanczos) by the runner",
        "mask_iou": "predicted mask binarized at 0.5",
        "empty_region": "NaN",
    }
