"""Where a part mask comes from, besides PartEdit's own token maps: the suite's GT mask, a folder
of mask files, Grounded-SAM as the PartEdit paper ran it (Appendix P) and SAM 3.

A source maps (sample, image) -> a binary (H, W) mask at the image's size. Model sources load
through `transformers` by hub id or local folder (`PARTEDIT_BENCH_GROUNDING_DINO`,
`PARTEDIT_BENCH_SAM`, `PARTEDIT_BENCH_SAM3` override the ids); `tiny-grounded-sam` and
`tiny-sam3` are the same classes at test size with fixed-seed random weights (they check the
plumbing, not the segmentation). Masks of model sources are cached per (source identity,
sample digest, text query) under PARTEDIT_BENCH_CACHE/masks.

The names a method option `mask_source` takes: `tokens` (PartEdit's thresholded token mask,
computed by the partedit method), `gt`, `grounded-sam`, `sam3`, `tiny-grounded-sam`,
`tiny-sam3`, or a folder holding `<sample-id>.png` masks.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from partedit_bench.data.schema import Sample, load_mask
from partedit_bench.errors import UserError, did_you_mean

NAMED = ("tokens", "gt", "grounded-sam", "sam3", "tiny-grounded-sam", "tiny-sam3")
MODEL_SOURCES = ("grounded-sam", "sam3", "tiny-grounded-sam", "tiny-sam3")
GROUNDING_DINO = "IDEA-Research/grounding-dino-base"
SAM = "facebook/sam-vit-base"
SAM3 = "facebook/sam3"
#: Appendix P: detection (box) threshold 0.3, overlap threshold 0.1 for the mask selection.
BOX_THRESHOLD = 0.3
OVERLAP = 0.1


def check_source(value: str, where: str) -> str:
    """`value` if it names a mask source (or an existing folder of masks); one line otherwise."""
    if value in NAMED or Path(value).is_dir():
        return value
    raise UserError(
        f"{where}: mask source {value!r} is not one of {', '.join(NAMED)} nor a folder of "
        f"<sample-id>.png masks{did_you_mean(value, NAMED)}"
    )


def part_phrase(sample: Sample) -> str:
    """The part's plain words as a text query, as the paper queried Grounded-SAM: the subject
    and the part ("horse head"), else the part alone."""
    part = sample.part or sample.part_token.split("-")[-1]
    subject = (sample.subject or sample.class_name or "").strip()
    return f"{subject} {part}".strip() if subject and subject not in part else part


# -- the selection rule (Appendix P) -------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def select_mask(candidates: list[np.ndarray], overlap: float = OVERLAP) -> np.ndarray | None:
    """Appendix P's rule on SAM's candidates: per detection (an array (k, H, W) of its k
    candidate masks), the candidates are grouped by overlap (IoU above `overlap`, linked
    transitively) and the smallest of each group is kept; across detections the largest of
    the kept masks is the part. None when there is no non-empty candidate."""
    kept: list[np.ndarray] = []
    for detection in candidates:
        masks = [m.astype(bool) for m in detection if m.any()]
        groups: list[list[int]] = []
        for i in range(len(masks)):
            linked = [g for g in groups if any(iou(masks[i], masks[j]) > overlap for j in g)]
            merged = [i] + [j for g in linked for j in g]
            groups = [g for g in groups if g not in linked] + [merged]
        kept += [min((masks[j] for j in g), key=lambda m: int(m.sum())) for g in groups]
    if not kept:
        return None
    return max(kept, key=lambda m: int(m.sum()))


def refine_polygon(mask: np.ndarray) -> np.ndarray:
    """The polygon refinement of the Grounded-SAM tutorial the paper follows: the mask becomes
    its largest outer contour, filled (holes closed, specks dropped)."""
    from skimage.draw import polygon as fill
    from skimage.measure import find_contours

    if not mask.any():
        return mask.astype(bool)
    padded = np.pad(mask.astype(float), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        return mask.astype(bool)

    def area(c: np.ndarray) -> float:
        y, x = c[:, 0], c[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))

    largest = max(contours, key=area) - 1
    out = np.zeros(mask.shape, bool)
    rr, cc = fill(largest[:, 0], largest[:, 1], shape=mask.shape)
    out[rr, cc] = True
    return out | (mask.astype(bool) & _on_contour(largest, mask.shape))


def _on_contour(contour: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The pixels a contour passes through (fill() leaves some boundary pixels out)."""
    out = np.zeros(shape[:2], bool)
    rows = np.clip(np.round(contour[:, 0]).astype(int), 0, shape[0] - 1)
    cols = np.clip(np.round(contour[:, 1]).astype(int), 0, shape[1] - 1)
    out[rows, cols] = True
    return out


# -- sources -------------------------------------------------------------------------------------


