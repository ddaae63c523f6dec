"""Suites: versioned YAML definitions under `benchmark_data/<suite>/suite.yaml`.

A suite file holds `name`, `version`, `description`, optionally `include:` (another suite
file, relative path; this file's keys override it), `synthetic_source:` (the backbone and
generation settings that made its images, which lets methods regenerate the source), and
either `samples:` (a list of sample mappings, paths relative to the file), `samples_file:`
(a JSON-lines file of the same), or `generator:` (a procedural builder such as PartWorld).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from partedit_bench.data.generated import generate_samples
from partedit_bench.data.schema import Sample, load_image, load_mask
from partedit_bench.errors import UserError, did_you_mean
from partedit_bench.io import atomic_write_bytes, png_bytes
from partedit_bench.outputs import resolved
from partedit_bench.paths import cache_root, data_root

#: Extra sample fields that hold image paths (relative to the suite file, like the others).
EXTRA_IMAGE_FIELDS = ("gt_edited_image", "partedit")


@dataclass
class Suite:
    """A loaded suite: its definition and its samples (paths absolute)."""

    name: str
    version: str
    description: str
    path: Path
    samples: list[Sample]
    synthetic_source: dict[str, Any] | None = None
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> list[str]:
        return sorted({s.part_token for s in self.samples})

    def is_synthetic_for(self, backbone_name: str) -> bool:
        """True when this backbone generated the images (methods may regenerate the source)."""
        return (self.synthetic_source or {}).get("backbone") == backbone_name

    def validate_files(self) -> None:
        """Checks every image and mask: readable, RGB-convertible, mask size and values."""
        for sample in self.samples:
            image = load_image(sample.original_image)
            if sample.gt_mask:
                load_mask(sample.gt_mask, image.size)
            target = sample.extra.get("gt_edited_image")
            if target:
                edited = load_image(target)
                if edited.size != image.size:
                    raise UserError(
                        f"{target}: size differs from its source {sample.original_image}"
                    )


def available_suites() -> dict[str, Path]:
    """Suite name -> definition file, for every `benchmark_data/<name>/suite.yaml`."""
    root = data_root()
    if not root.is_dir():
        return {}
    return {p.parent.name: p for p in sorted(root.glob("*/suite.yaml"))}


def read_definition(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Reads a suite YAML, resolving `include:` (the including file's keys win)."""
    path = resolved(path)
    if path in _seen:
        raise UserError(f"suite include cycle: {' -> '.join(str(p) for p in (*_seen, path))}")
    if not path.is_file():
        raise UserError(f"suite file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"malformed suite file {path}{where}: {problem}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"suite file {path} is not a text (UTF-8) file: {exc.reason}") from exc
    if not isinstance(data, dict):
        raise UserError(f"malformed suite file {path}: expected a mapping at the top level")
    base: dict[str, Any] = {}
    include = data.pop("include", None)
    if include:
        base = read_definition(path.parent / str(include), (*_seen, path))
    data.setdefault("_dir", str(path.parent))
    return {**base, **data}


def load_suite(name_or_path: str) -> Suite:
    """Loads a suite by registry name, suite folder, or YAML file."""
    known = available_suites()
    if name_or_path in known:
        path = known[name_or_path]
    else:
        candidate = Path(name_or_path)
        if candidate.is_dir() and (candidate / "suite.yaml").is_file():
            path = candidate / "suite.yaml"
        elif candidate.suffix in (".yaml", ".yml") and candidate.exists():
            path = candidate
        else:
            raise UserError(f"unknown suite '{name_or_path}'{did_you_mean(name_or_path, known)}")
    definition = read_definition(path)
    for key in ("name", "version"):
        if key not in definition:
            raise UserError(f"malformed suite file {path}: missing '{key}'")
    base_dir = Path(definition["_dir"])
    if "generator" in definition:
        samples = generate_samples(definition["generator"], path)
    elif "samples" in definition or "samples_file" in definition:
        entries = definition.get("samples")
        if entries is None:
            entries = _read_jsonl(base_dir / definition["samples_file"])
        if not isinstance(entries, list):
            raise UserError(f"malformed suite file {path}: 'samples' must be a list")
        samples = [
            _with_absolute_paths(Sample.from_dict(e, f"{path} sample {i}"), base_dir)
            for i, e in enumerate(entries)
        ]
    else:
        raise UserError(
            f"malformed suite file {path}: needs 'samples', 'samples_file' or 'generator'"
        )
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise UserError(f"malformed suite file {path}: duplicate sample ids {', '.join(dup[:5])}")
    return Suite(
        name=str(definition["name"]),
        version=str(definition["version"]),
        description=str(definition.get("description", "")),
        path=path.resolve(),
        samples=samples,
        synthetic_source=definition.get("synthetic_source"),
        definition={k: v for k, v in definition.items() if not k.startswith("_")},
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"samples file not found: {path}")
    rows = []
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise UserError(f"samples file {path} is not a text (UTF-8) file: {exc.reason}") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"malformed samples file {path} line {number}: {exc.msg}") from exc
    return rows


def package_image(uri: str) -> Path:
    """A photo that ships inside an installed package, `pkg:skimage/astronaut` or
    `pkg:matplotlib/grace_hopper.jpg`, written once as a PNG into the cache (not the repo)."""
    package, _, name = uri.removeprefix("pkg:").partition("/")
    out = cache_root() / "package-images" / f"{package}-{Path(name).stem}.png"
    if out.is_file():
        return out
    try:
        if package == "skimage":
            import skimage.data

            pixels = np.asarray(getattr(skimage.data, name)())
        elif package == "matplotlib":
            import matplotlib

            with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / name) as img:
                pixels = np.asarray(img.convert("RGB"))
        else:
            raise UserError(f"unknown package image source '{package}' (skimage, matplotlib)")
    except (ImportError, AttributeError, OSError) as exc:
        raise UserError(f"cannot load package image {uri}: {exc}") from exc
    atomic_write_bytes(out, png_bytes(Image.fromarray(pixels)))
    return out


def _with_absolute_paths(sample: Sample, base: Path) -> Sample:
    if not sample.original_image:
        raise UserError(f"sample {sample.id}: no original_image")
    if sample.original_image.startswith("pkg:"):
        sample.extra.setdefault("image_source", sample.original_image)
        sample.original_image = str(package_image(sample.original_image))
    else:
        sample.original_image = str(resolved(base / sample.original_image))
    if sample.gt_mask:
        sample.gt_mask = str(resolved(base / sample.gt_mask))
    for key in EXTRA_IMAGE_FIELDS:
        if sample.extra.get(key):
            sample.extra[key] = str(resolved(base / sample.extra[key]))
    return sample
