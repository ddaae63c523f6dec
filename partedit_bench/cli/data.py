"""`data validate|build-synth|import-masks|import-hf|import-parts`: suites."""

from __future__ import annotations

import argparse
from typing import Any

from partedit_bench.cli._common import (
    _Parser,
    _split,
)


def register(sub: Any) -> None:
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
    masks.add_argument(
        "--overwrite", action="store_true", help="replace masks the suite already has"
    )
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
    hf.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier import in that folder (nothing else is ever replaced)",
    )
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
    parts.add_argument(
        "--overwrite", action="store_true", help="replace an earlier import in --output"
    )


def command_data(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from partedit_bench import synth
    from partedit_bench.data import annotations, hub, part_datasets, validate

    if args.data_command == "validate":
        count, problems = validate.validate_suite(args.suite)
        for problem in problems:
            console.print(f"[red]problem:[/] {problem}", highlight=False, soft_wrap=True)
        if problems:
            console.print(f"{args.suite}: {len(problems)} problem(s) in {count} samples")
            return 1
        console.print(f"{args.suite}: {count} samples, no problems")
        return 0
    if args.data_command == "build-synth":
        suite_file, missing = synth.build_synth(
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
        attached, missing = annotations.import_masks(
            args.suite, args.source, args.format, args.label, args.overwrite
        )
        console.print(f"attached {attached} masks; {len(missing)} samples still without one")
        return 0
    if args.data_command == "import-hf":
        suite_file, count, warnings, excluded = hub.import_hf(
            args.source,
            args.name,
            args.output,
            revision=args.revision,
            split=args.split,
            overwrite=args.overwrite,
        )
        console.print(f"imported {count} samples into {suite_file}")
        if excluded:
            console.print(
                f"[yellow]left out {len(excluded)} row(s) with nothing to score:[/] "
                f"{', '.join(excluded[:8])}{' ...' if len(excluded) > 8 else ''} "
                "(listed in the suite's README.md)",
                highlight=False,
                soft_wrap=True,
            )
        for warning in warnings:
            console.print(f"[yellow]check:[/] {warning} (kept as labelled)")
        return 0
    importer = (
        part_datasets.import_pascal_part
        if Path(args.annotations).is_dir()
        else part_datasets.import_partimagenet
    )
    suite_file, count = importer(
        args.annotations,
        args.images,
        args.output,
        parts=_split(args.parts),
        limit=args.limit,
        overwrite=args.overwrite,
    )
    console.print(f"imported {count} part masks into {suite_file}")
    return 0


COMMANDS = {"data": command_data}