class FolderSource:
    """Masks made elsewhere: `<folder>/<sample-id>.png` (or `<sample-id>_mask.png`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.identity = {"source": "folder", "folder": str(self.folder.resolve())}
        self.random_weights = False

    def path(self, sample: Sample) -> Path:
        for name in (f"{sample.id}.png", f"{sample.id}_mask.png"):
            if (self.folder / name).is_file():
                return self.folder / name
        raise UserError(f"mask folder {self.folder} has no mask for sample {sample.id}")

    def __call__(self, sample: Sample, image: Image.Image) -> np.ndarray:
        return load_mask(self.path(sample), image.size)

    def fingerprint(self, sample: Sample) -> str:
        return hashlib.sha256(self.path(sample).read_bytes()).hexdigest()[:16]


@dataclass
class GroundedSam:
    """Grounding DINO boxes for the part phrase, SAM's candidate masks in each box, Appendix
    P's selection and the polygon refinement (an empty mask when nothing is detected)."""

    detector: Any
    detector_processor: Any
    sam: Any
    sam_processor: Any
    identity: dict[str, Any]
    random_weights: bool = False
    device: str = "cpu"

    @classmethod
    def load(cls, device: str = "cpu") -> GroundedSam:
        from transformers import (
            AutoModelForZeroShotObjectDetection,
            AutoProcessor,
            SamModel,
            SamProcessor,
        )

        detector_id = os.environ.get("PARTEDIT_BENCH_GROUNDING_DINO", GROUNDING_DINO)
        sam_id = os.environ.get("PARTEDIT_BENCH_SAM", SAM)
        detector, detector_processor = _pretrained(
            AutoModelForZeroShotObjectDetection,
            AutoProcessor,
            detector_id,
            "Grounding DINO",
            "PARTEDIT_BENCH_GROUNDING_DINO",
        )
        sam, sam_processor = _pretrained(
            SamModel, SamProcessor, sam_id, "SAM", "PARTEDIT_BENCH_SAM"
        )
        identity = {
            "source": "grounded-sam",
            "detector": _checkpoint_id(detector_id),
            "sam": _checkpoint_id(sam_id),
            "box_threshold": BOX_THRESHOLD,
            "overlap": OVERLAP,
            "rule": "smallest of each overlapping group per detection, largest across "
            "detections, polygon refinement (PartEdit App. P)",
        }
        return cls(
            detector.to(device),
            detector_processor,
            sam.to(device),
            sam_processor,
            identity,
            device=device,
        )

    @classmethod
    def tiny(cls, device: str = "cpu") -> GroundedSam:
        from partedit_bench.engine.tiny_segmenters import tiny_grounding_dino, tiny_sam

        detector, detector_processor = tiny_grounding_dino()
        sam, sam_processor = tiny_sam()
        identity = {
            "source": "tiny-grounded-sam",
            "weights": "random (seed 0)",
            "box_threshold": BOX_THRESHOLD,
            "overlap": OVERLAP,
        }
        return cls(
            detector.to(device),
            detector_processor,
            sam.to(device),
            sam_processor,
            identity,
            random_weights=True,
            device=device,
        )

    def __call__(self, sample: Sample, image: Image.Image) -> np.ndarray:
        import torch

        phrase = part_phrase(sample)
        text = phrase.lower().rstrip(".") + "."  # Grounding DINO's query form
        inputs = self.detector_processor(images=image, text=text, return_tensors="pt")
        with torch.no_grad():
            out = self.detector(**inputs.to(self.device))
        found = self.detector_processor.post_process_grounded_object_detection(
            out,
            inputs.input_ids,
            threshold=BOX_THRESHOLD,
            text_threshold=BOX_THRESHOLD,
            target_sizes=[image.size[::-1]],
        )[0]
        boxes = found["boxes"].tolist()
        if not boxes:
            return np.zeros((image.size[1], image.size[0]), bool)
        inputs = self.sam_processor(images=image, input_boxes=[boxes], return_tensors="pt")
        with torch.no_grad():
            out = self.sam(**inputs.to(self.device), multimask_output=True)
        masks = self.sam_processor.post_process_masks(
            out.pred_masks.cpu(),
            inputs["original_sizes"].cpu(),
            inputs["reshaped_input_sizes"].cpu(),
        )[0].numpy()  # (detections, candidates, H, W)
        chosen = select_mask(list(masks))
        if chosen is None:
            return np.zeros((image.size[1], image.size[0]), bool)
        return refine_polygon(chosen)


@dataclass
class Sam3Source:
    """SAM 3 with the part phrase as its text prompt: the highest-scoring instance above 0.5
    (one part of the main subject), binarized at 0.5; empty when none is found."""

    model: Any
    processor: Any
    identity: dict[str, Any]
    random_weights: bool = False
    device: str = "cpu"

    @classmethod
    def load(cls, device: str = "cpu") -> Sam3Source:
        from transformers import Sam3Model, Sam3Processor

        model_id = os.environ.get("PARTEDIT_BENCH_SAM3", SAM3)
        model, processor = _pretrained(
            Sam3Model, Sam3Processor, model_id, "SAM 3", "PARTEDIT_BENCH_SAM3"
        )
        identity = {"source": "sam3", "model": _checkpoint_id(model_id), "threshold": 0.5}
        return cls(model.to(device), processor, identity, device=device)

    def __call__(self, sample: Sample, image: Image.Image) -> np.ndarray:
        import torch

        inputs = self.processor(images=image, text=part_phrase(sample), return_tensors="pt")
        with torch.no_grad():
            out = self.model(**inputs.to(self.device))
        found = self.processor.post_process_instance_segmentation(
            out, threshold=0.5, mask_threshold=0.5, target_sizes=[image.size[::-1]]
        )[0]
        if len(found["scores"]) == 0:
            return np.zeros((image.size[1], image.size[0]), bool)
        best = int(torch.as_tensor(found["scores"]).argmax())
        return np.asarray(found["masks"][best].cpu(), dtype=bool)


