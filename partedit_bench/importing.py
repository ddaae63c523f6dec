"""Edits made elsewhere become a method row: `partedit-bench import-edits`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from partedit_bench.config import stable_hash
from partedit_bench.data.schema import load_image
from partedit_bench.data.suites import load_suite
from partedit_bench.errors import UserError, safe_name
from partedit_bench.io import atomic_write_bytes, create_exclusive, json_bytes, png_bytes
from partedit_bench.store import (
    RECORD_VERSION,
    JobRecord,
    bytes_digest,
    now,
    package_versions,
    read_json,
    read_record,
)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def import_edits(
    folder: str | None,
    suite_name: str,
    name: str,
    from_field: str | None,
    output: str | None,
    uses_gt_mask: bool = False,
) -> tuple[Path, int]:
    """Writes one job record per sample that has an edit in `folder` (files named
    `<sample-id>.<ext>`) or in the suite field `from_field`; returns (run folder, count)."""
    if (folder is None) == (from_field is None):
        raise UserError("import-edits needs either a folder of images or --from-field")
    safe_name(name, "import-edits --name")
    suite = load_suite(suite_name)
    root = Path(output) if output else Path("results") / f"{suite.name}__imported"
    info = read_json(root / "run.json")
    if info is None:
        identity = {
            "suite": suite.name,
            "suite_version": suite.version,
            "backbone": "imported",
            "record_version": RECORD_VERSION,
        }
        info = {
            "run_hash": stable_hash(identity),
            "identity": identity,
            "suite": {
                "name": suite.name,
                "version": suite.version,
                "path": str(suite.path),
                "size": len(suite.samples),
                "synthetic_source": suite.synthetic_source,
            },
            "backbone": {"name": "imported", "random_weights": False},
            "note": "",
            "versions": package_versions(),
            "created": now(),
        }
    elif info["suite"]["name"] != suite.name:
        raise UserError(f"{root} holds suite '{info['suite']['name']}', not '{suite.name}'")
    for path in sorted((root / name).glob("*/*.json")) if (root / name).is_dir() else []:
        record = read_record(path)
        if record and not record.method.startswith("imported:"):
            raise UserError(
                f"{root / name} holds the records of method '{record.method}'; "
                "import under another --name"
            )
    found: dict[str, Path] = {}
    for sample in suite.samples:
        if from_field:
            value = sample.extra.get(from_field)
            if value:
                found[sample.id] = Path(value)
        else:
            for ext in EXTENSIONS:
                candidate = Path(folder or "") / f"{sample.id}{ext}"
                if candidate.is_file():
                    found[sample.id] = candidate
                    break
    if not found:
        where = f"field '{from_field}'" if from_field else f"{folder} (<sample-id>.png)"
        raise UserError(f"no edits for suite '{suite.name}' found in {where}")
    images = {}
    for sample in suite.samples:
        if sample.id in found:
            source = load_image(sample.original_image)
            edited = load_image(found[sample.id])
            if edited.size != source.size:
                edited = edited.resize(source.size, Image.Resampling.LANCZOS)
            images[sample.id] = (sample, edited, found[sample.id])
    create_exclusive(root / "run.json", json_bytes(info))
    for sample, edited, origin in images.values():
        stem = root / name / sample.split / f"{sample.id}__s0"
        data = png_bytes(edited)
        record = JobRecord(
            run_hash=info["run_hash"],
            job_hash=stable_hash(
                {
                    "imported": name,
                    "sample": sample.digest(),
                    "image": hashlib.sha256(data).hexdigest(),
                }
            ),
            variant=name,
            method=f"imported:{name}",
            sample_id=sample.id,
            split=sample.split,
            part=sample.part_token,
            seed=0,
            status="ok",
            options={"source": str(origin)},
            uses_gt_mask=uses_gt_mask,
            image=stem.with_suffix(".png").name,
            files={stem.with_suffix(".png").name: bytes_digest(data)},
            started=now(),
            finished=now(),
        )
        atomic_write_bytes(stem.with_suffix(".png"), data)
        atomic_write_bytes(stem.with_suffix(".json"), record.to_bytes())
    return root, len(images)
