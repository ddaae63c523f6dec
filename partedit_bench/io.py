"""Atomic file writes: a reader (or a resumed run after a kill) never sees a partial file."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from partedit_bench.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^0-9A-Za-z-]", "_", socket.gethostname())[:40] or "host"


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host exists."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned(temp: Path) -> bool:
    """Whether a temporary file was left by a writer that is gone: its name
    (`.<name>.<host>-<pid>.<random>.tmp`) names a process of this host that no longer runs."""
    parts = temp.name[: -len(".tmp")].rsplit(".", 2)
    if len(parts) != 3 or not temp.name.endswith(".tmp"):
        return False
    host, _, pid = parts[1].rpartition("-")
    return host == _host() and pid.isdigit() and not process_alive(int(pid))


def _synced_temp(path: Path, data: bytes) -> str:
    """Writes `data` to a new temporary file beside `path` and fsyncs it; returns its name,
    which names its writer (`.<name>.<host>-<pid>.<random>.tmp`), so that a killed writer's
    leftover is recognized at once (`orphaned`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"{_host()}-{os.getpid()}"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would have made
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # name the file (an fsync or write error has none)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, fsyncs it, then renames it into place."""
    path = Path(path)
    tmp = _synced_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: A temporary file older than this is a leftover of a killed writer (a live one renames its
#: file within seconds of creating it).
STALE_TEMP_S = 120.0


def remove_stale_temps(folder: str | Path, older_than_s: float = STALE_TEMP_S) -> int:
    """Deletes the leftovers `_synced_temp` names (`.<name>.*.tmp`) under `folder` whose
    writer is gone (`orphaned`) or that are older than `older_than_s`: what a killed run,
    evaluation or report left behind. Returns how many."""
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for leftover in folder.rglob(".*.tmp"):
        try:
            if leftover.is_file() and (orphaned(leftover) or leftover.stat().st_mtime < cutoff):
                leftover.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def create_exclusive(path: str | Path, data: bytes) -> bool:
    """Atomically creates `path` with `data` unless it exists; returns whether this call did.

    Used for `run.json`, which the first of several concurrent shards writes.
    """
    path = Path(path)
    tmp = _synced_temp(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def script_json(data: object) -> str:
    """JSON safe to embed in an HTML <script>: '<' written as \\u003c, so that neither
    '</script>' nor '<!--' in a prompt can end or comment out the script."""
    import json

    return json.dumps(data).replace("<", "\\u003c")


def read_yaml(path: Path) -> Any:
    """A YAML file read safely (no object construction), or one line saying why not."""
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"malformed YAML {path}: {str(exc).splitlines()[0]}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not a text (UTF-8) file: {exc.reason}") from exc
    except OSError as exc:  # no read permission, a folder, an I/O error
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc


def stable_hash(data: Any) -> str:
    """16 hex digits of the sha256 of `data` as canonical JSON (sorted keys; other types as
    their str): the run, job and metric-manifest hashes."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