def _checkpoint_id(name: str) -> str:
    return str(Path(name).resolve()) if Path(name).exists() else name


def _pretrained(model_cls: Any, processor_cls: Any, name: str, what: str, env: str) -> Any:
    """A model and its processor by hub id (cache first) or local folder, or one sentence
    saying what was looked for and how to get it."""
    try:
        try:
            model = model_cls.from_pretrained(name, local_files_only=True)
            processor = processor_cls.from_pretrained(name, local_files_only=True)
        except OSError:
            model = model_cls.from_pretrained(name)
            processor = processor_cls.from_pretrained(name)
    except Exception as exc:
        raise UserError(
            f"cannot load {what} from {name!r} ({type(exc).__name__}); download it with "
            f"`hf download {name}` or point {env} at a local folder"
        ) from exc
    return model.eval(), processor


def load_source(name: str, device: str = "cpu") -> Any:
    """A mask source other than `tokens` and `gt` (which the methods take from PartEdit and the
    runner): a folder, or a model source."""
    if name == "grounded-sam":
        return GroundedSam.load(device)
    if name == "tiny-grounded-sam":
        return GroundedSam.tiny(device)
    if name == "sam3":
        return Sam3Source.load(device)
    if name == "tiny-sam3":
        from partedit_bench.engine.tiny_segmenters import tiny_sam3

        model, processor = tiny_sam3()
        return Sam3Source(
            model.to(device),
            processor,
            {"source": "tiny-sam3", "weights": "random (seed 0)"},
            random_weights=True,
            device=device,
        )
    if Path(name).is_dir():
        return FolderSource(name)
    raise UserError(f"mask source {name!r} is not a model source or a folder")


def cached_mask(source: Any, sample: Sample, image: Image.Image) -> np.ndarray:
    """`source(sample, image)` through the mask cache: keyed on the source's identity (its
    checkpoints and settings), the sample's digest (fields and file bytes) and its query, so
    that a new checkpoint, image or phrase computes the mask again."""
    from partedit_bench.io import atomic_write_bytes, png_bytes
    from partedit_bench.paths import cache_root

    if isinstance(source, FolderSource):
        return source(sample, image)
    key = hashlib.sha256(
        json.dumps(
            {"source": source.identity, "sample": sample.digest(), "query": part_phrase(sample)},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:24]
    path = cache_root() / "masks" / f"{key}.png"
    if path.is_file():
        try:
            with Image.open(path) as img:
                cached = np.asarray(img.convert("L")) > 127
            if cached.shape == (image.size[1], image.size[0]):
                return cached
        except OSError:
            pass  # a damaged cache file is computed again
    mask = np.asarray(source(sample, image), dtype=bool)
    atomic_write_bytes(path, png_bytes(Image.fromarray(mask.astype(np.uint8) * 255)))
    return mask


class MaskInput:
    """The mask a method is given by its `mask_source` option: the GT mask the runner passes
    (`gt`), PartEdit's token mask (`tokens`, through `token_mask`, which the method supplies),
    a folder, or a model source (loaded on first use; masks cached)."""

    def __init__(self, name: str, device: str = "cpu", token_mask: Any = None):
        self.name, self.device, self.token_mask = name, device, token_mask
        self._source: Any = None

    @property
    def source(self) -> Any:
        if self._source is None:
            self._source = load_source(self.name, self.device)
        return self._source

    @property
    def random_weights(self) -> bool:
        return self.name in MODEL_SOURCES and bool(self.source.random_weights)

    def __call__(self, request: Any) -> np.ndarray:
        """The binary (H, W) mask at the request's image size."""
        if self.name == "gt":
            if request.mask is None:
                raise UserError(f"sample {request.sample.id}: mask_source=gt needs a GT mask")
            return np.asarray(request.mask, dtype=bool)
        if self.name == "tokens":
            return np.asarray(self.token_mask(request), dtype=bool)
        return cached_mask(self.source, request.sample, request.image)

    def fingerprint(self, sample: Sample) -> dict[str, Any]:
        """What makes the sample's mask, for the job hash (the GT mask is in the sample's own
        digest already)."""
        if self.name in ("gt", "tokens"):
            return {"mask_source": self.name}
        if isinstance(self.source, FolderSource):
            return {"mask_source": "folder", "mask": self.source.fingerprint(sample)}
        return {"mask_source": self.source.identity}
