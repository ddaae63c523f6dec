"""The sample schema (field names follow the published PartEdit-Bench dataset) and the
checked loading of images and masks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from partedit_bench.errors import UserError, safe_name

#: The paper's seven parts; every imported part name is mapped onto one of these.
#: a part token in a prompt, `<humanoid-head>`: group 1 is the text between the brackets
PART_TOKEN = re.compile(r"<([^<>]+)>")


def write_part_words(prompt: str, words: str | Callable[[str], str]) -> str:
    """`prompt` with each part token written as plain words: `words`, or `words(token)`
    (`a man with a robotic <humanoid-head>` -> `a man with a robotic head`)."""
    if isinstance(words, str):
        return PART_TOKEN.sub(lambda m: words, prompt)
    return PART_TOKEN.sub(lambda m: words(m.group(1)), prompt)


CANONICAL_PARTS = (
    "humanoid-head",
    "humanoid-torso",
    "human-hair",
    "animal-head",
    "car-body",
    "car-hood",
    "chair-seat",
)

SPLITS = ("synth", "real")


@dataclass
class Sample:
    """One benchmark item.

    Paths are absolute once a suite is loaded. `extra` keeps any field of an import verbatim
    (e.g. the published dataset's own `partedit` output, or PartWorld's exact `gt_edited_image`).
    """

    id: str
    split: str
    class_name: str
    part: str
    part_token: str
    subject: str = ""
    edit: str = ""
    prompt_original: str = ""
    prompt_changed: str = ""
    p2p_prompt: str = ""
    p2p_template: str = ""
    instructp2p_edit: list[str] = field(default_factory=list)
    blend_words: list[str] = field(default_factory=list)
    seed: int = 0
    original_image: str = ""
    gt_mask: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Sample:
        """Builds a sample from a suite entry; unknown fields go to `extra`."""
        if not isinstance(data, dict):
            raise UserError(f"{where}: a sample must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names and k != "extra"}
        extra = dict(data.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in names})
        missing = [k for k in ("id", "split", "class_name", "part", "part_token") if k not in known]
        if missing:
            raise UserError(f"{where}: sample is missing field(s) {', '.join(missing)}")
        known["id"] = safe_name(known["id"], f"{where}: sample id")
        if known["split"] not in SPLITS:
            raise UserError(f"{where}: split must be one of {SPLITS}, got {known['split']!r}")
        if known["part_token"] not in CANONICAL_PARTS:
            raise UserError(
                f"{where}: unknown part token {known['part_token']!r} "
                f"(canonical: {', '.join(CANONICAL_PARTS)})"
            )
        if "seed" in known:
            seed = known["seed"]
            if isinstance(seed, str) and seed.strip().isdigit():
                seed = int(seed)
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise UserError(f"{where}: seed must be a non-negative integer, got {seed!r}")
            known["seed"] = seed
        if isinstance(known.get("instructp2p_edit"), str):
            known["instructp2p_edit"] = [known["instructp2p_edit"]]
        try:
            return cls(**known, extra=extra)
        except TypeError as exc:
            raise UserError(f"{where}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of every field and of the bytes of the files the sample points to."""
        h = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode())
        for path in (self.original_image, self.gt_mask):
            if path:
                try:
                    h.update(Path(path).read_bytes())
                except OSError:  # the job itself then fails with the reason, the run goes on
                    h.update(f"unreadable:{path}".encode())
        return h.hexdigest()[:16]


def load_image(path: str | Path) -> Image.Image:
    """Loads an 8-bit RGB image.

    Grayscale and palette images are converted to RGB. An RGBA image is converted only when it
    is fully opaque; transparent pixels have no color to edit, so such an image is refused, as
    is a 16-bit image (its precision would be silently lost).

    Raises:
        UserError: missing, unreadable, 16-bit, or transparent image.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F") or _png_bit_depth(path) == 16:
                raise UserError(f"image {path} is 16-bit ({mode}); save it as 8-bit RGB")
            return opaque_rgb(img, f"image {path}")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from exc


def opaque_rgb(img: Image.Image, what: str) -> Image.Image:
    """`img` as RGB; an image with transparent pixels is refused (they have no color to edit),
    a fully opaque RGBA one converted.

    Raises:
        UserError: transparent pixels, naming `what`.
    """
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if np.asarray(rgba)[..., 3].min() < 255:
            raise UserError(
                f"{what} has transparent pixels; flatten it onto a background "
                "and save it as RGB (refused, not guessed)"
            )
        return rgba.convert("RGB")
    return img.convert("RGB")


def _png_bit_depth(path: Path) -> int:
    """The bit depth field of a PNG's IHDR chunk (PIL reads 16-bit RGB as 8-bit silently)."""
    with open(path, "rb") as fh:
        head = fh.read(25)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return 8


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Loads a single-channel binary mask (0/255 or 0/1 values; 0/65535 in 16 bits; a palette
    image by its shown gray levels) as a bool array (H, W).

    Args:
        path: a PNG mask file.
        size: the (width, height) of the image it belongs to; must match exactly.

    Raises:
        UserError: missing/unreadable file, several channels, values other than two levels,
            or a size that differs from the image's.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"mask not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            mode, img_size = img.mode, img.size
            if mode == "P":  # what it shows, not its palette indices (white = part)
                array = np.asarray(img.convert("L"))
            else:
                array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read mask {path}: {exc}") from exc
    if mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise UserError(f"mask {path} has mode {mode}; a mask must be single-channel")
    if size is not None and img_size != tuple(size):
        raise UserError(
            f"mask {path} is {img_size[0]}x{img_size[1]} but its image is {size[0]}x{size[1]}"
        )
    values = np.unique(array)
    levels = set(values.tolist())
    top = 65535 if mode.startswith("I") else 255  # 16-bit masks: 0 / 65535 as well
    if mode != "1" and not (levels <= {0, 1} or levels <= {0, 255} or levels <= {0, top}):
        shown = ", ".join(str(v) for v in values[:6])
        raise UserError(f"mask {path} is not binary (values {shown}...); use 0 and 255")
    return array > 0
