"""Each metric against an independent reference, for batch-size independence, and on edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from partedit_bench.metrics import foreground_text
from partedit_bench.metrics import functional as F


def images(seed: int = 0, size: int = 24):
    rng = np.random.default_rng(seed)
    a = rng.random((size, size, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    mask = np.zeros((size, size), bool)
    mask[5:15, 8:20] = True
    return a, b, mask


def gaussian_kernel(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def blur(channel: np.ndarray, mode: str = "symmetric") -> np.ndarray:
    """Separable 11-tap Gaussian (sigma 1.5) with half-sample symmetric borders (`reflect`:
    whole-sample, torch's), by hand."""
    k = gaussian_kernel()
    r = len(k) // 2
    padded = np.pad(channel, r, mode=mode)
    rows = sum(k[i] * padded[:, i : i + channel.shape[1]] for i in range(len(k)))
    return sum(k[i] * rows[i : i + channel.shape[0], :] for i in range(len(k)))


def ssim_map_reference(a: np.ndarray, b: np.ndarray, mode: str = "symmetric") -> np.ndarray:
    """Wang et al. 2004 SSIM map from the formula (C1 = 0.01^2, C2 = 0.03^2), channel mean."""
    c1, c2 = 0.01**2, 0.03**2
    maps = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]
        f = lambda z: blur(z, mode)  # noqa: E731
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return np.mean(maps, axis=0)


def test_psnr_bg_matches_the_formula_and_an_independent_library():
    a, b, mask = images()
    background = ~mask
    diffs = [
        (a[i, j, c] - b[i, j, c]) ** 2
        for i, j in zip(*np.nonzero(background), strict=True)
        for c in range(3)
    ]
    expected = 10 * math.log10(1 / (sum(diffs) / len(diffs)))
    assert F.psnr_bg(a, b, mask) == pytest.approx(expected, abs=1e-10)
    lib = peak_signal_noise_ratio(a[background], b[background], data_range=1.0)
    assert F.psnr_bg(a, b, mask) == pytest.approx(lib, abs=1e-10)


def test_psnr_bg_hand_value_ignores_the_part():
    a = np.zeros((8, 8, 3))
    b = np.full((8, 8, 3), 0.1)
    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    b[mask] = 1.0  # the part may change arbitrarily
    assert F.psnr_bg(a, b, mask) == pytest.approx(20.0)


def test_ssim_bg_matches_a_direct_gaussian_formula():
    a, b, mask = images(1, size=32)
    reference = ssim_map_reference(a, b)
    np.testing.assert_allclose(F.ssim_map(a, b), reference, atol=1e-10)
    assert F.ssim_bg(a, b, mask) == pytest.approx(reference[~mask].mean(), abs=1e-10)


def test_pie_variants_zero_fill_the_part():
    a, b, mask = images(2)
    keep = (~mask)[..., None]
    mse = np.mean((a * keep - b * keep) ** 2)
    assert F.psnr_bg_pie(a, b, mask) == pytest.approx(10 * np.log10(1 / mse))
    assert F.psnr_bg_pie(a, b, mask) > F.psnr_bg(a, b, mask)  # zeros count as matches
    pie = ssim_map_reference(a * keep, b * keep, mode="reflect").mean()  # torch's padding
    assert F.ssim_bg_pie(a, b, mask) == pytest.approx(pie, abs=1e-12)
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    as_torch = [torch.from_numpy(x * keep).permute(2, 0, 1)[None] for x in (a, b)]
    reference = float(structural_similarity_index_measure(*as_torch, data_range=1.0))
    assert F.ssim_bg_pie(a, b, mask) == pytest.approx(reference, abs=1e-12)  # PIE-Bench's SSIM


def test_leakage_edit_strength_and_fg_psnr():
    a, b, mask = images(3)
    bg = [
        abs(a[i, j, c] - b[i, j, c])
        for i, j in zip(*np.nonzero(~mask), strict=True)
        for c in range(3)
    ]
    fg = [
        abs(a[i, j, c] - b[i, j, c])
        for i, j in zip(*np.nonzero(mask), strict=True)
        for c in range(3)
    ]
    assert F.leakage(a, b, mask) == pytest.approx(sum(bg) / len(bg))
    assert F.edit_strength(a, b, mask) == pytest.approx(sum(fg) / len(fg))
    mse_fg = sum(d * d for d in fg) / len(fg)
    assert F.psnr_fg_gt(a, b, mask) == pytest.approx(10 * math.log10(1 / mse_fg))


