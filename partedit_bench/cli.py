"""`partedit-bench`: the command-line entry point."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from partedit_bench.config import RunConfig, config_fields
from partedit_bench.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        raise UserError(f"{self.prog}: {message}")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    for f in config_fields():
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=help_text)
        elif f.name == "set":
            parser.add_argument(
                flag, action="append", default=[], metavar="METHOD.KEY=VALUE", help=help_text
            )
        elif f.name == "limit":
            parser.add_argument(flag, type=int, default=None, help=help_text)
        else:
            default = None if f.default is dataclasses.MISSING else f.default
            parser.add_argument(flag, default=default, help=f"{help_text} (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="partedit-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run methods on a suite (resumable, shardable)")
    _add_run_arguments(run)

    listing = sub.add_parser("list", help="list methods, suites or backbones")
    listing.add_argument("what", choices=["methods", "suites", "backbones"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    err = Console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return command_run(args, err)
        if args.command == "list":
            return command_list(args.what)
    except UserError as exc:
        err.print(f"partedit-bench: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted; completed jobs are kept, rerun the same command to resume")
        return 130
    return 0


def command_run(args: argparse.Namespace, console: Any) -> int:
    from partedit_bench.runner import Runner

    values = {f.name: getattr(args, f.name) for f in config_fields()}
    cfg = RunConfig(**values)
    runner = Runner(cfg, console)
    code = runner.run()
    print_run_summary(runner)
    return code


def print_run_summary(runner: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    s = runner.summary
    table = Table(title=f"{runner.root}  (shard {s['shard']})")
    for column in ("jobs", "ok", "cached", "skipped", "failed"):
        table.add_column(column, justify="right")
    table.add_row(*(str(s[k]) for k in ("jobs", "ok", "cached", "skipped", "failed")))
    out = Console()
    out.print(table)
    if runner.backbone.random_weights:
        out.print(f"[yellow]{runner.backbone.name}: {runner.backbone.note}[/]")
    for failure in s["failures"][:10]:
        out.print(f"[red]failed:[/] {failure}")


def command_list(what: str) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    if what == "methods":
        from partedit_bench.method_api import METHOD_REGISTRY, resolve_method_class

        for column in ("method", "families", "needs", "GT mask", "checkpoint", "description"):
            table.add_column(column)
        for name in sorted(METHOD_REGISTRY):
            cls = resolve_method_class(name)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            table.add_row(
                name,
                ",".join(sorted(cls.families)),
                ",".join(sorted(cls.needs)) or "-",
                "yes" if cls.uses_gt_mask else "no",
                cls.special_checkpoint or "-",
                doc,
            )
    elif what == "suites":
        from partedit_bench.data.suites import available_suites, load_suite

        for column in ("suite", "version", "samples", "parts", "description"):
            table.add_column(column)
        for name in available_suites():
            try:
                suite = load_suite(name)
                table.add_row(
                    name,
                    suite.version,
                    str(len(suite.samples)),
                    ", ".join(suite.parts),
                    suite.description,
                )
            except UserError as exc:
                table.add_row(name, "?", "?", "?", f"[red]{exc}[/]")
    else:
        from partedit_bench.backbones import BACKBONES

        for column in ("backbone", "family", "resolution", "source", "description"):
            table.add_column(column)
        for spec in BACKBONES.values():
            table.add_row(
                spec.name,
                spec.family,
                str(spec.resolution),
                spec.hub_id or "in-process",
                spec.description,
            )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
