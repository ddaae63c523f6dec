"""`train-token`, `import-token`: PartEdit's part tokens."""

from __future__ import annotations

import argparse
from typing import Any

from partedit_bench.cli._common import (
    _split,
)
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes
from partedit_bench.outputs import output_file, output_folder


def register(sub: Any) -> None:
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
    train.add_argument(
        "--layers",
        type=int,
        default=None,
        help="first N decoder cross-attention layers (default 8, or all a smaller backbone has)",
    )
    train.add_argument("--images", type=int, default=16, help="training images; rest held out")
    train.add_argument("--heldout", type=int, default=0, help="at most N held-out images (0: all)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--output-root", default=None, help="default benchmark_data/tokens")
    train.add_argument("--table", default=None, help="also write the mIoU table (Markdown)")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing tokens (e.g. the shipped ones) and --table",
    )
    train.add_argument("--device", default="auto")
    train.add_argument("--dtype", default="float32")

    study = sub.add_parser(
        "token-study",
        help="part-token studies as CSV + figure: per-layer mIoU (App. E), mIoU vs training "
        "images over seeds (App. B), across image subsets (App. J), time per layer set (App. Q)",
    )
    study.add_argument("kind", help="layers | images | subsets | time")
    study.add_argument("--backbone", required=True, help="one or several, comma-separated")
    study.add_argument("--part", required=True, help="canonical part(s), comma-separated")
    study.add_argument("--suite", default="partworld-train", help="images + part masks")
    study.add_argument("--output", required=True, help="folder for the CSVs and the figure")
    study.add_argument("--steps", type=int, default=1000, help="training steps per token")
    study.add_argument("--lr", type=float, default=30.0)
    study.add_argument("--loss", default="bce", choices=["bce", "mse"])
    study.add_argument("--timesteps", default="strength-0.25", choices=["intermediate",
                       "strength-0.25"])  # fmt: skip
    study.add_argument("--mode", default="decoupled", choices=["decoupled", "coupled"])
    study.add_argument(
        "--images", type=int, default=8, help="training images (layers, subsets, time)"
    )
    study.add_argument(
        "--pool",
        type=int,
        default=12,
        help="the first N images of a part train; the rest are held out",
    )
    study.add_argument("--heldout", type=int, default=0, help="at most N held-out images (0: all)")
    study.add_argument("--counts", default="1,2,4,8", help="images: training-set sizes")
    study.add_argument("--seeds", type=int, default=5, help="images, subsets: runs per point")
    study.add_argument(
        "--layer-sets",
        default="2,4,8,decoder,all",
        help="time: N (first N decoder layers), decoder, all",
    )
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--device", default="auto")
    study.add_argument("--dtype", default="float32")
    study.add_argument("--overwrite", action="store_true", help="replace earlier results")

    token = sub.add_parser("import-token", help="import an officially released part token")
    token.add_argument("file")
    token.add_argument("--backbone", required=True)
    token.add_argument("--part", required=True)
    token.add_argument("--output", default=None)
    token.add_argument("--device", default="cpu")
    token.add_argument(
        "--overwrite", action="store_true", help="replace an existing token (e.g. a shipped one)"
    )


def _train_config(args: argparse.Namespace, timesteps: str, layers: Any) -> Any:
    """The training recipe of `train-token` and `token-study` from their shared flags."""
    from partedit_bench.tokens.training import TrainConfig

    return TrainConfig(
        steps=args.steps,
        lr=args.lr,
        loss=args.loss,
        timesteps=timesteps,
        mode=args.mode,
        layers=layers,
        images=args.images,
        heldout=args.heldout,
        seed=args.seed,
    )


