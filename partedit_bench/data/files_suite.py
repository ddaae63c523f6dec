"""Suites as a folder of files: `suite.yaml` + `samples.jsonl` with paths relative to the folder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from partedit_bench.data.schema import Sample
from partedit_bench.io import atomic_write_bytes


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
