"""`run`, `list`, `evaluate`, `score`, `report`, `import-edits`: the benchmark's own commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from partedit_bench.cli._common import (
    _add_alpha_clip_arguments,
    _add_run_arguments,
    _split,
    print_run_summary,
)
from partedit_bench.config import RunConfig, config_fields
from partedit_bench.errors import UserError


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run methods on a suite (resumable, shardable)")
    _add_run_arguments(run)

    listing = sub.add_parser("list", help="list methods, suites, backbones or metrics")
    listing.add_argument("what", choices=["methods", "suites", "backbones", "metrics"])

    evaluate = sub.add_parser("evaluate", help="score every job of a run folder (cached)")
    evaluate.add_argument("run_dir")
    evaluate.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric names (default: the pixel and aclip groups, `list metrics`)",
    )
    evaluate.add_argument(
        "--group",
        default=None,
        help="comma-separated metric groups to compute: pixel, aclip, pie (PIE-Bench's "
        "networks), magicbrush, judge (an MLLM judge)",
    )
    evaluate.add_argument(
        "--networks",
        default="real",
        choices=["real", "tiny", "random"],
        help="pie/magicbrush networks: the real checkpoints; tiny or random (random weights: "
        "tests and the parity harness only)",
    )
    evaluate.add_argument(
        "--judge-model",
        default=None,
        help="judge group: an image-text-to-text model id or folder, in-process (default "
        "Qwen/Qwen2.5-VL-7B-Instruct); with --judge-url, the served model's name",
    )
    evaluate.add_argument(
        "--judge-url",
        default=None,
        help="judge group: an OpenAI-compatible API root (vLLM, SGLang, transformers serve), "
        "e.g. http://localhost:8000/v1",
    )
    evaluate.add_argument(
        "--judge-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the endpoint's key (never stored)",
    )
    evaluate.add_argument(
        "--judge-mode",
        default="both",
        choices=["vie", "part", "both"],
        help="VIEScore's SC/PQ/O, the part-aware question, or both",
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
    report.add_argument(
        "--by-split",
        action="store_true",
        help="blocks per split only, a column naming each row's backbone (runs of several "
        "backbones in one table; default: a block per split and backbone)",
    )
    report.add_argument(
        "--samples",
        default=None,
        help="comma-separated sample ids: plots/qualitative.png, the source and one column "
        "per row (the paper's Figs. 8, 9, 14)",
    )
    report.add_argument(
        "--sweep-plot",
        default="auto",
        choices=["auto", "line", "bar"],
        help="a swept option drawn as lines against its value (numbers only) or as bars "
        "(auto: lines for numbers, bars otherwise)",
    )

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


def command_run(args: argparse.Namespace, console: Any) -> int:
    from rich.console import Console

    from partedit_bench.benchmark import run_benchmark
    from partedit_bench.report import print_report

    cfg = RunConfig(**{f.name: getattr(args, f.name) for f in config_fields()})
    result = run_benchmark(cfg, console)
    if result.report is None:
        console.print(f"shard {result.runner.shard.label} has no jobs in {result.root}")
        return 0
    print_run_summary(result.runner)
    print_report(result.report, Console())
    return result.code


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
        groups=_split(args.group),
        networks=args.networks,
        judge={
            "model": None if args.judge_url else args.judge_model,
            "url": args.judge_url,
            "api_model": args.judge_model if args.judge_url else None,
            "key_env": args.judge_key_env,
            "mode": args.judge_mode,
        },
    )
    console.print(
        f"evaluated {counts['jobs']} jobs: {counts['computed']} metric rows computed, "
        f"{counts['cached']} cached"
    )
    from rich.markup import escape

    for group, reason in (counts.get("unavailable") or {}).items():
        console.print(f"[yellow]{group} metrics not computed:[/] {escape(reason)}", highlight=False)
    return 0


def command_score(args: argparse.Namespace) -> int:
    from partedit_bench.metrics import METRICS
    from partedit_bench.metrics.evaluate import score_files

    clean, missing = score_files(
        args.source,
        args.edited,
        args.mask,
        target=args.target,
        predicted_mask=args.predicted_mask,
        prompt=args.prompt,
        part=args.part,
        alpha_clip=args.alpha_clip,
        clip=args.clip,
        variant=args.alpha_clip_variant,
        device=args.device,
    )
    reason = next((v for k, v in missing.items() if k.startswith("aclip")), None)
    if args.json:
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
    result = build_report(
        [Path(p) for p in args.run_dirs],
        args.output,
        metrics,
        by_backbone=not args.by_split,
        sweep_plot=args.sweep_plot,
    )
    if args.samples:
        from partedit_bench.plots import write_qualitative

        path = write_qualitative(Path(args.run_dirs[0]), _split(args.samples) or [], result)
        result["plots"].append(path)
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


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line (never cut mid-way)."""
    import inspect
    import re

    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    match = re.search(r"^.*?[.!?](?=\s|$)", text)
    return match.group(0) if match else text