def command_train_token(args: argparse.Namespace, console: Any) -> int:
    import math
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from partedit_bench.data.schema import CANONICAL_PARTS
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.devices import pick_device
    from partedit_bench.errors import did_you_mean
    from partedit_bench.tokens import token_path
    from partedit_bench.tokens.training import TIMESTEP_SCHEDULES

    for name, low in (("steps", 1), ("images", 1), ("layers", 1), ("heldout", 0)):
        if getattr(args, name) is not None and getattr(args, name) < low:
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
    backbones = _split(args.backbone) or []
    if not backbones:
        raise UserError(f"train-token --backbone names no backbone: {args.backbone!r}")
    if args.output_root:
        output_folder(args.output_root, "train-token --output-root")
    if args.table:
        output_file(args.table, "train-token --table", args.overwrite)
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
        for name in backbones
        for part in parts
        if token_path(name, part, root).is_file()
    ]
    if existing and not args.overwrite:  # before anything loads or trains
        raise UserError(
            f"train-token would replace {len(existing)} existing token(s) ({existing[0]}"
            f"{', ...' if len(existing) > 1 else ''}); pass --overwrite, or --output-root DIR"
        )
    from partedit_bench.tokens.training import train_tokens

    device = pick_device(args.device)
    config = _train_config(args, schedules[0], args.layers or 8)
    rows = train_tokens(
        backbones,
        parts,
        suite,
        schedules,
        config,
        root,
        device,
        args.dtype,
        console,
        exact_layers=args.layers is not None,
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
        atomic_write_bytes(Path(args.table), ("\n".join(lines) + "\n").encode())
    return 0


def command_import_token(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from partedit_bench.data.schema import CANONICAL_PARTS
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.errors import did_you_mean
    from partedit_bench.tokens import import_target, import_token, read_released_token

    if not Path(args.file).is_file():  # before the backbone loads
        raise UserError(f"import-token: token file not found: {args.file}")
    if args.part not in CANONICAL_PARTS:
        raise UserError(
            f"unknown part token '{args.part}'{did_you_mean(args.part, CANONICAL_PARTS)}"
        )
    output = Path(args.output) if args.output else None
    read_released_token(args.file)  # a corrupt file stops before the backbone loads
    import_target(args.backbone, args.part, output, args.overwrite)  # so does a taken target
    backbone = load_backbone(args.backbone, args.device)
    path = import_token(args.file, backbone, args.part, output, args.overwrite)
    console.print(f"stored {path}")
    return 0


def command_token_study(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    import pandas as pd

    from partedit_bench.data.schema import CANONICAL_PARTS
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.engine.devices import pick_device
    from partedit_bench.errors import did_you_mean
    from partedit_bench.token_studies import (
        StudyConfig,
        check_study,
        result_files,
        run_study,
        split_pool,
        write_study,
    )
    from partedit_bench.tokens.training import TrainConfig

    for name, low in (("steps", 1), ("images", 1), ("heldout", 0), ("seed", 0)):
        if getattr(args, name) < low:
            raise UserError(
                f"token-study --{name} must be at least {low}, got {getattr(args, name)}"
            )
    try:
        counts = tuple(int(c) for c in _split(args.counts) or [])
    except ValueError as exc:
        raise UserError(f"token-study --counts expects integers, got {args.counts!r}") from exc
    study = StudyConfig(counts, args.seeds, args.pool, tuple(_split(args.layer_sets) or []))
    check_study(args.kind, study, args.images)
    output = Path(args.output)
    output_folder(output, "token-study --output")
    for name in result_files(args.kind):
        output_file(output / name, "token-study --output", args.overwrite)
    backbones = _split(args.backbone) or []
    suite = load_suite(args.suite)
    parts = _split(args.part) or []
    for part in parts:
        if part not in CANONICAL_PARTS:
            raise UserError(f"unknown part token '{part}'{did_you_mean(part, CANONICAL_PARTS)}")
        if part not in suite.parts:
            raise UserError(f"suite '{suite.name}' has no images of {part}")
    by_part = {p: [s for s in suite.samples if s.part_token == p] for p in parts}
    for part, samples in by_part.items():
        split_pool(samples, args.pool, part)  # before a backbone loads
    config = _train_config(args, args.timesteps, TrainConfig().layers)
    device = pick_device(args.device)
    rows = []
    with console.status(f"token-study {args.kind}") as status:
        done = [0]

        def advanced() -> None:
            done[0] += 1
            status.update(f"token-study {args.kind}: {done[0]} token(s) trained")

        for name in backbones:
            backbone = load_backbone(name, device, args.dtype)
            for part, samples in by_part.items():
                rows += run_study(args.kind, backbone, part, samples, config, study, advanced)
    paths = write_study(args.kind, pd.DataFrame(rows), output)
    console.print(f"wrote {paths['csv']}, {paths['summary'].name} and {paths['png'].name}")
    return 0


COMMANDS = {
    "train-token": command_train_token,
    "import-token": command_import_token,
    "token-study": command_token_study,
}
