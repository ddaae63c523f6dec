"""`data import-masks`: GT masks attached to a files suite from PNG folders, COCO JSON
(polygons, RLE) or LabelMe files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from partedit_bench.data.files_suite import write_files_suite
from partedit_bench.data.masks import (
    coco_segmentation_to_mask,
    mask_to_image,
    polygons_to_mask,
)
from partedit_bench.data.schema import load_image, load_mask
from partedit_bench.data.suites import load_suite
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, png_bytes
from partedit_bench.outputs import child


def import_masks(
    suite_path: str,
    source: str,
    fmt: str = "auto",
    label: str | None = None,
    overwrite: bool = False,
) -> tuple[int, list[str]]:
    """Attaches GT masks to a files suite from PNGs (`<id>.png` or `<id>_mask.png`), a COCO
    JSON (polygons or RLE; images matched by file stem), or LabelMe JSON files (`<id>.json`),
    as `masks/<id>.png` inside the suite folder (symlinks resolved: never outside it). A mask
    file that exists with other content is replaced only with `overwrite`; every mask is read
    and checked before the first is written. Returns (attached, ids still without a mask)."""
    suite = load_suite(suite_path)
    folder = suite.path.parent
    if "samples_file" not in suite.definition:
        raise UserError(f"suite '{suite.name}' is not a folder of samples (samples.jsonl)")
    src = Path(source)
    if fmt == "auto":
        if src.is_file() and src.suffix == ".json":
            fmt = "coco"
        elif src.is_dir() and any(src.glob("*.json")):
            fmt = "labelme"
        elif src.is_dir():
            fmt = "png"
        else:
            raise UserError(f"mask source not found: {src}")
    coco = _coco_index(src, label) if fmt == "coco" else None
    found: list[tuple[Any, Path, bytes]] = []
    for sample in suite.samples:
        size = load_image(sample.original_image).size
        mask = None
        if fmt == "png":
            for name in (f"{sample.id}.png", f"{sample.id}_mask.png"):
                if (src / name).is_file():
                    mask = load_mask(src / name, size)
                    break
        elif fmt == "labelme":
            if (src / f"{sample.id}.json").is_file():
                mask = _labelme_mask(src / f"{sample.id}.json", size, label)
        elif fmt == "coco" and coco is not None:
            entry = coco.get(sample.id) or coco.get(Path(sample.original_image).stem)
            if entry:
                mask = _coco_mask(entry, size)
        else:
            raise UserError(f"unknown mask format '{fmt}' (png, coco, labelme)")
        if mask is None:
            continue
        if not mask.any():
            raise UserError(f"the mask for sample {sample.id} from {src} is empty")
        if mask.all():
            raise UserError(f"the mask for sample {sample.id} from {src} covers the whole image")
        path = child(folder, "masks", f"{sample.id}.png", field="sample id")
        data = png_bytes(mask_to_image(mask))
        if path.exists() and not path.is_file():
            raise UserError(f"{path} exists and is not a file")
        if path.is_file() and path.read_bytes() != data and not overwrite:
            raise UserError(
                f"{path} exists with another mask for sample {sample.id}; pass --overwrite to "
                "replace the suite's masks"
            )
        found.append((sample, path, data))
    for sample, path, data in found:
        atomic_write_bytes(path, data)
        sample.gt_mask = str(path)
    attached = len(found)
    definition = {k: v for k, v in suite.definition.items() if k != "samples_file"}
    write_files_suite(folder, definition, suite.samples)
    return attached, [s.id for s in suite.samples if not s.gt_mask]


def _coco_index(path: Path, label: str | None) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        images = {img["id"]: img for img in data["images"]}
        index: dict[str, dict[str, Any]] = {}
        for ann in data["annotations"]:
            if label and categories.get(ann.get("category_id")) != label:
                continue
            image = images[ann["image_id"]]
            entry = index.setdefault(
                Path(image["file_name"]).stem, {"image": image, "segmentations": []}
            )
            entry["segmentations"].append(ann["segmentation"])
        return index
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"malformed COCO file {path}: {exc!r}") from exc


def _coco_mask(entry: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    image = entry["image"]
    if (image.get("width"), image.get("height")) not in ((size[0], size[1]), (None, None)):
        raise UserError(
            f"COCO image {image['file_name']} is {image['width']}x{image['height']}, "
            f"the suite's image is {size[0]}x{size[1]}"
        )
    try:
        return np.logical_or.reduce(
            [coco_segmentation_to_mask(s, size) for s in entry["segmentations"]]
        )
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise UserError(
            f"malformed COCO segmentation of {image.get('file_name')}: {exc!r}"
        ) from exc


def _labelme_mask(path: Path, size: tuple[int, int], label: str | None) -> np.ndarray | None:
    try:
        data = json.loads(path.read_text())
        shapes = [s for s in data["shapes"] if label is None or s.get("label") == label]
        polygons = [s["points"] for s in shapes if s.get("shape_type", "polygon") == "polygon"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"malformed LabelMe file {path}: {exc!r}") from exc
    declared = (data.get("imageWidth"), data.get("imageHeight"))
    if declared != (None, None) and declared != size:
        raise UserError(f"{path} is annotated at {declared}, the image is {size}")
    if not polygons:
        return None
    try:
        return polygons_to_mask(polygons, size, convention="pil")
    except (ValueError, TypeError, IndexError) as exc:
        raise UserError(f"malformed LabelMe file {path}: bad polygon points ({exc})") from exc
