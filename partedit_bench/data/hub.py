"""`data import-hf`: the published PartEdit-Bench (Aleksandar/PartEdit-Bench) from a hub id, a hub
cache or snapshot folder, parquet files or a `save_to_disk` folder."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from partedit_bench.data.files_suite import write_files_suite
from partedit_bench.data.masks import (
    mask_to_image,
)
from partedit_bench.data.parts import (
    canonical_part,
    label_warning,
    p2p_pair,
    partedit_prompt,
)
from partedit_bench.data.schema import Sample
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, png_bytes
from partedit_bench.paths import data_root

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
