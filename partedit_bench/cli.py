"""`partedit-bench`: the command-line entry point."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
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

    evaluate = sub.add_parser("evaluate", help="score every job of a run folder (cached)")
    evaluate.add_argument("run_dir")
    evaluate.add_argument(
        "--metrics", default=None, help="comma-separated metric names (default: all available)"
    )
    _add_alpha_clip_arguments(evaluate)

    score = sub.add_parser("score", help="score one edit with every available metric")
    score.add_argument("source")
    score.add_argument("edited")
    score.add_argument("mask", help="single-channel binary mask, 1 = the edited part")
    score.add_argument("--prompt", default="", help="edit prompt; <part> tokens become --part")
    score.add_argument("--part", default="", help="plain words replacing a <part-token>")
    score.add_argument("--target", default=None, help="the true edited image (psnr_fg_gt)")
    score.add_argument("--predicted-mask", default=None, help="the method's mask (mask_iou)")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    _add_alpha_clip_arguments(score)

    report = sub.add_parser("report", help="tables from one or several run folders")
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--output", default=None, help="folder (default RUN_DIR/report)")
    report.add_argument("--metrics", default=None, help="comma-separated metric columns")

    imported = sub.add_parser("import-edits", help="a folder of edits becomes a method row")
    imported.add_argument(
        "source", nargs="?", default=None, help="folder of images named <sample-id>.png/.jpg"
    )
    imported.add_argument("--suite", required=True)
    imported.add_argument("--name", required=True, help="the row name")
    imported.add_argument(
        "--from-field",
        default=None,
        help="take each sample's image path from this suite field instead",
    )
    imported.add_argument(
        "--output",
        default=None,
        help="run folder to add the row to (default results/<suite>__imported)",
    )
    imported.add_argument(
        "--uses-gt-mask", action="store_true", help="mark the row as mask-based in tables"
    )
    train = sub.add_parser("train-token", help="train PartEdit part tokens")
    train.add_argument("--backbone", required=True, help="one or several, comma-separated")
    train.add_argument("--part", default="all", help="canonical part(s), comma-separated, or all")
    train.add_argument("--suite", default="partworld-train", help="images + part masks")
    train.add_argument("--steps", type=int, default=1000)
    train.add_argument("--lr", type=float, default=30.0)
    train.add_argument("--loss", default="bce", choices=["bce", "mse"])
    train.add_argument(
        "--timesteps",
        default="strength-0.25",
        help="intermediate | strength-0.25, or both comma-separated to compare "
        "(the token saved uses the first)",
    )
    train.add_argument("--mode", default="decoupled", choices=["decoupled", "coupled"])
    train.add_argument("--layers", type=int, default=8, help="first N decoder cross-attn layers")
    train.add_argument("--images", type=int, default=16, help="training images; rest held out")
    train.add_argument("--heldout", type=int, default=0, help="at most N held-out images (0: all)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--output-root", default=None, help="default benchmark_data/tokens")
    train.add_argument("--table", default=None, help="also write the mIoU table (Markdown)")
    train.add_argument(
        "--overwrite", action="store_true", help="replace existing tokens (e.g. the shipped ones)"
    )
    train.add_argument("--device", default="auto")
    train.add_argument("--dtype", default="float32")

    world = sub.add_parser("partworld", help="train and check the PartWorld backbone")
    world_sub = world.add_subparsers(dest="world_command", required=True, parser_class=_Parser)
    pw_train = world_sub.add_parser(
        "train", help="train the PartWorld backbone from scratch (resumable)"
    )
    pw_train.add_argument("--out", default=None, help="default models/partworld-sd")
    pw_train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training setting (see models/partworld-sd/training_config.json)",
    )
    pw_train.add_argument(
        "--stages", default="data,vae,decoder,unet,export", help="comma-separated subset to run"
    )
    pw_train.add_argument("--no-progress", action="store_true")
    pw_eval = world_sub.add_parser(
        "evaluate", help="prompt following: an attribute classifier reads generated images"
    )
    pw_eval.add_argument("--backbone", default="partworld-sd")
    pw_eval.add_argument("--captions", type=int, default=240, help="held-out captions")
    pw_eval.add_argument("--steps", type=int, default=25)
    pw_eval.add_argument("--guidance", type=float, default=7.5)
    pw_eval.add_argument("--seed", type=int, default=0)
    pw_eval.add_argument("--out", default=None, help="default <model folder>/eval")
    pw_eval.add_argument(
        "--classifier",
        default=None,
        help="classifier weights (default: models/partworld-sd/eval/classifier.safetensors, "
        "trained and saved there when missing)",
    )
    pw_eval.add_argument("--device", default="auto")

    token = sub.add_parser("import-token", help="import an officially released part token")
    token.add_argument("file")
    token.add_argument("--backbone", required=True)
    token.add_argument("--part", required=True)
    token.add_argument("--output", default=None)
    token.add_argument("--device", default="cpu")

    study = sub.add_parser("userstudy", help="2AFC user study: export and analyze")
    study_sub = study.add_subparsers(dest="study_command", required=True, parser_class=_Parser)
    export = study_sub.add_parser("export", help="a static study + MTurk batch from a run")
    export.add_argument("run_dir")
    export.add_argument("--pairs", required=True, help="a:b[,c:d]: method variants to compare")
    export.add_argument("--output", required=True)
    export.add_argument("--seed", type=int, default=0, help="seeds the left/right sides")
    export.add_argument("--base-url", default="", help="where the images will be hosted (MTurk)")
    export.add_argument("--catches", type=int, default=2, help="attention checks vs the source")
    export.add_argument("--repeats", type=int, default=2, help="repeated pairs (consistency)")
    analyze = study_sub.add_parser("analyze", help="preferences from the answers")
    analyze.add_argument("answers", nargs="+", help="study answer CSVs and/or MTurk results")
    analyze.add_argument("--output", required=True)

    data = sub.add_parser("data", help="build, import and validate suites")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    validate = data_sub.add_parser("validate", help="check every file, mask and field of a suite")
    validate.add_argument("suite")
    synth = data_sub.add_parser("build-synth", help="render a prompt-config suite's images")
    synth.add_argument("--suite", default="partedit-synth")
    synth.add_argument("--backbone", required=True)
    synth.add_argument(
        "--output", default=None, help="suite folder (default benchmark_data/<suite>@<backbone>)"
    )
    synth.add_argument("--steps", type=int, default=50)
    synth.add_argument("--guidance", type=float, default=7.5)
    synth.add_argument("--limit", type=int, default=None)
    synth.add_argument("--device", default="auto")
    synth.add_argument("--dtype", default="auto")
    masks = data_sub.add_parser("import-masks", help="attach GT masks to a suite folder")
    masks.add_argument("suite", help="suite folder or suite.yaml with a samples.jsonl")
    masks.add_argument("source", help="folder of <id>.png, a COCO JSON, or LabelMe JSON folder")
    masks.add_argument("--format", default="auto", choices=["auto", "png", "coco", "labelme"])
    masks.add_argument("--label", default=None, help="only polygons/categories with this label")
    hf = data_sub.add_parser("import-hf", help="import the published PartEdit-Bench")
    hf.add_argument(
        "source",
        nargs="+",
        help="save_to_disk folder, parquet file(s) or folder(s), a hub snapshot or cache "
        "folder, or a hub id",
    )
    hf.add_argument(
        "--revision",
        default=None,
        help="hub revision (branch, tag or commit; e.g. v1.1 adds token_cls); also picks the "
        "snapshot of a hub cache folder (default main)",
    )
    hf.add_argument(
        "--split",
        default=None,
        help="the split of sources that do not say (a renamed parquet file, a single-split "
        "save_to_disk folder)",
    )
    hf.add_argument("--name", default="partedit-bench-hf", help="suite name")
    hf.add_argument("--output", default=None, help="suite folder (default benchmark_data/NAME)")
    parts = data_sub.add_parser(
        "import-parts", help="token-training data from PartImageNet or PASCAL-Part"
    )
    parts.add_argument(
        "annotations",
        help="PartImageNet COCO-style JSON (e.g. train.json), or "
        "PASCAL-Part's Annotations_Part folder of .mat files",
    )
    parts.add_argument("--images", required=True, help="the folder its file_names are under")
    parts.add_argument("--output", required=True, help="suite folder to write")
    parts.add_argument("--parts", default=None, help="comma-separated canonical parts")
    parts.add_argument("--limit", type=int, default=None, help="at most N images per part")
    _add_missing_help(parser)
    return parser


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
    ("userstudy analyze", "output"): "folder for the preference table and figures",
    ("data validate", "suite"): "a suite name or suite.yaml",
    ("data build-synth", "suite"): "a prompt-config suite (name or suite.yaml)",
    ("data build-synth", "backbone"): "the backbone that generates the images",
    ("data build-synth", "steps"): "sampling steps per image",
    ("data build-synth", "guidance"): "classifier-free guidance scale",
    ("data build-synth", "limit"): "build only the first N samples",
    ("data build-synth", "device"): "auto (cuda when available), cpu, cuda, cuda:N, mps",
    ("data build-synth", "dtype"): "auto, float32, float16, bfloat16, float64",
    ("data import-masks", "format"): "mask format of the source (auto detects it)",
}


def _add_missing_help(parser: argparse.ArgumentParser, path: str = "") -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                _add_missing_help(sub, f"{path} {name}".strip())
        elif action.help is None and action.dest != "help":
            text = _HELP.get((path, action.dest))
            if text is not None:
                default = action.default
                shown = default not in (None, False) and action.nargs != 0
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


#: OSError numbers that mean "the disk will not take it": one line, not a traceback.
WRITE_ERRORS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG") if hasattr(errno, name)
)


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
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return command_run(args, err)
        if args.command == "list":
            return command_list(args.what)
        if args.command == "evaluate":
            return command_evaluate(args, err)
        if args.command == "score":
            return command_score(args)
        if args.command == "report":
            return command_report(args)
        if args.command == "import-edits":
            return command_import_edits(args, err)
        if args.command == "data":
            return command_data(args, err)
        if args.command == "userstudy":
            return command_userstudy(args, err)
        if args.command == "train-token":
            return command_train_token(args, err)
        if args.command == "import-token":
            return command_import_token(args, err)
        if args.command == "partworld":
            return command_partworld(args, err)
    except UserError as exc:
        err.print(f"partedit-bench: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        err.print(
            f"partedit-bench: error: cannot write{where}: {exc.strerror}; every file written "
            "before is intact (writes are atomic): free space and rerun the same command",
            markup=False,
            highlight=False,
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
    return 0


def command_run(args: argparse.Namespace, console: Any) -> int:
    from partedit_bench.runner import Runner

    values = {f.name: getattr(args, f.name) for f in config_fields()}
    cfg = RunConfig(**values)
    runner = Runner(cfg, console)
    code = runner.run()
    if not runner.record_paths:  # e.g. --shard 999/1000 of a smaller run: nothing to do here
        console.print(f"shard {runner.shard.label} has no jobs in {runner.root}")
        return 0
    print_run_summary(runner)
    from partedit_bench.metrics.evaluate import evaluate_run
    from partedit_bench.report import build_report, print_report

    evaluate_run(runner.root, metrics=["psnr_bg"], only=set(runner.record_paths), console=console)
    from rich.console import Console

    print_report(build_report([runner.root]), Console())
    return code


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def command_evaluate(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from partedit_bench.metrics.evaluate import evaluate_run

    counts = evaluate_run(
        Path(args.run_dir),
        _split(args.metrics),
        args.alpha_clip,
        args.clip,
        args.alpha_clip_variant,
        args.device,
        console=console,
    )
    console.print(
        f"evaluated {counts['jobs']} jobs: {counts['computed']} metric rows computed, "
        f"{counts['cached']} cached"
    )
    return 0


def command_score(args: argparse.Namespace) -> int:
    import json
    import math

    import numpy as np
    from PIL import Image

    from partedit_bench.data.schema import load_image, load_mask
    from partedit_bench.metrics import METRICS, ScoredEdit, foreground_text
    from partedit_bench.metrics.evaluate import AlphaClipGroup, pixel_group, to_float

    source = load_image(args.source)
    edited = load_image(args.edited)
    if edited.size != source.size:  # as evaluate: an edit of another size is not scored
        raise UserError(
            f"{args.edited} is {edited.size[0]}x{edited.size[1]} but {args.source} is "
            f"{source.size[0]}x{source.size[1]}; resize the edit first if that is intended"
        )
    mask = load_mask(args.mask, source.size)
    target = load_image(args.target) if args.target else None
    if target is not None and target.size != source.size:
        raise UserError(f"--target {args.target} is {target.size}, not {source.size}")
    predicted = None
    if args.predicted_mask:  # a soft mask: gray levels / 255, at the source's size
        try:
            with Image.open(args.predicted_mask) as img:
                gray = img.convert("L")
        except OSError as exc:
            raise UserError(f"--predicted-mask {args.predicted_mask}: unreadable ({exc})") from exc
        if gray.size != source.size:
            raise UserError(
                f"--predicted-mask {args.predicted_mask} is {gray.size}, not {source.size}"
            )
        predicted = np.asarray(gray, np.float64) / 255
    edit = ScoredEdit(
        to_float(source),
        to_float(edited),
        mask,
        target=None if target is None else to_float(target),
        predicted_mask=predicted,
        fg_text=foreground_text(args.prompt, args.part),
    )
    values: dict[str, float | None] = dict(pixel_group(edit))
    reason = None
    if args.prompt:
        from partedit_bench.metrics.alpha_clip import DEFAULT_VARIANT, AlphaCLIP

        variant = args.alpha_clip_variant or DEFAULT_VARIANT
        try:
            scorer = AlphaCLIP.load(args.alpha_clip, args.clip, variant, args.device)
            values.update(AlphaClipGroup(scorer, variant)(edit))
        except UserError as exc:
            if args.alpha_clip:
                raise
            reason = str(exc)
    else:
        reason = "aclip_* need --prompt"
    for name in METRICS:
        values.setdefault(name, None)
    clean = {k: (None if v is None or math.isnan(v) else v) for k, v in values.items()}
    if args.json:
        why = {"mask_iou": "needs --predicted-mask", "psnr_fg_gt": "needs --target"}
        missing = {
            k: (reason if k.startswith("aclip") else why.get(k)) or "undefined for this input"
            for k, v in clean.items()
            if v is None
        }
        print(json.dumps({**clean, "not_available": missing}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in clean.items():
        table.add_row(f"{name} {METRICS[name].arrow}", "n/a" if value is None else f"{value:.6g}")
    Console().print(table)
    if reason:
        Console().print(f"[yellow]aclip n/a:[/] {reason}", highlight=False)
    return 0


def command_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from partedit_bench.report import build_report, print_report

    metrics = _split(args.metrics)
    if metrics:
        from partedit_bench.metrics.evaluate import groups_for

        groups_for(metrics)  # checks the names
    result = build_report([Path(p) for p in args.run_dirs], args.output, metrics)
    print_report(result, Console())
    return 0


def command_import_edits(args: argparse.Namespace, console: Any) -> int:
    from partedit_bench.importing import import_edits

    root, count = import_edits(
        args.source, args.suite, args.name, args.from_field, args.output, args.uses_gt_mask
    )
    console.print(
        f"imported {count} edits as '{args.name}' into {root}; "
        f"run `partedit-bench evaluate {root}` then `report`"
    )
    return 0


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
        from partedit_bench.data.schema import CANONICAL_PARTS
        from partedit_bench.data.suites import available_suites, load_suite

        for column in ("suite", "version", "samples", "parts", "kind"):
            table.add_column(column)
        for name in available_suites():
            try:
                suite = load_suite(name)
                kind = suite.definition.get("role") or (
                    "prompts (build-synth)"
                    if "generator" in suite.definition
                    and suite.definition["generator"].get("type") == "prompt-config"
                    else suite.samples[0].split
                )
                parts = (
                    "all 7" if len(suite.parts) == len(CANONICAL_PARTS) else ", ".join(suite.parts)
                )
                table.add_row(name, suite.version, str(len(suite.samples)), parts, kind)
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
                spec.hub_id or ("models/" + spec.folder.name if spec.folder else "in-process"),
                spec.description,
            )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def command_data(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from partedit_bench.data import builders

    if args.data_command == "validate":
        count, problems = builders.validate_suite(args.suite)
        for problem in problems:
            console.print(f"[red]problem:[/] {problem}", highlight=False, soft_wrap=True)
        if problems:
            console.print(f"{args.suite}: {len(problems)} problem(s) in {count} samples")
            return 1
        console.print(f"{args.suite}: {count} samples, no problems")
        return 0
    if args.data_command == "build-synth":
        suite_file, missing = builders.build_synth(
            args.suite,
            args.backbone,
            args.output,
            args.steps,
            args.guidance,
            args.device,
            args.dtype,
            args.limit,
            console,
        )
        console.print(f"wrote {suite_file}")
        if missing:
            console.print(
                f"{len(missing)} samples still need a GT mask ({', '.join(missing[:8])}"
                f"{' ...' if len(missing) > 8 else ''}); annotate them and run "
                f"`partedit-bench data import-masks {suite_file.parent} SOURCE`"
            )
        return 0
    if args.data_command == "import-masks":
        attached, missing = builders.import_masks(args.suite, args.source, args.format, args.label)
        console.print(f"attached {attached} masks; {len(missing)} samples still without one")
        return 0
    if args.data_command == "import-hf":
        suite_file, count, warnings = builders.import_hf(
            args.source, args.name, args.output, revision=args.revision, split=args.split
        )
        console.print(f"imported {count} samples into {suite_file}")
        for warning in warnings:
            console.print(f"[yellow]check:[/] {warning} (kept as labelled)")
        return 0
    importer = (
        builders.import_pascal_part
        if Path(args.annotations).is_dir()
        else builders.import_partimagenet
    )
    suite_file, count = importer(
        args.annotations, args.images, args.output, parts=_split(args.parts), limit=args.limit
    )
    console.print(f"imported {count} part masks into {suite_file}")
    return 0


def command_train_token(args: argparse.Namespace, console: Any) -> int:
    import math
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from partedit_bench.backbones import load_backbone
    from partedit_bench.data.schema import CANONICAL_PARTS
    from partedit_bench.data.suites import load_suite
    from partedit_bench.errors import did_you_mean
    from partedit_bench.runner import Shard, pick_device
    from partedit_bench.tokens import TIMESTEP_SCHEDULES, TrainConfig, token_path, train_token

    for name, low in (("steps", 1), ("images", 1), ("layers", 1), ("heldout", 0)):
        if getattr(args, name) < low:
            raise UserError(
                f"train-token --{name} must be at least {low}, got {getattr(args, name)}"
            )
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"train-token --lr must be a positive number, got {args.lr}")
    schedules = _split(args.timesteps) or ["strength-0.25"]
    for schedule in schedules:
        if schedule not in TIMESTEP_SCHEDULES:
            raise UserError(
                f"unknown timestep schedule '{schedule}'"
                f"{did_you_mean(schedule, TIMESTEP_SCHEDULES)}"
            )
    suite = load_suite(args.suite)
    parts = suite.parts if args.part == "all" else (_split(args.part) or [])
    for part in parts:
        if part not in CANONICAL_PARTS:
            raise UserError(f"unknown part token '{part}'{did_you_mean(part, CANONICAL_PARTS)}")
        if part not in suite.parts:
            raise UserError(f"suite '{suite.name}' has no images of {part}")
    root = Path(args.output_root) if args.output_root else None
    existing = [
        str(token_path(name, part, root))
        for name in _split(args.backbone) or []
        for part in parts
        if token_path(name, part, root).is_file()
    ]
    if existing and not args.overwrite:  # before anything loads or trains
        raise UserError(
            f"train-token would replace {len(existing)} existing token(s) ({existing[0]}"
            f"{', ...' if len(existing) > 1 else ''}); pass --overwrite, or --output-root DIR"
        )
    rows = []
    device = pick_device(args.device, Shard(0, 1))
    for backbone_name in _split(args.backbone) or []:
        backbone = load_backbone(backbone_name, device, args.dtype)
        for part in parts:
            samples = [s for s in suite.samples if s.part_token == part]
            for i, schedule in enumerate(schedules):
                config = TrainConfig(
                    steps=args.steps,
                    lr=args.lr,
                    loss=args.loss,
                    timesteps=schedule,
                    mode=args.mode,
                    layers=args.layers,
                    images=args.images,
                    heldout=args.heldout,
                    seed=args.seed,
                )
                with Progress(console=console, transient=True) as progress:
                    task = progress.add_task(f"{backbone_name} {part} {schedule}", total=args.steps)
                    result = train_token(
                        backbone,
                        part,
                        samples,
                        config,
                        lambda loss, t=task, p=progress: p.update(
                            t, advance=1, description=f"loss {loss:.4f}"
                        ),
                    )
                if i == 0:
                    path = result.token.save(token_path(backbone.name, part, root))
                    console.print(f"saved {path}")
                if not result.heldout:
                    console.print(
                        f"[yellow]{part}: no image held out ({len(samples)} images, "
                        f"--images {args.images}); its mIoU is on the training images[/]"
                    )
                rows.append(
                    [
                        backbone_name,
                        part,
                        schedule,
                        f"{result.miou:.3f}" + ("" if result.heldout else " (training)"),
                        f"{result.miou_all_part:.3f}",
                        f"{result.miou_random:.3f}",
                        f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}",
                        f"{result.seconds:.0f}",
                    ]
                )
    header = [
        "backbone",
        "part",
        "timesteps",
        "mIoU trained",
        "all-part mask",
        "random token",
        "loss",
        "train s",
    ]
    table = Table(title="held-out mIoU (Otsu-binarized maps)")
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if args.table:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text("\n".join(lines) + "\n")
    return 0


def command_import_token(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from partedit_bench.backbones import load_backbone
    from partedit_bench.data.schema import CANONICAL_PARTS
    from partedit_bench.errors import did_you_mean
    from partedit_bench.tokens import import_token, read_released_token

    if not Path(args.file).is_file():  # before the backbone loads
        raise UserError(f"import-token: token file not found: {args.file}")
    if args.part not in CANONICAL_PARTS:
        raise UserError(
            f"unknown part token '{args.part}'{did_you_mean(args.part, CANONICAL_PARTS)}"
        )
    read_released_token(args.file)  # a corrupt file stops before the backbone loads
    backbone = load_backbone(args.backbone, args.device)
    path = import_token(args.file, backbone, args.part, Path(args.output) if args.output else None)
    console.print(f"stored {path}")
    return 0


def command_userstudy(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    if args.study_command == "export":
        from partedit_bench.userstudy.export import export_study, parse_pairs

        study = export_study(
            Path(args.run_dir),
            parse_pairs(args.pairs),
            Path(args.output),
            args.seed,
            args.base_url,
            args.catches,
            args.repeats,
        )
        console.print(
            f"wrote {args.output}/index.html ({len(study['questions'])} questions), "
            "mturk_batch.csv and mturk_layout.html"
        )
        return 0
    from partedit_bench.userstudy.analyze import analyze, read_answers, write_results

    result = analyze(read_answers([Path(p) for p in args.answers]))
    write_results(result, Path(args.output))
    table = Table(title="2AFC preference for the first method of each pair")
    for column in ("pair", "preference", "95% CI", "p", "responses", "raters"):
        table.add_column(column)
    for row in result["pairs"].itertuples():
        table.add_row(
            row.pair,
            f"{row.preference:.1%}",
            f"{row.ci_low:.1%} - {row.ci_high:.1%}",
            f"{row.p_value:.3g}",
            str(row.responses),
            str(row.raters),
        )
    out = Console()
    out.print(table)
    out.print(
        f"{result['raters']} raters, {len(result['dropped_raters'])} dropped for failed "
        f"attention checks; self-consistency on {result['repeated_pairs']} repeated "
        f"pairs: {result['consistency']:.1%}"
    )
    return 0


def command_partworld(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from partedit_bench.backbones import PARTWORLD_FOLDER

    if args.world_command == "train":
        from partedit_bench.partworld_model import STAGES, PartWorldTrainConfig, Trainer

        stages = tuple(_split(args.stages) or [])

        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise UserError(f"unknown stage(s) {', '.join(unknown)}: use {','.join(STAGES)}")
        out = Path(args.out) if args.out else PARTWORLD_FOLDER
        config = PartWorldTrainConfig().with_overrides(args.set)
        console.print(f"training the PartWorld backbone into {out} (resumable: rerun to go on)")
        Trainer(out, config, progress=not args.no_progress).run(stages)
        console.print(f"done: {out}")
        return 0
    from rich.console import Console
    from safetensors.torch import load_file, save_file

    from partedit_bench.backbones import BACKBONES, load_backbone
    from partedit_bench.partworld_eval import (
        AttributeClassifier,
        prompt_following,
        train_classifier,
        write_result,
    )
    from partedit_bench.runner import Shard, pick_device

    default_clf = PARTWORLD_FOLDER / "eval" / "classifier.safetensors"
    clf_path = Path(args.classifier) if args.classifier else default_clf
    if args.classifier and not clf_path.is_file():
        raise UserError(f"classifier weights not found: {clf_path}")
    accuracy_path = clf_path.with_suffix(".json")
    device = pick_device(args.device, Shard(0, 1))
    backbone = load_backbone(args.backbone, device, "float32")
    spec = BACKBONES.get(args.backbone)
    folder = spec.folder if spec is not None and spec.folder else Path(args.backbone)
    out = Path(args.out) if args.out else folder / "eval"
    if clf_path.is_file():
        classifier = AttributeClassifier()
        classifier.load_state_dict(load_file(clf_path))
        accuracy = json.loads(accuracy_path.read_text()) if accuracy_path.is_file() else {}
    else:
        console.print("training the attribute classifier on PartWorld renders (a few minutes)")
        classifier, accuracy = train_classifier()
        clf_path.parent.mkdir(parents=True, exist_ok=True)
        save_file(classifier.state_dict(), str(clf_path))
        accuracy_path.write_text(json.dumps(accuracy, indent=2) + "\n")
    result = prompt_following(
        backbone,
        n=args.captions,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        classifier=classifier,
        classifier_accuracy=accuracy,
        images_out=out / "samples.png",
    )
    write_result(result, out)
    Console().print(result.markdown(), markup=False, highlight=False)
    console.print(f"wrote {out / 'prompt_following.md'} and {out / 'samples.png'}")
    return 0
