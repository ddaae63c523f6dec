"""`userstudy export|analyze`: the 2AFC study."""

from __future__ import annotations

import argparse
from typing import Any

from partedit_bench.cli._common import _Parser, _split
from partedit_bench.errors import UserError


def register(sub: Any) -> None:
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
    export.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in --output"
    )
    analyze = study_sub.add_parser("analyze", help="preferences from the answers")
    analyze.add_argument("answers", nargs="+", help="study answer CSVs and/or MTurk results")
    analyze.add_argument(
        "--key",
        default=None,
        help="the study's study_key.json (written by export beside site/): which method was "
        "on which side",
    )
    analyze.add_argument(
        "--run",
        default=None,
        help="the study's run folder: how often each metric prefers the edit people chose "
        "(metric_agreement.csv), with Fleiss' kappa and Krippendorff's alpha",
    )
    analyze.add_argument("--metrics", default=None, help="with --run: these metrics only")
    analyze.add_argument("--output", required=True)
    analyze.add_argument(
        "--overwrite", action="store_true", help="replace earlier results in --output"
    )


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
            args.overwrite,
        )
        console.print(
            f"wrote {args.output}/site/ ({len(study['questions'])} questions; host this folder "
            f"only), and beside it study_key.json (keep it private), mturk_batch.csv and "
            "mturk_layout.html",
            highlight=False,
            soft_wrap=True,
        )
        return 0
    from partedit_bench.userstudy.analyze import analyze, check_output, read_answers, write_results

    check_output(Path(args.output), args.overwrite)
    key = Path(args.key) if args.key else None
    metrics = _split(args.metrics)
    if metrics:
        from partedit_bench.metrics.evaluate import groups_for

        groups_for(metrics)  # checks the names
        if not args.run:
            raise UserError("userstudy analyze --metrics needs --run (the study's run folder)")
    if args.run:
        from partedit_bench.store import load_run

        load_run(Path(args.run))  # a run folder, before the answers are read
    result = analyze(read_answers([Path(p) for p in args.answers], key))
    if args.run:
        from partedit_bench.userstudy.analyze import agreement_with

        agreement_with(result, Path(args.run), metrics)
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
    raters = result["inter_rater"]
    out.print(
        f"{result['raters']} raters, {len(result['dropped_raters'])} dropped for failed "
        f"attention checks; self-consistency on {result['repeated_pairs']} repeated "
        f"pairs: {result['consistency']:.1%}; Fleiss' kappa {raters['fleiss_kappa']:.3f}, "
        f"Krippendorff's alpha {raters['krippendorff_alpha']:.3f}"
    )
    if result.get("agreement") is not None:
        agree = Table(title="which metric agrees with people (share of decided answers)")
        for column in ("metric", "agreement", "95% CI", "agree / decided", "ties", "not scored"):
            agree.add_column(column)
        for r in result["agreement"].itertuples():
            decided = r.agree + r.disagree
            agree.add_row(
                f"{r.metric} ({r.direction})",
                f"{r.agreement:.1%}" if decided else "n/a",
                f"{r.ci_low:.1%} - {r.ci_high:.1%}" if decided > 1 else "n/a",
                f"{r.agree} / {decided}",
                str(r.ties),
                str(r.not_scored),
            )
        out.print(agree)
        if (result["agreement"].not_scored > 0).any():
            out.print(
                "not scored: a side without the metric's value (an empty region, a metric "
                f"not computed: `partedit-bench evaluate {args.run}` computes what is missing)"
            )
    return 0


COMMANDS = {"userstudy": command_userstudy}
