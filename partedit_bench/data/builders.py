"""Suites built from other things: PartEdit-Synth images from a backbone (`data build-synth`),
masks attached from annotation files (`data import-masks`), the published PartEdit-Bench
(`data import-hf`), and token-training data from PartImageNet (`data import-parts`)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from partedit_bench.data.masks import (
    coco_segmentation_to_mask,
    mask_to_image,
    polygons_to_mask,
)
from partedit_bench.data.schema import CANONICAL_PARTS, Sample, load_image, load_mask
from partedit_bench.data.suites import data_root, load_suite, read_definition, read_yaml
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, png_bytes

#: (class name, part name) as other datasets and the official token files spell them.
PART_ALIASES: dict[str, str] = {
    "human_head": "humanoid-head",
    "biped_head": "humanoid-head",
    "humanoid_head": "humanoid-head",
    "person_head": "humanoid-head",
    "human_hair": "human-hair",
    "person_hair": "human-hair",
    "hair": "human-hair",
    "human_torso": "humanoid-torso",
    "human_torso_custom": "humanoid-torso",
    "humanoid_torso": "humanoid-torso",
    "humanoid_hair": "human-hair",
    "torso_custom": "humanoid-torso",
    "biped_torso": "humanoid-torso",
    "person_torso": "humanoid-torso",
    "quadruped_head": "animal-head",
    "animal_head": "animal-head",
    "carbody": "car-body",
    "car_body": "car-body",
    "carhood_custom": "car-hood",
    "car_hood": "car-hood",
    "carhood": "car-hood",
    "chair_custom": "chair-seat",
    "chair_seat": "chair-seat",
}
HUMAN_CLASSES = {"human", "humanoid", "person", "man", "woman", "biped"}
ANIMAL_CLASSES = {"quadruped", "animal", "dog", "cat", "cow", "horse", "sheep", "bird"}


def canonical_part(*names: Any) -> str | None:
    """Maps a dataset's (class_name, part) or a token file name onto a canonical part."""
    for name in names:
        if not name:
            continue
        text = str(name).strip().lower().replace("-", "_").replace(" ", "_").strip("<>")
        if text.replace("_", "-") in CANONICAL_PARTS:
            return text.replace("_", "-")
        if text in PART_ALIASES:
            return PART_ALIASES[text]
    cls = str(names[0] or "").lower() if names else ""
    part = str(names[1] or "").lower() if len(names) > 1 else ""
    if part in ("head", "face"):
        if cls in HUMAN_CLASSES:
            return "humanoid-head"
        if cls in ANIMAL_CLASSES:
            return "animal-head"
    if cls in HUMAN_CLASSES and part in ("torso", "body"):
        return "humanoid-torso"
    if cls == "car" and part in ("body", "hood"):
        return f"car-{part}"
    if cls == "chair" and part == "seat":
        return "chair-seat"
    if part == "hair" and (cls in HUMAN_CLASSES or cls.endswith("hair")):
        return "human-hair"
    return None


HUMAN_SUBJECTS = {"man", "woman", "person", "boy", "girl", "child", "lady", "guy", "people"}


def partedit_prompt(prompt: str, edit: str, part: str, token: str) -> str | None:
    """The dataset's edit prompt with the part token: the part words after the edit become
    `<token>` ("a dog with cat head running" -> "a dog with cat <animal-head> running"), as
    the official demo builds "with <edit> <part>"; else the last whole-word occurrence of the
    part words; None when the part words are not in the prompt."""
    if re.search(r"<[^<>]+>", prompt):
        return prompt
    if not part:
        return None
    for pattern in (
        rf"(?<![\w-])({re.escape(edit)}\s+){re.escape(part)}(?![\w-])" if edit else None,
        rf"(?<![\w-])(){re.escape(part)}(?![\w-])",
    ):
        if pattern is None:
            continue
        found = list(re.finditer(pattern, prompt))
        if found:
            m = found[-1]
            return prompt[: m.start()] + m.group(1) + f"<{token}>" + prompt[m.end() :]
    return None


