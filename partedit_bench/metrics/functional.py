"""Masked image metrics: the math, as pure functions (DESIGN.md, "Metrics").

Conventions: images are float arrays in [0, 1] of shape (H, W, C); masks are bool (H, W) with
True on the part to edit (M); the background is B = ~M. A metric whose region is empty returns
NaN (the report counts and names such rows). Every function also accepts a leading batch
dimension ((N, H, W, C) images, (N, H, W) masks) and returns one value per item.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

#: MSE floor: identical regions score 10 * log10(1 / 1e-10) = 100 dB, never inf.
MSE_FLOOR = 1e-10


def _batched(item_ndim: int) -> Callable[[Callable[..., float]], Callable[..., Any]]:
    """Lets a per-item function (first argument of `item_ndim` dimensions) also take a
    leading batch dimension, returning one value per item."""

    def decorate(fn: Callable[..., float]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(first: np.ndarray, *rest: np.ndarray) -> Any:
            if np.ndim(first) == item_ndim + 1:
                return np.array([fn(*items) for items in zip(first, *rest, strict=True)])
            return fn(first, *rest)

        return wrapper

    return decorate


def _check(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if mask.shape != a.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {a.shape[:2]}")


def _mse_over(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    if not region.any():
        return float("nan")
    diff = (a.astype(np.float64) - b.astype(np.float64))[region]
    return float(np.mean(diff * diff))


def _psnr_over(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    mse = _mse_over(a, b, region)
    return mse if mse != mse else 10.0 * np.log10(1.0 / max(mse, MSE_FLOOR))


@_batched(3)
def psnr_bg(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over background pixels only: 10 log10(1 / MSE), MSE over B and all channels,
    floored at 1e-10."""
    _check(source, edited, mask)
    return _psnr_over(source, edited, ~mask.astype(bool))


@_batched(3)
def psnr_fg_gt(target: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the part M between the edit and the true edited image."""
    _check(target, edited, mask)
    return _psnr_over(target, edited, mask.astype(bool))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM averaged over channels, (H, W): scikit-image's Gaussian SSIM
    (sigma 1.5, population covariance, data range 1), no border crop."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        full=True,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )
    return np.asarray(full).mean(axis=-1)


@_batched(3)
def ssim_bg(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean of the per-pixel SSIM map over background pixels."""
    _check(source, edited, mask)
    background = ~mask.astype(bool)
    if not background.any():
        return float("nan")
    return float(ssim_map(source, edited)[background].mean())


@_batched(3)
def psnr_bg_pie(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PIE-Bench's variant: both images multiplied by B, PSNR over the whole image (the
    zeroed part counts as a perfect match, which inflates the score)."""
    _check(source, edited, mask)
    keep = (~mask.astype(bool))[..., None]
    if not keep.any():
        return float("nan")
    return _psnr_over(source * keep, edited * keep, np.ones(mask.shape, bool))


def ssim_map_mirror(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM, (H, W, C), as torchmetrics computes it (PIE-Bench's SSIM): the same
    11-tap Gaussian (sigma 1.5) and constants as `ssim_map`, population covariance, but the
    borders padded by whole-sample reflection (torch's `reflect`, scipy's `mirror`)."""
    from scipy.ndimage import gaussian_filter

    def blur(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, sigma=1.5, truncate=3.5, mode="mirror", axes=(0, 1))

    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


@_batched(3)
def ssim_bg_pie(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PIE-Bench's `ssim_unedit_part`: SSIM (torchmetrics' convention, `ssim_map_mirror`) of
    the two images multiplied by B, mean over the whole map and the channels."""
    _check(source, edited, mask)
    keep = (~mask.astype(bool))[..., None]
    if not keep.any():
        return float("nan")
    return float(ssim_map_mirror(source * keep, edited * keep).mean())


def _mean_abs_over(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    if not region.any():
        return float("nan")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64))[region].mean())


@_batched(3)
def leakage(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute change on the background B (all channels)."""
    _check(source, edited, mask)
    return _mean_abs_over(source, edited, ~mask.astype(bool))


@_batched(3)
def edit_strength(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute change on the part M (all channels)."""
    _check(source, edited, mask)
    return _mean_abs_over(source, edited, mask.astype(bool))


@_batched(2)
def mask_iou(predicted: np.ndarray, mask: np.ndarray) -> float:
    """IoU of a method's predicted edit mask (binarized at 0.5) with the GT mask M; NaN when
    both are empty."""
    if predicted.shape != mask.shape:
        raise ValueError(f"predicted mask {predicted.shape} vs GT mask {mask.shape}")
    pred, gt = np.asarray(predicted) >= 0.5, mask.astype(bool)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return float("nan")
    return float(np.logical_and(pred, gt).sum() / union)


@_batched(3)
def mse_bg(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared change over background pixels only (all channels)."""
    _check(source, edited, mask)
    return _mse_over(source, edited, ~mask.astype(bool))


@_batched(3)
def mse_bg_pie(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PIE-Bench's `mse_unedit_part`: both images multiplied by B, the mean squared difference
    over the whole image (the zeroed part counts as a perfect match)."""
    _check(source, edited, mask)
    keep = (~mask.astype(bool))[..., None]
    if not keep.any():
        return float("nan")
    return _mse_over(source * keep, edited * keep, np.ones(mask.shape, bool))


@_batched(3)
def l1(target: np.ndarray, edited: np.ndarray) -> float:
    """MagicBrush's L1: the mean absolute difference between the edit and the true edited
    image over the whole image (all channels)."""
    if target.shape != edited.shape:
        raise ValueError(f"images differ in shape: {target.shape} vs {edited.shape}")
    return float(np.abs(target.astype(np.float64) - edited.astype(np.float64)).mean())
