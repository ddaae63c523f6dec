"""`partworld train|evaluate`: the shipped default backbone."""

from __future__ import annotations

import argparse
import json
from typing import Any

from partedit_bench.cli._common import (
    _Parser,
    _split,
)
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes
from partedit_bench.outputs import is_shipped, output_file, output_folder


def register(sub: Any) -> None:
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
    pw_train.add_argument(
        "--overwrite",
        action="store_true",
        help="train into the shipped models/partworld-sd (it changes the shipped model)",
    )
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
    pw_eval.add_argument(
        "--overwrite", action="store_true", help="replace earlier results in --out"
    )


def command_partworld(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from partedit_bench.engine.registry import PARTWORLD_FOLDER

    if args.world_command == "train":
        from partedit_bench.partworld.model import STAGES, PartWorldTrainConfig
        from partedit_bench.partworld.train import Trainer

        stages = tuple(_split(args.stages) or [])

        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise UserError(f"unknown stage(s) {', '.join(unknown)}: use {','.join(STAGES)}")
        out = Path(args.out) if args.out else PARTWORLD_FOLDER
        config = PartWorldTrainConfig().with_overrides(args.set)
        output_folder(out, "partworld train --out")
        if is_shipped(out) and out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise UserError(
                f"partworld train --out {out} holds the shipped model; pass --overwrite to "
                "train into it, or --out DIR"
            )
        console.print(f"training the PartWorld backbone into {out} (resumable: rerun to go on)")
        Trainer(out, config, progress=not args.no_progress).run(stages)
        console.print(f"done: {out}")
        return 0
    from rich.console import Console
    from safetensors.torch import load_file

    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.engine.devices import pick_device
    from partedit_bench.engine.registry import BACKBONES
    from partedit_bench.partworld.evaluate import (
        AttributeClassifier,
        prompt_following,
        train_classifier,
        write_result,
    )

    default_clf = PARTWORLD_FOLDER / "eval" / "classifier.safetensors"
    clf_path = Path(args.classifier) if args.classifier else default_clf
    if args.classifier and not clf_path.is_file():
        raise UserError(f"classifier weights not found: {clf_path}")
    accuracy_path = clf_path.with_suffix(".json")
    spec = BACKBONES.get(args.backbone)
    folder = spec.folder if spec is not None and spec.folder else Path(args.backbone)
    out = Path(args.out) if args.out else folder / "eval"
    for name in ("prompt_following.json", "prompt_following.md", "samples.png"):
        output_file(out / name, "partworld evaluate --out", args.overwrite)  # before loading
    device = pick_device(args.device)
    backbone = load_backbone(args.backbone, device, "float32")
    if clf_path.is_file():
        classifier = AttributeClassifier()
        try:
            classifier.load_state_dict(load_file(clf_path))
        except Exception as exc:  # not safetensors, or another network's weights
            raise UserError(f"cannot read classifier weights {clf_path}: {exc}") from exc
        accuracy = json.loads(accuracy_path.read_text()) if accuracy_path.is_file() else {}
    else:
        console.print("training the attribute classifier on PartWorld renders (a few minutes)")
        classifier, accuracy = train_classifier()
        from safetensors.torch import save

        atomic_write_bytes(clf_path, save(classifier.state_dict()))
        atomic_write_bytes(accuracy_path, (json.dumps(accuracy, indent=2) + "\n").encode())
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


COMMANDS = {"partworld": command_partworld}
