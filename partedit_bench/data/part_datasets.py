"""`data import-parts`: token-training suites from PartImageNet (COCO-style JSON) and
PASCAL-Part (`Annotations_Part` .mat files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from partedit_bench.data.files_suite import write_files_suite
from partedit_bench.data.masks import (
    coco_segmentation_to_mask,
    mask_to_image,
)
from partedit_bench.data.schema import Sample, load_image
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, png_bytes
from partedit_bench.outputs import child, output_folder

PARTIMAGENET_PARTS = {
    ("quadruped", "head"): "animal-head",
    ("biped", "head"): "humanoid-head",
    ("car", "body"): "car-body",
}


def import_partimagenet(
    annotations: str,
    images: str,
    output: str,
    name: str | None = None,
    parts: list[str] | None = None,
    limit: int | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """A token-training suite (images + canonical part masks) from PartImageNet's COCO-style
    JSON: categories named like `Quadruped Head` (supercategory Quadruped) are mapped onto the
    canonical parts (Quadruped Head -> animal-head, Biped Head -> humanoid-head, Car Body ->
    car-body); the masks of one part in one image are united."""
    path = Path(annotations)
    try:
        data = json.loads(path.read_text())
        categories = {}
        for c in data["categories"]:
            words = str(c["name"]).lower().split()
            key = (str(c.get("supercategory", words[0])).lower(), words[-1])
            if key in PARTIMAGENET_PARTS:
                categories[c["id"]] = PARTIMAGENET_PARTS[key]
        images_by_id = {img["id"]: img for img in data["images"]}
        grouped: dict[tuple[int, str], list[Any]] = {}
        for ann in data["annotations"]:
            part = categories.get(ann["category_id"])
            if part and (not parts or part in parts):
                grouped.setdefault((ann["image_id"], part), []).append(ann["segmentation"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"malformed PartImageNet annotation file {path}: {exc!r}") from exc
    folder = _output(output, overwrite)
    samples: list[Sample] = []
    for (image_id, part), segmentations in sorted(grouped.items(), key=lambda kv: kv[0]):
        if limit and sum(s.part_token == part for s in samples) >= limit:
            continue
        info = images_by_id[image_id]
        image_path = Path(images) / info["file_name"]
        image = load_image(image_path)
        mask = np.logical_or.reduce(
            [coco_segmentation_to_mask(s, image.size) for s in segmentations]
        )
        if not mask.any():
            continue
        sample_id = f"{Path(info['file_name']).stem}-{part}"
        samples.append(_part_sample(folder, sample_id, part.split("-")[0], part, image_path, mask))
    return _token_training_suite(folder, name, samples, "PartImageNet", path, parts)


def _part_sample(
    folder: Path, sample_id: str, class_name: str, part: str, image_path: Path, mask: np.ndarray
) -> Sample:
    """A token-training sample: the image where it is, its part mask written into `folder`."""
    out = child(folder, "masks", f"{sample_id}.png", field="sample id")
    atomic_write_bytes(out, png_bytes(mask_to_image(mask)))
    return Sample(
        id=sample_id,
        split="real",
        class_name=class_name,
        part=part.split("-")[-1],
        part_token=part,
        original_image=str(image_path.resolve()),
        gt_mask=str(out),
    )


def _output(output: str, overwrite: bool) -> Path:
    """The suite folder: new, or (with `overwrite`) an earlier token-training import."""

    def earlier(folder: Path) -> bool:
        import yaml

        try:
            definition = yaml.safe_load((folder / "suite.yaml").read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            return False
        return isinstance(definition, dict) and definition.get("role") == "token-training"

    return output_folder(output, "import-parts --output", overwrite, owned=earlier)


def _token_training_suite(
    folder: Path,
    name: str | None,
    samples: list[Sample],
    origin: str,
    source: Path | str,
    parts: list[str] | None,
) -> tuple[Path, int]:
    if not samples:
        raise UserError(f"{source}: no annotations of {parts or 'any canonical part'}")
    definition = {
        "name": name or folder.name,
        "version": "imported-1",
        "role": "token-training",
        "description": f"{origin} part masks from {source}",
        "origin": str(source),
    }
    return write_files_suite(folder, definition, samples), len(samples)


# ---------------------------------------------------------------------------------------
# import-parts: token-training data from PASCAL-Part (Annotations_Part/*.mat)

PASCAL_ANIMALS = {"cat", "dog", "cow", "horse", "sheep"}
PASCAL_HEAD = {
    "head",
    "leye",
    "reye",
    "lear",
    "rear",
    "lebrow",
    "rebrow",
    "nose",
    "mouth",
    "hair",
    "muzzle",
    "lhorn",
    "rhorn",
}


def pascal_part_names(object_class: str, part_name: str) -> list[str]:
    """The canonical parts a PASCAL-Part (object class, part) belongs to: a person's head is
    the head with its eyes, ears, brows, nose, mouth and hair; an animal's head likewise with
    muzzle and horns; a car's body is every car part but the wheels."""
    base = part_name.split("_")[0]
    out = []
    if object_class == "person":
        if part_name in PASCAL_HEAD:
            out.append("humanoid-head")
        if part_name == "hair":
            out.append("human-hair")
        if part_name == "torso":
            out.append("humanoid-torso")
    elif object_class in PASCAL_ANIMALS and part_name in PASCAL_HEAD:
        out.append("animal-head")
    elif object_class == "car" and base != "wheel":
        out.append("car-body")
    return out


def import_pascal_part(
    annotations: str,
    images: str,
    output: str,
    name: str | None = None,
    parts: list[str] | None = None,
    limit: int | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """A token-training suite from PASCAL-Part: each `Annotations_Part/<image>.mat` (the
    release's `anno.objects(i).parts(j).{part_name, mask}` structs, read with scipy), its
    JPEG from `images` (VOC's JPEGImages); one sample per (image, object, canonical part)."""
    import scipy.io

    files = sorted(Path(annotations).glob("*.mat"))
    if not files:
        raise UserError(f"no PASCAL-Part .mat files in {annotations}")
    folder = _output(output, overwrite)
    samples: list[Sample] = []
    for mat_path in files:
        try:
            anno = scipy.io.loadmat(str(mat_path))["anno"][0, 0]
            objects = anno["objects"][0]
        except (KeyError, IndexError, ValueError, OSError) as exc:
            raise UserError(f"malformed PASCAL-Part file {mat_path}: {exc!r}") from exc
        image_path = Path(images) / f"{mat_path.stem}.jpg"
        for index, obj in enumerate(objects):
            masks: dict[str, np.ndarray] = {}
            object_class = str(obj["class"][0])
            for part in obj["parts"][0] if obj["parts"].size else []:
                for canonical in pascal_part_names(object_class, str(part["part_name"][0])):
                    if parts and canonical not in parts:
                        continue
                    mask = np.asarray(part["mask"]) > 0
                    masks[canonical] = masks.get(canonical, np.zeros_like(mask)) | mask
            for canonical, mask in masks.items():
                if not mask.any() or (
                    limit and sum(s.part_token == canonical for s in samples) >= limit
                ):
                    continue
                image = load_image(image_path)
                if image.size != (mask.shape[1], mask.shape[0]):
                    raise UserError(f"{mat_path}: mask {mask.shape[::-1]} vs image {image.size}")
                sample_id = f"{mat_path.stem}-{index}-{canonical}"
                samples.append(
                    _part_sample(folder, sample_id, object_class, canonical, image_path, mask)
                )
    return _token_training_suite(folder, name, samples, "PASCAL-Part", annotations, parts)
