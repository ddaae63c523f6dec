"""What every command module shares: the one-line-error parser, the run flags generated from
RunConfig, help texts, and the run summary."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, NoReturn

from partedit_bench.config import config_fields
from partedit_bench.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        command = self.prog.removeprefix("partedit-bench").strip()  # (the line says the tool)
        if not command and "required: command" in message:
            message = "which command? (`partedit-bench --help` lists run, evaluate, report...)"
        raise UserError(f"{command}: {message}" if command else message)


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
            shown = "" if default is None else f" (default: {default})"  # None: the text says
            parser.add_argument(flag, default=default, help=f"{help_text}{shown}")


#: Help for the arguments declared without one: (command path, dest) -> text.
_HELP = {
    ("list", "what"): "what to list",
    ("evaluate", "run_dir"): "a run folder (written by `run` or `import-edits`)",
    ("evaluate", "device"): "device for Alpha-CLIP (cpu, cuda, cuda:N, mps)",
    ("score", "source"): "the source image",
    ("score", "edited"): "the edited image (same size as the source)",
    ("score", "device"): "device for Alpha-CLIP (cpu, cuda, cuda:N, mps)",
    ("report", "run_dirs"): "one or more run folders; their rows are joined in one table",
    ("import-edits", "suite"): "the suite the edits belong to (name or suite.yaml)",
    ("train-token", "steps"): "optimization steps",
    ("train-token", "lr"): "learning rate of the token embedding",
    ("train-token", "loss"): "mask loss: binary cross-entropy or mean squared error",
    ("train-token", "mode"): "decoupled: against cached queries (the released code); coupled: "
    "through the UNet each step (the paper's text)",
    ("train-token", "seed"): "seed of the token's initialization and the training noise",
    ("train-token", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("train-token", "dtype"): "dtype of the backbone while training",
    ("partworld train", "no_progress"): "no progress bars (the log.jsonl is written either way)",
    ("partworld evaluate", "backbone"): "the backbone to generate with",
    ("partworld evaluate", "steps"): "sampling steps per image",
    ("partworld evaluate", "guidance"): "classifier-free guidance scale",
    ("partworld evaluate", "seed"): "seed of the first image",
    ("partworld evaluate", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("import-token", "file"): "the released token (.pt read weights-only, or .safetensors)",
    ("import-token", "backbone"): "the backbone the token was trained for (e.g. sdxl)",
    ("import-token", "part"): "the canonical part it localizes (e.g. humanoid-head)",
    ("import-token", "output"): "where to store it (default: benchmark_data/tokens/BACKBONE/)",
    ("import-token", "device"): "device the backbone loads on to check the token",
    ("userstudy export", "run_dir"): "the run folder whose edits are compared",
    ("userstudy export", "output"): "folder for index.html, images and the MTurk batch",
    ("userstudy analyze", "output"): "folder for the preference, agreement and consistency tables "
    "(CSV, LaTeX, JSON)",
    ("data validate", "suite"): "a suite name or suite.yaml",
    ("data build-synth", "suite"): "a prompt-config suite (name or suite.yaml)",
    ("data build-synth", "backbone"): "the backbone that generates the images",
    ("data build-synth", "steps"): "sampling steps per image",
    ("data build-synth", "guidance"): "classifier-free guidance scale",
    ("data build-synth", "limit"): "build only the first N samples",
    ("data build-synth", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("data build-synth", "dtype"): "auto, float32, float16, bfloat16, float64",
    ("data import-masks", "format"): "mask format of the source (auto detects it)",
    ("localize", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("maps", "device"): "the device the job is recomputed on",
    ("token-study", "lr"): "learning rate of the token embedding",
    ("token-study", "loss"): "mask loss: binary cross-entropy or mean squared error",
    ("token-study", "timesteps"): "the training timesteps: the released code's strength-0.25 "
    "range, or intermediate ones",
    ("token-study", "mode"): "decoupled: against cached queries (the released code); coupled: "
    "through the UNet each step (the paper's text)",
    ("token-study", "seed"): "seed of the first training run (the next seeds follow)",
    ("token-study", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("token-study", "dtype"): "dtype of the backbone while training",
    ("edit", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("edit", "dtype"): "auto (fp16 on a GPU for real weights, else fp32), float32, float16, "
    "bfloat16",
    ("demo", "backbone"): "the backbone the demo edits with (see `list backbones`)",
    ("demo", "host"): "the address the demo serves on (0.0.0.0: every interface)",
    ("demo", "port"): "the port the demo serves on",
    ("demo", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("demo", "dtype"): "auto (fp16 on a GPU for real weights, else fp32), float32, float16, "
    "bfloat16",
}


def _add_missing_help(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Every flag gets a help text (from _HELP when declared without one) that states its
    default when it has a value (never "(default: None)": a computed default says so in its
    text)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                _add_missing_help(sub, f"{path} {name}".strip())
        elif action.dest != "help" and action.help is not argparse.SUPPRESS:
            text = action.help if action.help is not None else _HELP.get((path, action.dest))
            if text is None:
                continue
            default = action.default
            shown = (
                default is not None
                and default is not False  # (0 is a default to state; False is a flag off)
                and default not in ([], "", argparse.SUPPRESS)
                and action.nargs != 0
                and "default" not in text
            )
            action.help = f"{text} (default: {default})" if shown else text


def _add_alpha_clip_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alpha-clip",
        default=None,
        help="Alpha-CLIP vision checkpoint (or PARTEDIT_BENCH_ALPHA_CLIP)",
    )
    parser.add_argument(
        "--clip",
        default=None,
        help="OpenAI CLIP weights, same architecture (or PARTEDIT_BENCH_CLIP)",
    )
    parser.add_argument("--alpha-clip-variant", default=None, help="default ViT-L/14@336")
    parser.add_argument("--device", default="cpu")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def print_run_summary(runner: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    s = runner.summary
    table = Table(title=f"{runner.root}  (shard {s['shard']})")
    columns = ["jobs", "ok", "cached", "skipped", "failed"]
    if s.get("claimed"):
        columns.insert(3, "claimed")  # by another worker on the same folder
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*(str(s[k]) for k in columns))
    out = Console()
    out.print(table)
    if runner.backbone.random_weights:
        out.print(f"[yellow]{runner.backbone.name}: {runner.backbone.note}[/]")
    for failure in s["failures"][:10]:
        out.print(f"[red]failed:[/] {failure}")