def _names(text: str, words: str) -> bool:
    return (
        bool(words) and re.search(rf"(?<![\w-]){re.escape(words)}(?![\w-])", text, re.I) is not None
    )


def p2p_pair(row: dict[str, Any]) -> tuple[str, str] | None:
    """(source, target) of Prompt-to-Prompt from a published row, by content rather than by
    field name: the target is the dataset's `p2p_prompt` or `p2p_template` that names the
    edit (in the published rows `p2p_prompt` is the edited text, "A bear with tiger head at a
    pool"); the source is the other one when it is a plain prompt that does not name the edit,
    else `prompt_original`. None when neither names the edit."""
    edit = str(row.get("edit") or "")
    texts = [str(row.get(k) or "").strip() for k in ("p2p_prompt", "p2p_template")]
    original = str(row.get("prompt_original") or "")
    for target, other in (texts, texts[::-1]):
        if target and _names(target, edit):
            plain = other and not _names(other, edit) and not re.search(r"[{}\[\]<>]", other)
            return (other if plain else original), target
    return None


def label_warning(part_token: str, subject: str) -> str | None:
    """A row whose part class contradicts its subject (the published real row 6 is labelled
    animal_head but shows a man): reported, never guessed."""
    words = set(re.findall(r"[a-z]+", subject.lower()))
    if part_token == "animal-head" and words & HUMAN_SUBJECTS:
        return f"labelled {part_token} but its subject is '{subject}'"
    return None


# ---------------------------------------------------------------------------------------
# Folders of samples


