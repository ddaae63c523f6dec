"""`partedit-bench`: the command-line entry point. Each command lives in a module of this package
(`register(sub)` adds its flags, `COMMANDS` maps it to a function calling the library)."""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence
from typing import Any

from partedit_bench.cli import data, edit, localize, partworld, run, tokens, userstudy
from partedit_bench.cli._common import _add_missing_help, _Parser
from partedit_bench.errors import UserError

MODULES = (run, edit, localize, tokens, partworld, userstudy, data)


def build_parser() -> Any:
    parser = _Parser(
        prog="partedit-bench",
        description="A benchmark of text-based part editing: run methods on a suite, score the "
        "edits, and write tables.",
    )
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("partedit-bench")
    except PackageNotFoundError:  # run from a checkout that was never installed
        own = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"partedit-bench {own}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the model libraries' own logs and loading bars (quiet by default)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in MODULES:
        module.register(sub)
    _add_missing_help(parser)
    return parser


#: OSError numbers that mean "the disk will not take it": one line, not a traceback.
WRITE_ERRORS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG") if hasattr(errno, name)
)


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: what failed, on which path(s), and why."""
    where = " ".join(
        repr(str(name)) if "\n" in str(name) else str(name)
        for name in (exc.filename, exc.filename2)
        if name is not None
    )
    text = str(exc).splitlines()
    reason = exc.strerror or (text[0] if text else type(exc).__name__)
    if exc.errno in WRITE_ERRORS:
        target = f" {where}" if where else ""
        return (
            f"cannot write{target}: {reason}; every file written before is intact (writes are "
            "atomic): free space and rerun the same command"
        )
    return f"{where}: {reason}" if where else f"{type(exc).__name__}: {reason}"


def quiet_libraries() -> None:
    """The model libraries' warnings and loading bars off (errors stay): what a command
    prints is its own progress and results. `--verbose` keeps them."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in ("diffusers", "transformers", "huggingface_hub", "timm", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:  # (a data-only install)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    import os
    import signal

    from rich.console import Console

    # tables in logs and pipes: rich would cut them to 80 columns
    narrow = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    if narrow:
        os.environ["COLUMNS"] = "200"
    err = Console(stderr=True)

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # a scheduler's SIGTERM ends like Ctrl-C: with the resume hint

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread (e.g. an embedding application)
        previous = None
    try:
        given = list(sys.argv[1:] if argv is None else argv)
        if any("\x00" in str(a) for a in given):  # no path or name can hold one
            raise UserError("an argument contains a NUL byte; no file name can hold one")
        args = build_parser().parse_args(given)
        if not args.verbose:
            quiet_libraries()
        commands = {name: fn for module in MODULES for name, fn in module.COMMANDS.items()}
        return int(commands[args.command](args, err))
    except UserError as exc:
        err.print(
            f"partedit-bench: error: {exc}",
            markup=False,
            highlight=False,
            emoji=False,
            soft_wrap=True,
        )
        return 2
    except OSError as exc:  # the last line of defence: the path and the reason, one line
        err.print(
            f"partedit-bench: error: {os_error_line(exc)}",
            markup=False,
            highlight=False,
            emoji=False,
            soft_wrap=True,
        )
        return 2
    except KeyboardInterrupt:
        err.print("interrupted; completed jobs are kept, rerun the same command to resume")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if narrow:
            os.environ.pop("COLUMNS", None)
