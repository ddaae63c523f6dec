"""Mask formats: PNG, COCO RLE (uncompressed counts or the compressed string), and polygons
(COCO `segmentation` lists, LabelMe `shapes[].points`). Everything becomes a bool (H, W) array,
stored as a single-channel 0/255 PNG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from partedit_bench.errors import UserError


def rle_string_to_counts(text: str) -> list[int]:
    """Decodes COCO's compressed RLE string (LEB128-like, 5 bits per character, offsets
    relative to the count two places back) into run lengths."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            char = ord(text[position]) - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (`{"size": [h, w], "counts": [...] or "..."}`) -> bool (h, w). Runs alternate
    0s and 1s, starting with 0s, over the image in column-major order."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"malformed COCO RLE: {exc}") from exc
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = rle_string_to_counts(counts)
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for run in counts:
        if value:
            flat[position : position + run] = True
        position += run
        value = not value
    if position != height * width:
        raise UserError(f"malformed COCO RLE: runs cover {position} pixels, not {height * width}")
    return flat.reshape((width, height)).T


def polygons_to_mask(
    polygons: Sequence[Sequence[float]] | Sequence[Sequence[Sequence[float]]],
    size: tuple[int, int],
    convention: str = "centers",
) -> np.ndarray:
    """Polygons (flat [x0, y0, x1, y1, ...] as COCO, or [[x, y], ...] as LabelMe) -> bool mask
    of `size` = (width, height); overlapping polygons are united.

    Conventions: `centers` (default; COCO): a pixel belongs to the polygon when its center
    (x + 0.5, y + 0.5) is inside (even-odd rule), so a square polygon from (0, 0) to (10, 10)
    covers 100 pixels. `pil` (LabelMe's own `shape_to_mask`): PIL's fill plus outline, which
    also takes the boundary pixels (121 for that square).
    """
    width, height = size
    out = np.zeros((height, width), dtype=bool)
    canvas = Image.new("L", size, 0) if convention == "pil" else None
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    for polygon in polygons:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(points) < 3:
            raise UserError(f"a polygon needs at least 3 points, got {len(points)}")
        if canvas is not None:
            ImageDraw.Draw(canvas).polygon(
                [tuple(p) for p in points.tolist()], fill=255, outline=255
            )
            continue
        inside = np.zeros_like(out)
        for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0), strict=True):
            if y0 == y1:
                continue
            crosses = (ys >= min(y0, y1)) & (ys < max(y0, y1))
            x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (xs < x_at)
        out |= inside
    if canvas is not None:
        out |= np.asarray(canvas) > 0
    return out


def coco_segmentation_to_mask(segmentation: Any, size: tuple[int, int]) -> np.ndarray:
    """A COCO annotation's `segmentation` (polygons or RLE) -> bool mask of (width, height)."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, size)
    if isinstance(segmentation, dict):
        mask = rle_to_mask(segmentation)
        if mask.shape != (size[1], size[0]):
            raise UserError(f"RLE of size {mask.shape[::-1]} for an image of {size}")
        return mask
    raise UserError(f"unknown COCO segmentation type {type(segmentation).__name__}")


def mask_to_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a binary mask (inside pixels with an outside 4-neighbour)."""
    m = np.asarray(mask, bool)
    padded = np.pad(m, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return m & ~inner


#: where the outline of a soft mask is drawn: this fraction of the way from its minimum to its
#: maximum
OUTLINE_AT = 0.5


def mask_view(
    image: Image.Image,
    soft: np.ndarray,
    gt: np.ndarray | None = None,
    color: tuple[int, int, int] = (255, 0, 0),
) -> Image.Image:
    """A method's soft mask over an image, for people to look at (the `edit` command's
    overlay, the gallery, the demo): tinted in proportion to the mask stretched to its own
    range (so that a faint mask, LEDITS++'s with a maximum of 0.06, shows its shape, and a
    low-contrast one of mean 0.5 shows where it is high instead of tinting the whole image),
    at most 0.6 of the color; the outline of where it reaches OUTLINE_AT of its range in `color`
    at full strength; the GT part's outline in green when `gt` is given. A constant mask is
    shown as nothing to see. The mask's values themselves are in the stored mask PNG."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).copy()
    soft = np.nan_to_num(np.asarray(soft, dtype=np.float64))
    low, high = (float(soft.min()), float(soft.max())) if soft.size else (0.0, 0.0)
    if high > low:
        scaled = (soft - low) / (high - low)
        alpha = 0.6 * scaled[..., None]
        pixels = pixels * (1 - alpha) + np.asarray(color, np.float64) * alpha
        pixels[outline(scaled >= OUTLINE_AT)] = color
    if gt is not None:
        pixels[outline(gt)] = (0.0, 255.0, 0.0)
    return Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