def write_files_suite(
    folder: Path, definition: dict[str, Any], samples: Iterable[Sample], readme: str | None = None
) -> Path:
    """Writes `suite.yaml` + `samples.jsonl` (paths relative to the folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for sample in samples:
        data = sample.to_dict()
        for key in ("original_image", "gt_mask"):
            if data[key]:
                data[key] = _relative(Path(data[key]), folder)
        for key, value in list(data["extra"].items()):
            if isinstance(value, str) and value.startswith(str(folder)):
                data["extra"][key] = _relative(Path(value), folder)
        lines.append(json.dumps(data, sort_keys=True))
    atomic_write_bytes(folder / "samples.jsonl", ("\n".join(lines) + "\n").encode())
    definition = {**definition, "samples_file": "samples.jsonl"}
    atomic_write_bytes(folder / "suite.yaml", yaml.safe_dump(definition, sort_keys=False).encode())
    if readme is not None:
        atomic_write_bytes(folder / "README.md", readme.encode())
    return folder / "suite.yaml"


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


# ---------------------------------------------------------------------------------------
# build-synth


def build_synth(
    suite_name: str,
    backbone_name: str,
    output: str | None = None,
    steps: int = 50,
    guidance: float = 7.5,
    device: str = "auto",
    dtype: str = "auto",
    limit: int | None = None,
    console: Any = None,
) -> tuple[Path, list[str]]:
    """Renders the source image of every sample of a prompt-config suite with a backbone
    (text-to-image from `prompt_original`, a CPU generator seeded with the sample's `seed`),
    resumably, and writes a suite that records the backbone and settings. Returns the suite
    file and the ids that still need a GT mask."""
    import torch
    from rich.progress import Progress

    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.runner import Shard, pick_device

    suite = load_suite(suite_name)
    if suite.definition.get("generator", {}).get("type") != "prompt-config":
        raise UserError(
            f"suite '{suite.name}' is not a prompt-config suite (build-synth renders "
            "the images of partedit-synth-style suites)"
        )
    backbone = load_backbone(backbone_name, pick_device(device, Shard(0, 1)), dtype)
    short = Path(backbone_name).name
    folder = Path(output) if output else data_root() / f"{suite.name}@{short}"
    previous = {}
    if (folder / "samples.jsonl").is_file():
        for line in (folder / "samples.jsonl").read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                previous[entry["id"]] = entry
    pipe = backbone.pipeline()
    samples = suite.samples[:limit] if limit else suite.samples
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"build {suite.name} on {short}", total=len(samples))
        for sample in samples:
            path = folder / "images" / f"{sample.id}.png"
            if not path.is_file():
                generator = torch.Generator("cpu").manual_seed(sample.seed)
                image = pipe(
                    sample.prompt_original,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=generator,
                    height=backbone.resolution,
                    width=backbone.resolution,
                ).images[0]
                atomic_write_bytes(path, png_bytes(image))
            sample.original_image = str(path)
            mask = previous.get(sample.id, {}).get("gt_mask")
            sample.gt_mask = str(folder / mask) if mask else ""
            progress.advance(task)
    source = {
        "backbone": backbone_name,
        "fingerprint": backbone.fingerprint,
        "steps": steps,
        "guidance": guidance,
        "resolution": backbone.resolution,
        "scheduler": type(backbone.components["scheduler"]).__name__,
        "generator": "torch.Generator('cpu').manual_seed(sample.seed)",
        "prompt": "prompt_original",
        "random_weights": backbone.random_weights,
    }
    definition = {
        "name": f"{suite.name}@{short}",
        "version": suite.version,
        "description": f"{suite.description} Images built by {backbone_name}.",
        "synthetic_source": source,
    }
    readme = (
        f"# {definition['name']}\n\nSource images of `{suite.name}` built by "
        f"`partedit-bench data build-synth --backbone {backbone_name}`.\n\n"
        f"Settings: `{json.dumps(source)}`\n\nGT masks: attach with "
        f"`partedit-bench data import-masks {folder} SOURCE`.\n"
    )
    suite_file = write_files_suite(folder, definition, samples, readme)
    return suite_file, [s.id for s in samples if not s.gt_mask]


# ---------------------------------------------------------------------------------------
# import-masks


def import_masks(
    suite_path: str, source: str, fmt: str = "auto", label: str | None = None
) -> tuple[int, list[str]]:
    """Attaches GT masks to a files suite from PNGs (`<id>.png` or `<id>_mask.png`), a COCO
    JSON (polygons or RLE; images matched by file stem), or LabelMe JSON files (`<id>.json`).
    Returns (attached, ids still without a mask)."""
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
    attached = 0
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
        path = folder / "masks" / f"{sample.id}.png"
        atomic_write_bytes(path, png_bytes(mask_to_image(mask)))
        sample.gt_mask = str(path)
        attached += 1
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


# ---------------------------------------------------------------------------------------
# import-hf: the published PartEdit-Bench layout

HF_FIELDS = (
    "subject",
    "edit",
    "part",
    "class_name",
    "prompt_original",
    "prompt_changed",
    "p2p_prompt",
    "p2p_template",
    "seed",
)


def import_hf(
    source: str | list[str],
    name: str = "partedit-bench-hf",
    output: str | None = None,
    version: str | None = None,
    revision: str | None = None,
    split: str | None = None,
) -> tuple[Path, int, list[str]]:
    """Imports the published PartEdit-Bench (fields: id, original_image, partedit, subject,
    edit, part, gt_mask, class_name, prompt_original, prompt_changed, p2p_prompt, p2p_template,
    instructp2p_edit1..3, seed, token_cls) from a `save_to_disk` folder, parquet files, or a hub
    id; images and masks become PNGs, parts are mapped to canonical names, the dataset's own
    `partedit` output is kept (scorable with `import-edits --from-field partedit`). An edit
    prompt without part-token markup gets its part words after the edit as the token (the
    dataset's text is kept as `prompt_changed_dataset`). Returns (suite file, count, rows
    whose labels contradict their text).

    Splits come from the dataset card's `configs` when the folder has one, else from the
    files' names or folders (`synth-*.parquet`, `refs/convert/parquet`'s `default/real/`),
    else from `split`; a file whose split cannot be told stops the import. `revision` picks a
    hub revision (a hub id, or a hub cache folder holding several snapshots)."""
    sources = [source] if isinstance(source, str) else list(source)
    splits: dict[str, list[dict[str, Any]]] = {}
    for one in sources:  # bad sources stop before anything is written
        for split_name, rows in _load_dataset_splits(one, revision, split).items():
            splits.setdefault(split_name, []).extend(rows)
    source = ", ".join(sources)
    folder = Path(output) if output else data_root() / name
    # built in a staging folder and swapped in whole: a failed import leaves nothing behind
    staging = folder.with_name(f".{folder.name}.importing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        count, warnings = _import_hf_rows(splits, source, name, version, folder, staging)
        replaced = folder.with_name(f".{folder.name}.replaced-{os.getpid()}")
        if folder.exists():
            folder.rename(replaced)
        staging.rename(folder)
        shutil.rmtree(replaced, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder / "suite.yaml", count, warnings


def _import_hf_rows(
    splits: dict[str, list[dict[str, Any]]],
    source: str,
    name: str,
    version: str | None,
    final: Path,
    folder: Path,
) -> tuple[int, list[str]]:
    """Writes the suite of `splits` into `folder` (the staging folder of `final`)."""
    samples: list[Sample] = []
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for split_name, rows in splits.items():
        split = "real" if "real" in split_name else "synth"
        for index, row in enumerate(rows):
            sample_id = f"{split}-{row.get('id', index)}"
            where = f"{source} {split_name} row {index}"
            if sample_id in seen:
                raise UserError(
                    f"{where}: sample id {sample_id} again (first in {seen[sample_id]}): "
                    "splits whose ids overlap were read as one split"
                )
            seen[sample_id] = where
            part = canonical_part(row.get("token_cls"), row.get("class_name"), row.get("part"))
            if part is None:
                part = canonical_part(row.get("class_name"), row.get("part"))
            if part is None:
                raise UserError(
                    f"{source} {split_name} row {index}: cannot map part "
                    f"{row.get('part')!r} of class {row.get('class_name')!r} "
                    "to a canonical part"
                )
            image = _as_image(row["original_image"], f"{split_name} row {index} original_image")
            image_path = folder / "images" / f"{sample_id}.png"
            atomic_write_bytes(image_path, png_bytes(image.convert("RGB")))
            mask_path = ""
            if row.get("gt_mask") is not None:
                levels = np.asarray(_as_image(row["gt_mask"], "gt_mask").convert("L"))
                mask = levels > (0 if levels.max() <= 1 else 127)  # 0/1 and 0/255 alike
                if mask.shape != (image.size[1], image.size[0]):
                    raise UserError(
                        f"{split_name} row {index}: mask {mask.shape[::-1]} vs image {image.size}"
                    )
                mask_path = str(folder / "masks" / f"{sample_id}.png")
                atomic_write_bytes(Path(mask_path), png_bytes(mask_to_image(mask)))
            extra: dict[str, Any] = {"source_split": split_name}
            if row.get("token_cls") is not None:
                extra["token_cls"] = row["token_cls"]
            if row.get("partedit") is not None:
                out = folder / "partedit" / f"{sample_id}.png"
                atomic_write_bytes(
                    out, png_bytes(_as_image(row["partedit"], "partedit").convert("RGB"))
                )
                extra["partedit"] = str(out)
            entry: dict[str, Any] = {k: str(row[k]) for k in HF_FIELDS if row.get(k) is not None}
            entry.update(
                id=sample_id,
                split=split,
                part_token=part,
                seed=_row_seed(row, f"{source} {split_name} row {index}"),
                class_name=str(row.get("class_name") or ""),
                part=str(row.get("part") or ""),
                instructp2p_edit=[
                    row[k]
                    for k in ("instructp2p_edit1", "instructp2p_edit2", "instructp2p_edit3")
                    if row.get(k)
                ],
                original_image=str(image_path),
                gt_mask=mask_path,
                extra=extra,
            )
            pair = p2p_pair(row)
            if pair is not None:  # this project's meaning: p2p_prompt -> p2p_template
                for key in ("p2p_prompt", "p2p_template"):
                    if key in entry:
                        extra[f"{key}_dataset"] = entry[key]
                entry["p2p_prompt"], entry["p2p_template"] = pair
            if "prompt_changed" in entry:  # part tokens in the canonical spelling
                text = entry["prompt_changed"]
                edit_words, part_words = str(row.get("edit") or ""), str(row.get("part") or "")
                built = partedit_prompt(text, edit_words, part_words, part)
                if built is None and pair is not None:
                    # the published prompt_changed swaps the subject ("A tiger at a pool"): the
                    # part edit is the text that names "<edit> <part>"
                    built = partedit_prompt(pair[1], edit_words, part_words, part)
                if built is not None and built != text:
                    extra["prompt_changed_dataset"] = text  # the dataset's own words
                    text = built
                entry["prompt_changed"] = re.sub(
                    r"<([^<>]+)>",
                    lambda m: f"<{canonical_part(m.group(1)) or m.group(1)}>",
                    text,
                )
            warning = label_warning(part, str(row.get("subject") or ""))
            if warning:
                extra["label_warning"] = warning
                warnings.append(f"{split_name} row {index} (id {row.get('id', index)}): {warning}")
            samples.append(Sample.from_dict(entry, f"{source} {split_name} row {index}"))
    definition = {
        "name": name,
        "version": version or "imported-1",
        "description": f"PartEdit-Bench imported from {source}",
        "origin": str(source),
        "license": "creativeml-openrail-m (the dataset's)",
    }
    readme = (
        f"# {name}\n\nThe published PartEdit-Bench, imported with `partedit-bench data "
        f"import-hf {source}`. {len(samples)} samples (splits: {', '.join(splits)}). "
        "License: creativeml-openrail-m, as the dataset. The dataset's own PartEdit outputs "
        "are in `partedit/`; score them as a row with `partedit-bench import-edits "
        f"--suite {final} --from-field partedit --name partedit-official`.\n"
    )
    if warnings:
        readme += "\nRows whose labels contradict their text (kept as labelled):\n\n"
        readme += "".join(f"- {w}\n" for w in warnings)
    write_files_suite(folder, definition, samples, readme)
    return len(samples), warnings


SPLITS = ("synth", "real")


def _hub_snapshot(path: Path, revision: str | None) -> Path | None:
    """A hub cache folder (`datasets--owner--name` with `refs/` and `snapshots/`, or a cache
    root holding exactly one such folder) -> the snapshot of `revision` (a branch or tag name
    under refs/, or a commit hash or its prefix; default main); None when `path` is not one."""
    if not (path / "snapshots").is_dir():
        repos = [p for p in path.glob("datasets--*") if (p / "snapshots").is_dir()]
        if len(repos) != 1:
            return None
        path = repos[0]
    snapshots = sorted(p.name for p in (path / "snapshots").iterdir() if p.is_dir())
    wanted = revision or "main"
    ref = path / "refs" / wanted
    if ref.is_file():
        commit = ref.read_text().strip()
    else:
        matches = [c for c in snapshots if c.startswith(wanted)]
        if len(matches) != 1:
            refs = (
                sorted(p.name for p in (path / "refs").glob("*"))
                if (path / "refs").is_dir()
                else []
            )
            raise UserError(
                f"{path}: no snapshot for revision {wanted!r} (refs: {', '.join(refs) or 'none'}; "
                f"snapshots: {', '.join(c[:8] for c in snapshots) or 'none'}); pass --revision"
            )
        commit = matches[0]
    if commit not in snapshots:
        raise UserError(f"{path}: revision {wanted!r} points at {commit[:8]}, not in snapshots/")
    return path / "snapshots" / commit


def _card_splits(folder: Path) -> dict[str, list[str]] | None:
    """split -> parquet files from the dataset card's `configs` (its README.md front matter),
    the default config (else the first); None without a card or configs."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    match = re.match(r"---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return None
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{card}: unreadable card metadata ({exc})") from exc
    configs = meta.get("configs") if isinstance(meta, dict) else None
    if not isinstance(configs, list) or not configs:
        return None
    chosen = next(
        (c for c in configs if isinstance(c, dict) and c.get("config_name") == "default"),
        configs[0],
    )
    entries = chosen.get("data_files") if isinstance(chosen, dict) else None
    if not isinstance(entries, list):
        return None
    splits: dict[str, list[str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "split" not in entry:
            continue
        patterns = entry.get("path") or []
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            found = sorted(str(p) for p in folder.glob(str(pattern)) if p.is_file())
            splits.setdefault(str(entry["split"]), []).extend(found)
    splits = {k: v for k, v in splits.items() if v}
    return splits or None


def _split_of(file: Path, root: Path) -> str | None:
    """A parquet file's split from its folders (`default/real/0000.parquet`) or its name
    (`real-00000-of-00001.parquet`); None when neither names one."""
    try:
        parts = file.relative_to(root).parts[:-1]
    except ValueError:
        parts = ()
    for part in reversed(parts):
        if part in SPLITS:
            return part
    found = re.findall(r"(?<![a-z])(synth|real)(?![a-z])", file.stem.lower())
    return found[0] if len(set(found)) == 1 else None


def _load_dataset_splits(
    source: str, revision: str | None = None, split: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    import datasets

    path = Path(source)
    try:
        if path.is_dir():
            path = _hub_snapshot(path, revision) or path
        if path.is_dir() and (
            (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        ):
            data = datasets.load_from_disk(str(path))
            if isinstance(data, datasets.Dataset):
                name = split or (str(data.split) if data.split else None)
                if name is None:
                    raise UserError(
                        f"{source}: a single-split dataset that does not record its split; "
                        "pass --split synth or --split real"
                    )
                data = datasets.DatasetDict({name: data})
        elif path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
            by_split = (_card_splits(path) if path.is_dir() else None) or {}
            if not by_split:
                root = path if path.is_dir() else path.parent.parent  # a file: its folder too
                files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
                for f in files:
                    name = split or _split_of(f, root)
                    if name is None:
                        raise UserError(
                            f"{f}: cannot tell its split (neither its name nor its folder says "
                            "synth or real, and no dataset card maps it); pass --split"
                        )
                    by_split.setdefault(name, []).append(str(f))
            data = datasets.load_dataset("parquet", data_files=by_split)
        elif path.exists():
            raise UserError(f"{source}: expected a save_to_disk folder or parquet files")
        else:
            data = datasets.load_dataset(source, revision=revision)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"cannot load dataset {source} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); pass a local folder or "
            "parquet files when offline"
        ) from exc
    if isinstance(data, datasets.Dataset):
        data = datasets.DatasetDict({split or "synth": data})
    return {name: list(rows) for name, rows in data.items()}


def _row_seed(row: dict[str, Any], where: str) -> int:
    value = row.get("seed")
    try:
        return int(value or 0)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: seed {value!r} is not an integer") from exc


def _as_image(value: Any, what: str) -> Image.Image:
    import io

    try:
        if isinstance(value, Image.Image):
            value.load()
            return value
        if isinstance(value, dict) and value.get("bytes"):
            image = Image.open(io.BytesIO(value["bytes"]))
            image.load()
            return image
        if isinstance(value, dict) and value.get("path"):
            image = Image.open(value["path"])
            image.load()
            return image
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"{what}: unreadable image ({type(exc).__name__}: {exc})") from exc
    raise UserError(f"{what}: not an image ({type(value).__name__})")


# ---------------------------------------------------------------------------------------
# import-parts: token-training data from PartImageNet (COCO-style JSON)

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
    folder = Path(output)
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
    out = folder / "masks" / f"{sample_id}.png"
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
) -> tuple[Path, int]:
    """A token-training suite from PASCAL-Part: each `Annotations_Part/<image>.mat` (the
    release's `anno.objects(i).parts(j).{part_name, mask}` structs, read with scipy), its
    JPEG from `images` (VOC's JPEGImages); one sample per (image, object, canonical part)."""
    import scipy.io

    files = sorted(Path(annotations).glob("*.mat"))
    if not files:
        raise UserError(f"no PASCAL-Part .mat files in {annotations}")
    folder = Path(output)
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


# ---------------------------------------------------------------------------------------
# validate


def validate_suite(name_or_path: str) -> tuple[int, list[str]]:
    """Checks a suite and returns (samples, every problem found); it does not stop at the first."""
    from partedit_bench.data.suites import available_suites

    if name_or_path not in available_suites() and not Path(name_or_path).exists():
        load_suite(name_or_path)  # the one-line "unknown suite" error, with suggestions
    problems: list[str] = []
    try:
        suite = load_suite(name_or_path)
    except UserError as exc:
        problems.append(str(exc))
        return 0, problems + _entry_problems(name_or_path)
    prompts_only = suite.definition.get("generator", {}).get("type") == "prompt-config"
    for sample in suite.samples:
        where = f"sample {sample.id}"
        if prompts_only:  # images are built per backbone by build-synth; check the text
            problems += _text_problems(sample, where)
            continue
        if not sample.original_image:
            problems.append(f"{where}: no source image (build it: partedit-bench data build-synth)")
            continue
        try:
            image = load_image(sample.original_image)
        except UserError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if not sample.gt_mask:
            problems.append(f"{where}: no GT mask (attach one: partedit-bench data import-masks)")
        else:
            try:
                mask = load_mask(sample.gt_mask, image.size)
                if not mask.any():
                    problems.append(f"{where}: GT mask {sample.gt_mask} is empty")
                elif mask.all():
                    problems.append(f"{where}: GT mask {sample.gt_mask} covers the whole image")
            except UserError as exc:
                problems.append(f"{where}: {exc}")
        if suite.definition.get("role") != "token-training":
            problems += _text_problems(sample, where)
        for key, value in sample.extra.items():
            if key in ("gt_edited_image", "partedit") and value:
                try:
                    if load_image(value).size != image.size:
                        problems.append(f"{where}: {key} size differs from the source image")
                except UserError as exc:
                    problems.append(f"{where}: {exc}")
    return len(suite.samples), problems


def _text_problems(sample: Sample, where: str) -> list[str]:
    problems = [
        f"{where}: empty field {key}"
        for key in ("prompt_original", "prompt_changed")
        if not getattr(sample, key)
    ]
    if sample.prompt_changed and f"<{sample.part_token}>" not in sample.prompt_changed:
        problems.append(f"{where}: prompt_changed lacks the part token <{sample.part_token}>")
    return problems


def _entry_problems(name_or_path: str) -> list[str]:
    """When a files suite fails to load, checks each of its entries to report them all."""
    from partedit_bench.data.suites import _read_jsonl, available_suites

    path = available_suites().get(name_or_path) or Path(name_or_path)
    if path.is_dir():
        path = path / "suite.yaml"
    try:
        definition = read_definition(path)
        entries = definition.get("samples")
        if entries is None and "samples_file" in definition:
            entries = _read_jsonl(Path(definition["_dir"]) / definition["samples_file"])
    except UserError:
        return []
    problems = []
    for i, entry in enumerate(entries or []):
        try:
            Sample.from_dict(entry, f"sample {i}")
        except UserError as exc:
            problems.append(str(exc))
    return problems[1:] if problems else []


__all__ = [
    "build_synth",
    "canonical_part",
    "import_hf",
    "import_masks",
    "import_partimagenet",
    "read_yaml",
    "validate_suite",
]
