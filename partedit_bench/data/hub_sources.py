"""Where `data import-hf` reads the published PartEdit-Bench from: a hub id (its snapshot in the
local hub cache first, so that offline nodes with a filled cache import it), a hub cache or
snapshot folder (the revision's snapshot), parquet files (splits from the dataset card, the
folders or the names), or a `save_to_disk` folder. Images are decoded row by row, so that a
corrupt one is one line naming its row."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from partedit_bench.errors import UserError

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


def _hub_cache_repo(repo_id: str) -> Path | None:
    """The local hub-cache folder of dataset `repo_id` (`owner/name`), where `hf download` and
    `datasets` put it (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub); None
    when `repo_id` is not a hub id or nothing of it is cached."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        return None
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    root = (
        Path(cache)
        if cache
        else Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    folder = root.expanduser() / f"datasets--{repo_id.replace('/', '--')}"
    return folder if (folder / "snapshots").is_dir() else None


def _undecoded(data: Any) -> Any:
    """`data` with its image columns left as bytes: images are decoded row by row by
    `_as_image`, so that a corrupt one is a line naming its row, not a traceback."""
    import datasets

    for name in list(data):
        features = data[name].features or {}
        for column, feature in features.items():
            if isinstance(feature, datasets.Image) and feature.decode:
                data[name] = data[name].cast_column(column, datasets.Image(decode=False))
    return data


def _load_dataset_splits(
    source: str, revision: str | None = None, split: str | None = None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The rows of each split of `source`, and where they came from: {source, revision} (the
    snapshot's commit when read from a hub cache, else the revision asked for)."""
    import datasets

    path = Path(source)
    origin: dict[str, Any] = {"source": source, "revision": revision}
    if not path.exists():  # a hub id: its snapshot in the local cache first (offline nodes)
        cached = _hub_cache_repo(source)
        if cached is not None:
            try:
                snapshot = _hub_snapshot(cached, revision)
            except UserError:
                snapshot = None  # that revision is not cached: ask the hub
            if snapshot is not None:
                path = snapshot
                origin["revision"] = snapshot.name
    try:
        if path.is_dir():
            snapshot = _hub_snapshot(path, revision)
            if snapshot is not None:
                path = snapshot
                origin["revision"] = snapshot.name
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
            origin["revision"] = revision or "main"
        if isinstance(data, datasets.Dataset):
            data = datasets.DatasetDict({split or "synth": data})
        data = _undecoded(data)
        return {name: list(rows) for name, rows in data.items()}, origin
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"cannot load dataset {source} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); pass a local folder or "
            "parquet files when offline (a hub id is read from the local hub cache when it "
            "holds the snapshot)"
        ) from exc


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
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"{what}: unreadable image ({type(exc).__name__}: {exc})") from exc
    raise UserError(f"{what}: not an image ({type(value).__name__})")
