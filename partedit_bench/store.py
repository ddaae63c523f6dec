"""The run folder: where every file of a run lives, and reading it back. No torch here, so
that `report`, `gallery` and the user study read runs without loading a model.

Layout (DESIGN.md, "Results on disk"):

    run.json                                   configuration + provenance, written once
    metrics_manifest.json                      the current manifest of each metric group
    shards/<i>-of-<n>.json                     start/end time and counts of the latest invocation
    shards/<i>-of-<n>/<ns>-<host>-<pid>.json   the same for every invocation (the history)
    <variant>/<split>/<sample-id>__s<seed>.png           the edited image (the sample's size)
    <variant>/<split>/<sample-id>__s<seed>.json          the job record (written last)
    <variant>/<split>/<sample-id>__s<seed>.claim         a worker computing the job
    <variant>/<split>/<sample-id>__s<seed>.<group>-<hash>.metrics.json   its metric rows
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from partedit_bench import __version__
from partedit_bench.errors import UserError
from partedit_bench.io import create_exclusive, json_bytes, orphaned, process_alive

RECORD_VERSION = 1
MANIFEST_FILE = "metrics_manifest.json"
#: The note a run on random weights carries into every table.
RANDOM_WEIGHTS_NOTE = "random weights: checks the plumbing, not the methods"


STATUSES = ("ok", "skipped", "failed")


@dataclass
class JobRecord:
    """One job's record, `<variant>/<split>/<sample-id>__s<seed>.json`, written last (its
    presence with status ok and intact files is what makes a job done). `run` and
    `import-edits` write it; `evaluate`, `report`, the gallery, the study and the figures read
    it through `read_record`. A record of another `record_version` is not read as this one:
    the run hash carries the version, so such a job is recomputed."""

    run_hash: str
    job_hash: str
    variant: str  # the row name: method plus its non-default options (`partedit[t_e=30]`)
    method: str  # the registry name (`imported:<name>` for an imported folder)
    sample_id: str
    split: str
    part: str  # the sample's part token
    seed: int
    status: str  # one of STATUSES
    options: dict[str, Any] = field(default_factory=dict)  # every option, defaults included
    grid: dict[str, Any] = field(default_factory=dict)  # the swept axes of its grid; {} if none
    uses_gt_mask: bool = False  # the method was given the GT mask (a † row)
    backbone_fingerprint: str | None = None
    shard: str | None = None
    started: str | None = None
    finished: str | None = None
    image: str | None = None  # the edited image beside the record (status ok)
    predicted_mask: str | None = None  # the method's own mask beside it, if any
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> bytes, sha256
    native_size: list[int] | None = None  # the method's output size before `finish`
    error: str | None = None  # the skip reason, or the failure's exception line
    traceback: str | None = None
    step_times: list[float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # the method's notes
    wall_time_s: float | None = None
    peak_memory: dict[str, Any] | None = None
    record_version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"record status must be one of {STATUSES}, not {self.status!r}")

    def to_bytes(self) -> bytes:
        return json_bytes(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord | None:
        """The record, or None for one of another version or shape (never half-read)."""
        if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError):
            return None

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple((self.extras or {}).get("notes") or ())


def read_record(path: Path) -> JobRecord | None:
    """The job record at `path`, or None when it is missing, unreadable or not a record of
    this version."""
    data = read_json(path)
    return JobRecord.from_dict(data) if data is not None else None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def iter_records(root: Path) -> list[Path]:
    """Every job record of a run folder (`<variant>/<split>/<id>__s<seed>.json`)."""
    return sorted(
        p for p in Path(root).glob("*/*/*__s*.json") if not p.name.endswith(".metrics.json")
    )


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "partedit-bench": __version__}
    for name in (
        "torch",
        "diffusers",
        "transformers",
        "open_clip_torch",
        "numpy",
        "pillow",
        "scikit-image",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def bytes_digest(data: bytes) -> dict[str, Any]:
    """What a record keeps of a file it wrote: its size and sha256."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def outputs_intact(folder: Path, record: JobRecord) -> bool:
    """Whether every file an ok record points at is there with the size and hash the record
    wrote down (a truncated or replaced PNG is recomputed, never trusted)."""
    files = record.files
    if not isinstance(files, dict) or not record.image or record.image not in files:
        return False
    if record.predicted_mask and record.predicted_mask not in files:
        return False  # every file a reader opens is one the record vouches for
    for name, expected in files.items():
        if "/" in str(name) or "\\" in str(name) or str(name).startswith("."):
            return False  # only files beside the record
        path = folder / str(name)
        try:
            if path.stat().st_size != expected.get("bytes"):
                return False
            if hashlib.sha256(path.read_bytes()).hexdigest() != expected.get("sha256"):
                return False
        except (OSError, AttributeError):
            return False
    return True


