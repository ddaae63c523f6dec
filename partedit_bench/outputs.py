"""Where a command may write: the one output policy every command that writes goes through.

- A path built from data (sample ids, suite and method names, parts, splits) is made with
  `child`, which checks each name (`errors.safe_name`) *before* anything is written and checks
  that the result, symlinks resolved, stays inside the folder it was built under.
- A command never deletes or replaces a file or folder it did not create in this invocation
  unless the user said `--overwrite` (`output_file`, `output_folder`), and then only what it
  would recreate itself (`replace_folder` swaps in a folder only over one of its own kind).
- An output never equals one of the command's inputs, `--overwrite` or not (`output_file`'s
  `inputs`).
- Shipped files (`benchmark_data/`, `models/` of the repository) are files like any other: an
  existing one is replaced only with `--overwrite`.

Every refusal is one `UserError` line naming the path and the flag that would allow it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from partedit_bench.errors import UserError, safe_name
from partedit_bench.paths import REPO_ROOT

#: Folders of the repository whose files ship with the project.
SHIPPED = ("benchmark_data", "models")


def resolved(path: str | Path) -> Path:
    """`path` made absolute with every symlink resolved (missing tails kept), or one line
    saying why it cannot be (a symlink loop, a name the system refuses)."""
    try:
        return Path(path).expanduser().resolve(strict=False)
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a loop (Python < 3.13)
        raise UserError(f"cannot resolve path {path}: {exc}") from exc


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether `path` is `root` or lies below it, both with symlinks resolved."""
    p, r = resolved(path), resolved(root)
    return p == r or r in p.parents


def contained(root: str | Path, path: str | Path, what: str) -> Path:
    """`path`, unless with symlinks resolved it lies outside `root` (one line naming both)."""
    if not is_inside(path, root):
        raise UserError(
            f"{what} {path} resolves to {resolved(path)}, outside {root}; refusing to write there"
        )
    return Path(path)


def child(root: str | Path, *names: object, field: str) -> Path:
    """`root / names...` for names taken from data (ids, names, parts, splits): each must be a
    plain file name (`safe_name`) and the result must stay inside `root` after resolving
    symlinks. Checked before anything is written."""
    parts = [safe_name(name, field) for name in names]
    return contained(root, Path(root).joinpath(*parts), field)


def is_shipped(path: str | Path) -> bool:
    """Whether `path` lies in the repository's shipped data (`benchmark_data/`, `models/`)."""
    return any(is_inside(path, REPO_ROOT / folder) for folder in SHIPPED)


def _writable_parent(path: Path, what: str) -> None:
    """Refuses a path below an existing file (mkdir would fail there)."""
    for parent in Path(path).parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UserError(f"{what} {path}: {parent} is a file, not a folder")
            return


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (symlinks and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return resolved(a) == resolved(b)


def output_file(
    path: str | Path,
    what: str,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    flag: str = "--overwrite",
) -> Path:
    """A file a command is about to write, checked before anything loads: not a folder, not
    below a file, never one of `inputs`, and not an existing file unless `overwrite`."""
    path = Path(path)
    for source in inputs:
        if source and same_file(path, source):
            raise UserError(f"{what} {path} is an input of this command; choose another name")
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, not a file")
    _writable_parent(path, what)
    if (path.exists() or path.is_symlink()) and not overwrite:
        shipped = " (a file shipped with partedit-bench)" if is_shipped(path) else ""
        raise UserError(f"{what} {path} exists{shipped}; pass {flag} to replace it")
    return path


def output_folder(
    path: str | Path,
    what: str,
    overwrite: bool | None = None,
    owned: Callable[[Path], bool] | None = None,
    flag: str = "--overwrite",
    resume: bool = False,
) -> Path:
    """A folder a command writes into: not a file, not below a file. With `overwrite` given
    (not None), an existing non-empty folder is refused unless `overwrite`, and even then
    unless `owned(folder)` says it holds what this command makes (it is replaced whole). With
    `resume`, a folder `owned` says is this command's own is continued without `overwrite`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder")
    _writable_parent(path, what)
    if overwrite is not None and path.is_dir() and any(path.iterdir()):
        mine = owned is not None and owned(path)
        if resume and mine:
            return path
        if (resume or overwrite) and owned is not None and not mine:
            raise UserError(
                f"{what} {path} holds files this command did not make; refusing to write there"
                + (f" even with {flag}" if overwrite else "")
                + " (choose another folder)"
            )
        if not overwrite:
            raise UserError(f"{what} {path} exists and is not empty; pass {flag} to replace it")
    return path


def staging_folder(folder: Path) -> Path:
    """A new empty folder beside `folder` to build it in (its own unique name: nothing that
    exists is reused or removed)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))


def replace_folder(staging: Path, folder: Path) -> None:
    """Moves the finished `staging` folder to `folder`; an existing `folder` (checked by
    `output_folder` before anything was built) is swapped out and removed only after the new
    one is in place."""
    replaced = None
    if folder.exists():
        replaced = Path(
            tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".old")
        )
        os.rmdir(replaced)
        folder.rename(replaced)
    try:
        staging.rename(folder)
    except BaseException:
        if replaced is not None:
            replaced.rename(folder)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
