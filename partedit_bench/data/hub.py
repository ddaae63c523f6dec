"""`data import-hf`: the published PartEdit-Bench (Aleksandar/PartEdit-Bench) from a hub id, a hub
cache or snapshot folder, parquet files or a `save_to_disk` folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from partedit_bench.data.files_suite import write_files_suite
from partedit_bench.data.hub_sources import _as_image, _load_dataset_splits
from partedit_bench.data.masks import (
    mask_to_image,
)
from partedit_bench.data.parts import (
    canonical_part,
    label_warning,
    p2p_pair,
    partedit_prompt,
)
from partedit_bench.data.schema import PART_TOKEN, Sample, opaque_rgb
from partedit_bench.errors import UserError, safe_name
from partedit_bench.io import atomic_write_bytes, png_bytes
from partedit_bench.outputs import child, output_folder, replace_folder, staging_folder
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
    overwrite: bool = False,
) -> tuple[Path, int, list[str], list[str]]:
    """Imports the published PartEdit-Bench (fields: id, original_image, partedit, subject,
    edit, part, gt_mask, class_name, prompt_original, prompt_changed, p2p_prompt, p2p_template,
    instructp2p_edit1..3, seed, token_cls) from a `save_to_disk` folder, parquet files, or a hub
    id (its snapshot in the local hub cache first, so that it works offline); images and masks
    become PNGs, parts are mapped to canonical names, the dataset's own `partedit` output is
    kept (scorable with `import-edits --from-field partedit`). An edit prompt without part-token
    markup gets its part words after the edit as the token (the dataset's text is kept as
    `prompt_changed_dataset`). A row whose mask is empty or covers the whole image is left out
    (it has no part or no background to score) and named. The suite records its source and
    the revision it came from. Returns (suite file, count, rows whose labels contradict their
    text, rows left out).

    Splits come from the dataset card's `configs` when the folder has one, else from the
    files' names or folders (`synth-*.parquet`, `refs/convert/parquet`'s `default/real/`),
    else from `split`; a file whose split cannot be told stops the import. `revision` picks a
    hub revision (a hub id, or a hub cache folder holding several snapshots).

    The suite folder (`output`, default `benchmark_data/NAME`) must not exist, or, with
    `overwrite`, must hold an earlier import, which is replaced whole once the new one is
    complete (a failed import leaves it as it was)."""
    safe_name(name, "import-hf --name")
    if output is not None and not str(output).strip():
        raise UserError("import-hf --output is empty; name a folder (or leave it out)")
    folder = Path(output) if output else data_root() / name
    output_folder(folder, "import-hf --output", overwrite, owned=_is_import)
    sources = [source] if isinstance(source, str) else list(source)
    splits: dict[str, list[dict[str, Any]]] = {}
    origins = []
    for one in sources:  # bad sources stop before anything is written
        loaded, origin = _load_dataset_splits(one, revision, split)
        origins.append(origin)
        for split_name, rows in loaded.items():
            splits.setdefault(split_name, []).extend(rows)
    source = ", ".join(sources)
    staging = staging_folder(folder)  # built aside and swapped in whole
    try:
        count, warnings, excluded = _import_hf_rows(
            splits, source, origins, name, version, folder, staging
        )
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder / "suite.yaml", count, warnings, excluded


#: The mark of a suite folder this importer made (what `--overwrite` may replace).
IMPORTER = "partedit-bench data import-hf"


def _is_import(folder: Path) -> bool:
    try:
        definition = yaml.safe_load((folder / "suite.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    if not isinstance(definition, dict):
        return False
    return definition.get("importer") == IMPORTER or str(
        definition.get("description", "")
    ).startswith("PartEdit-Bench imported from")


def _mask_of(row: dict[str, Any], size: tuple[int, int], where: str) -> np.ndarray | None:
    if row.get("gt_mask") is None:
        return None
    levels = np.asarray(_as_image(row["gt_mask"], f"{where} gt_mask").convert("L"))
    mask = levels > (0 if levels.max() <= 1 else 127)  # 0/1 and 0/255 alike
    if mask.shape != (size[1], size[0]):
        raise UserError(f"{where}: mask {mask.shape[::-1]} vs image {size}")
    return mask


def _import_hf_rows(
    splits: dict[str, list[dict[str, Any]]],
    source: str,
    origins: list[dict[str, Any]],
    name: str,
    version: str | None,
    final: Path,
    folder: Path,
) -> tuple[int, list[str], list[str]]:
    """Writes the suite of `splits` into `folder` (the staging folder of `final`)."""
    samples: list[Sample] = []
    warnings: list[str] = []
    excluded: list[str] = []
    seen: dict[str, str] = {}
    for split_name, rows in splits.items():
        split = "real" if "real" in split_name else "synth"
        for index, row in enumerate(rows):
            where = f"{source} {split_name} row {index}"
            # the id becomes file names: checked before anything of the row is written
            sample_id = safe_name(f"{split}-{row.get('id', index)}", f"{where}: sample id")
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
                    f"{where}: cannot map part {row.get('part')!r} of class "
                    f"{row.get('class_name')!r} to a canonical part"
                )
            if row.get("original_image") is None:
                raise UserError(
                    f"{where}: no original_image (columns: {', '.join(sorted(row)) or 'none'})"
                )
            image = opaque_rgb(
                _as_image(row["original_image"], f"{where} original_image"),
                f"{where} original_image",
            )
            mask = _mask_of(row, image.size, where)
            if mask is not None and (not mask.any() or mask.all()):
                reason = "empty mask" if not mask.any() else "mask covers the whole image"
                excluded.append(f"{sample_id} ({reason})")
                continue
            image_path = child(folder, "images", f"{sample_id}.png", field=f"{where}: sample id")
            atomic_write_bytes(image_path, png_bytes(image))
            mask_path = ""
            if mask is not None:
                mask_path = str(child(folder, "masks", f"{sample_id}.png", field="sample id"))
                atomic_write_bytes(Path(mask_path), png_bytes(mask_to_image(mask)))
            extra: dict[str, Any] = {"source_split": split_name}
            if row.get("token_cls") is not None:
                extra["token_cls"] = row["token_cls"]
            if row.get("partedit") is not None:
                out = child(folder, "partedit", f"{sample_id}.png", field="sample id")
                edited = _as_image(row["partedit"], f"{where} partedit")
                atomic_write_bytes(out, png_bytes(opaque_rgb(edited, f"{where} partedit")))
                extra["partedit"] = str(out)
            entry: dict[str, Any] = {k: str(row[k]) for k in HF_FIELDS if row.get(k) is not None}
            entry.update(
                id=sample_id,
                split=split,
                part_token=part,
                seed=_row_seed(row, where),
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
                entry["prompt_changed"] = PART_TOKEN.sub(
                    lambda m: f"<{canonical_part(m.group(1)) or m.group(1)}>", text
                )
            warning = label_warning(part, str(row.get("subject") or ""))
            if warning:
                extra["label_warning"] = warning
                warnings.append(f"{split_name} row {index} (id {row.get('id', index)}): {warning}")
            samples.append(Sample.from_dict(entry, where))
    if not samples:
        raise UserError(f"{source}: no row left to import ({len(excluded)} left out: bad masks)")
    definition = {
        "name": name,
        "version": version or "imported-1",
        "description": f"PartEdit-Bench imported from {source}",
        "origin": str(source),
        "sources": origins,
        "importer": IMPORTER,
        "license": "creativeml-openrail-m (the dataset's)",
    }
    if excluded:
        definition["excluded"] = excluded
    readme = (
        f"# {name}\n\nThe published PartEdit-Bench, imported with `partedit-bench data "
        f"import-hf {source}`"
        + "".join(
            f" ({o['source']} at revision {o['revision']})" for o in origins if o.get("revision")
        )
        + f". {len(samples)} samples (splits: {', '.join(splits)}). "
        "License: creativeml-openrail-m, as the dataset. The dataset's own PartEdit outputs "
        "are in `partedit/`; score them as a row with `partedit-bench import-edits "
        f"--suite {final} --from-field partedit --name partedit-official`.\n"
    )
    if warnings:
        readme += "\nRows whose labels contradict their text (kept as labelled):\n\n"
        readme += "".join(f"- {w}\n" for w in warnings)
    if excluded:
        readme += "\nRows left out (nothing to score in them):\n\n"
        readme += "".join(f"- {e}\n" for e in excluded)
    write_files_suite(folder, definition, samples, readme)
    return len(samples), warnings, excluded


def _row_seed(row: dict[str, Any], where: str) -> int:
    value = row.get("seed")
    try:
        return int(value or 0)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: seed {value!r} is not an integer") from exc
