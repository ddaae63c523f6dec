"""Metrics: pure functions in `functional`, thin declarations here (name, direction, group),
Alpha-CLIP in `alpha_clip`, and the evaluate stage in `evaluate`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from partedit_bench.data.schema import write_part_words
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
    instruction: str = ""  # the sample's editing instruction, if it has one (the judge)
    part: str = ""  # the part's plain words (the judge's part-aware question)


@dataclass(frozen=True)
class Metric:
    """A metric's declaration; the math lives in `functional`."""

    name: str
    higher_is_better: bool
    group: str  # pixel (weight-free) | aclip (Alpha-CLIP) | pie | magicbrush (their networks)
    description: str
    compute: Callable[[ScoredEdit], float] | None = None
    needs: str = ""  # what it needs beyond the source, the edit and the GT mask

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


def _needs(field: str, fn: Callable[[ScoredEdit], float]) -> Callable[[ScoredEdit], float]:
    def wrapped(e: ScoredEdit) -> float:
        return float("nan") if getattr(e, field) is None else fn(e)

    return wrapped


ACLIP = "Alpha-CLIP + OpenAI CLIP checkpoints"
JUDGE = "an image-text-to-text model or endpoint (--judge-model / --judge-url)"
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
        Metric(
            "mse_bg",
            False,
            "pixel",
            "mean squared change over background pixels",
            lambda e: F.mse_bg(e.source, e.edited, e.mask),
        ),
        Metric(
            "mse_bg_pie",
            False,
            "pixel",
            "PIE-Bench: MSE of both images times B (mse_unedit_part)",
            lambda e: F.mse_bg_pie(e.source, e.edited, e.mask),
        ),
        Metric(
            "l1",
            False,
            "pixel",
            "MagicBrush: mean absolute difference from the true edit",
            _needs("target", lambda e: F.l1(e.target, e.edited)),
        ),
        Metric(
            "aclip_fg",
            True,
            "aclip",
            "Alpha-CLIP(edited, alpha=M) vs CLIP text of the edit",
            needs=ACLIP,
        ),
        Metric(
            "aclip_bg",
            True,
            "aclip",
            "Alpha-CLIP(source, alpha=B) vs Alpha-CLIP(edited, B)",
            needs=ACLIP,
        ),
        Metric("aclip_avg", True, "aclip", "mean of aclip_fg and aclip_bg", needs=ACLIP),
        Metric(
            "structure_distance",
            False,
            "pie",
            "PIE-Bench: MSE of DINO key self-similarities, source vs edit",
            needs="DINO ViT-B/8",
        ),
        Metric(
            "lpips_bg",
            False,
            "pie",
            "PIE-Bench: LPIPS of both images times B",
            needs="LPIPS (SqueezeNet)",
        ),
        Metric(
            "clip_whole",
            True,
            "pie",
            "PIE-Bench: CLIPScore of the edit and the edit prompt",
            needs="CLIP ViT-L/14",
        ),
        Metric(
            "clip_edited",
            True,
            "pie",
            "PIE-Bench: CLIPScore of the edit times M and the edit prompt",
            needs="CLIP ViT-L/14",
        ),
        Metric(
            "clip_i",
            True,
            "magicbrush",
            "MagicBrush: CLIP image cosine, edit vs true edit",
            needs="true edit; CLIP ViT-B/32",
        ),
        Metric(
            "clip_t",
            True,
            "magicbrush",
            "MagicBrush: CLIP cosine of the edit and its prompt",
            needs="CLIP ViT-B/32",
        ),
        Metric(
            "dino_i",
            True,
            "magicbrush",
            "MagicBrush: DINO CLS cosine, edit vs true edit",
            needs="true edit; DINO ViT-S/16",
        ),
        Metric(
            "vie_sc",
            True,
            "judge",
            "VIEScore SC (editing): min(success, overediting), 0-10",
            needs=JUDGE,
        ),
        Metric(
            "vie_pq", True, "judge", "VIEScore PQ: min(naturalness, artifacts), 0-10", needs=JUDGE
        ),
        Metric("vie_o", True, "judge", "VIEScore overall: sqrt(SC x PQ)", needs=JUDGE),
        Metric(
            "part_edit_ok",
            True,
            "judge",
            "judge, part outlined: was the part edited as asked, 0-10",
            needs=JUDGE,
        ),
        Metric(
            "outside_unchanged",
            True,
            "judge",
            "judge, part outlined: did nothing outside it change, 0-10",
            needs=JUDGE,
        ),
    )  # fmt: skip
}
#: Metric groups in the order they are computed and listed.
GROUPS = ("pixel", "aclip", "pie", "magicbrush", "judge")
for _name, _needs_what in (
    ("mask_iou", "a method's predicted mask"),
    ("psnr_fg_gt", "true edit"),
    ("l1", "true edit"),
):
    METRICS[_name] = dataclasses.replace(METRICS[_name], needs=_needs_what)

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
    return write_part_words(prompt_changed, part_words).strip()


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