def test_mask_iou_hand_cases():
    gt = np.zeros((4, 4), bool)
    gt[:2] = True  # 8 pixels
    pred = np.zeros((4, 4))
    pred[1:3] = 0.7  # 8 pixels, 4 shared
    assert F.mask_iou(pred, gt) == pytest.approx(4 / 12)
    assert F.mask_iou(gt.astype(float), gt) == 1.0
    assert F.mask_iou(np.full((4, 4), 0.49), gt) == 0.0
    assert math.isnan(F.mask_iou(np.zeros((4, 4)), np.zeros((4, 4), bool)))


@pytest.mark.parametrize(
    "name",
    [
        "psnr_bg",
        "ssim_bg",
        "psnr_bg_pie",
        "ssim_bg_pie",
        "leakage",
        "edit_strength",
        "psnr_fg_gt",
        "mse_bg",
        "mse_bg_pie",
    ],  # fmt: skip
)
def test_batch_size_independence(name):
    fn = getattr(F, name)
    items = [images(seed) for seed in range(4)]
    a, b, m = (np.stack(x) for x in zip(*items, strict=True))
    batched = fn(a, b, m)
    single = [fn(*item) for item in items]
    np.testing.assert_allclose(batched, single, rtol=0, atol=0)
    np.testing.assert_allclose(fn(a[:2], b[:2], m[:2]), single[:2], rtol=0, atol=0)


def test_edges_identical_images_and_empty_regions():
    a, _, mask = images(4)
    assert F.psnr_bg(a, a, mask) == pytest.approx(100.0)
    assert F.psnr_fg_gt(a, a, mask) == pytest.approx(100.0)
    assert F.ssim_bg(a, a, mask) == pytest.approx(1.0)
    assert F.leakage(a, a, mask) == 0.0
    full = np.ones(mask.shape, bool)
    for fn in (F.psnr_bg, F.ssim_bg, F.psnr_bg_pie, F.ssim_bg_pie, F.leakage):
        assert math.isnan(fn(a, a, full)), fn.__name__
    empty = np.zeros(mask.shape, bool)
    assert math.isnan(F.edit_strength(a, a, empty)) and math.isnan(F.psnr_fg_gt(a, a, empty))


def test_shape_mismatch_is_an_error():
    a, b, mask = images()
    with pytest.raises(ValueError):
        F.psnr_bg(a, b[:-1], mask)
    with pytest.raises(ValueError):
        F.ssim_bg(a, b, mask[:-1])


def test_foreground_text_rule():
    text = foreground_text("a man with a robotic <humanoid-head>", "head")
    assert text == "a man with a robotic head"
    assert foreground_text("a red <car-hood> on a <car-body>", "hood") == "a red hood on a hood"


def test_mse_conventions_and_magicbrush_l1_by_hand():
    """mse_bg averages over the background's pixels; PIE-Bench's mse_unedit_part zero-fills the
    part and averages over the whole image; their ratio is the background's share. L1 is the
    whole image's mean absolute difference from the true edit."""
    a = np.zeros((2, 2, 3))
    b = np.zeros((2, 2, 3))
    b[0, 0] = 0.5  # on the part
    b[1, 1] = 0.2  # on the background
    mask = np.array([[True, False], [False, False]])
    assert F.mse_bg(a, b, mask) == pytest.approx(0.2**2 / 3)  # 1 of 3 background pixels
    assert F.mse_bg_pie(a, b, mask) == pytest.approx(0.2**2 / 4)  # of all 4 pixels
    assert F.l1(a, b) == pytest.approx((0.5 + 0.2) / 4)
    x, y, m = images(5)
    share = (~m).mean()
    assert F.mse_bg_pie(x, y, m) == pytest.approx(F.mse_bg(x, y, m) * share)
    assert F.psnr_bg(x, y, m) == pytest.approx(10 * np.log10(1 / F.mse_bg(x, y, m)))
    full = np.ones(m.shape, bool)
    assert math.isnan(F.mse_bg(x, y, full)) and math.isnan(F.mse_bg_pie(x, y, full))