def command_list(what: str) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    from rich.markup import escape

    if what == "methods":
        from partedit_bench.api import METHOD_REGISTRY, resolve_method_class

        first = "method"  # (a name is never wrapped)
        for column in ("method", "families", "needs", "GT mask", "checkpoint", "description"):
            table.add_column(column, no_wrap=column == first)
        for name in sorted(METHOD_REGISTRY):
            cls = resolve_method_class(name)
            doc = first_sentence(cls.__doc__ or "")
            table.add_row(
                name,
                ",".join(sorted(cls.families)),
                ",".join(sorted(cls.needs)) or "-",
                "yes" if cls.uses_gt_mask else "no",
                cls.special_checkpoint or "-",
                escape(doc),
            )
    elif what == "suites":
        from partedit_bench.data.schema import CANONICAL_PARTS
        from partedit_bench.data.suites import available_suites, load_suite

        first = "suite"  # (a name is never wrapped)
        for column in ("suite", "version", "samples", "parts", "kind"):
            table.add_column(column, no_wrap=column == first)
        from rich.console import Console as StatusConsole

        status = StatusConsole(stderr=True).status("reading the suites")
        status.start()  # (a procedural suite renders into the cache on first use)
        for name in available_suites():
            status.update(f"reading suite {name} (a procedural one renders once into the cache)")
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
                table.add_row(name, "?", "?", "?", f"[red]{escape(str(exc))}[/]")
        status.stop()
    elif what == "metrics":
        from partedit_bench.metrics import GROUPS, METRICS
        from partedit_bench.metrics.evaluate import DEFAULT_GROUPS

        first = "metric"  # (a name is never wrapped)
        for column in ("metric", "group", "better", "needs", "description"):
            table.add_column(column, no_wrap=column == first)
        for metric in sorted(METRICS.values(), key=lambda m: GROUPS.index(m.group)):
            table.add_row(
                metric.name,
                metric.group + ("" if metric.group in DEFAULT_GROUPS else " *"),
                "higher" if metric.higher_is_better else "lower",
                escape(metric.needs or "-"),
                escape(metric.description),
            )
        table.caption = (
            "* computed when asked for: evaluate --group pie,magicbrush,judge (or --metrics NAME)"
        )
    else:
        from partedit_bench.engine.registry import BACKBONES

        first = "backbone"  # (a name is never wrapped)
        for column in ("backbone", "family", "resolution", "source", "description"):
            table.add_column(column, no_wrap=column == first)
        for spec in BACKBONES.values():
            table.add_row(
                spec.name,
                spec.family,
                str(spec.resolution),
                spec.hub_id or ("models/" + spec.folder.name if spec.folder else "in-process"),
                escape(spec.description),  # ("FLUX.1 [dev]" is not markup)
            )
    Console().print(table)
    return 0


COMMANDS = {
    "run": command_run,
    "list": lambda args, console: command_list(args.what),
    "evaluate": command_evaluate,
    "score": lambda args, console: command_score(args),
    "report": lambda args, console: command_report(args),
    "import-edits": command_import_edits,
}