def job_name(record_path: Path) -> str:
    """`<variant>/<split>/<sample-id>__s<seed>`: how a message names a job."""
    return "/".join(Path(record_path).with_suffix("").parts[-3:])


def check_outputs(record_path: Path, record: JobRecord) -> None:
    """Refuses, in one line naming the job, an ok record whose files are not the ones it
    wrote (replaced, truncated, missing, or named outside its folder): what `evaluate`,
    `report`, the gallery and the study do before they read an edit."""
    if not outputs_intact(record_path.parent, record):
        raise UserError(
            f"job {job_name(record_path)}: its files do not match its record (replaced, "
            "truncated, missing, or outside the run folder); nothing was scored from them. "
            "Rerun the command that made it (`partedit-bench run` with the run's flags "
            "recomputes it; `import-edits` for an imported row)"
        )


def files_digest(record: JobRecord) -> str:
    """A digest of the sizes and hashes of a record's files: metric rows carry it, so that a
    row computed from other image bytes is never taken for this job's."""
    text = json.dumps(record.files, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: A claim of another host older than this is taken over (seconds).
CLAIM_TTL_S = 6 * 3600


def claim_job(path: Path) -> bool:
    """Claims a job for this process with an exclusive file beside its record, so that
    workers started on the same run folder split the jobs instead of each computing all of
    them. A claim left by a process that is gone (this host) or that is older than
    CLAIM_TTL_S (another host) is taken over."""
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": now()}
    for _ in range(2):
        if create_exclusive(path, json_bytes(mine)):
            for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # of killed claimers
                try:
                    if orphaned(leftover) or time.time() - leftover.stat().st_mtime > 60:
                        leftover.unlink(missing_ok=True)
                except OSError:
                    pass
            return True
        other = read_json(path) or {}
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            continue  # released meanwhile: try again
        if other.get("host") == mine["host"]:
            stale = other.get("pid") == mine["pid"] or not _alive(int(other.get("pid") or 0))
        else:
            stale = age > CLAIM_TTL_S
        if not stale:
            return False
        path.unlink(missing_ok=True)
    return False


def _alive(pid: int) -> bool:
    return process_alive(pid)


def metric_path(record_path: Path, group: str, manifest_hash: str) -> Path:
    return record_path.parent / f"{record_path.stem}.{group}-{manifest_hash}.metrics.json"


def load_run(root: Path) -> dict[str, Any]:
    """run.json of a run folder, or one line saying it is not one."""
    info = read_json(root / "run.json")
    if info is None:
        raise UserError(f"{root} is not a run folder (no readable run.json)")
    return info


def suite_samples(info: dict[str, Any]) -> dict[str, Any]:
    """The samples of the suite a run was made on, by id."""
    from partedit_bench.data.suites import load_suite

    path = info["suite"]["path"]
    if not Path(path).exists():
        raise UserError(f"the run's suite file {path} no longer exists")
    return {s.id: s for s in load_suite(path).samples}


def safe_host() -> str:
    """The host name as a file-name part."""
    return re.sub(r"[^0-9A-Za-z.-]", "_", socket.gethostname())[:64] or "host"


def first_seed_edits(root: Path, info: dict[str, Any]) -> tuple[int, list[tuple[Path, JobRecord]]]:
    """The finished jobs of the run's current configuration (not those a replaced one left)
    at the run's first seed (a run need not have seed 0): (that seed, [(record path, record)]),
    what the gallery and the user study show."""
    current = [
        (path, record)
        for path in iter_records(root)
        if (record := read_record(path))
        and record.status == "ok"
        and record.run_hash == info["run_hash"]
    ]
    seed = min((r.seed for _, r in current), default=0)
    chosen = [(p, r) for p, r in current if r.seed == seed]
    for path, record in chosen:
        check_outputs(path, record)
    return seed, chosen
