"""Decoupled vs coupled token training at equal steps, same backbone and images, one run.

Decoupled (the released code): queries computed once per image and timestep, then only E's
keys are in the loop. Coupled (the paper's text): every step runs the UNet conditioned on E
and back-propagates through it. Target: decoupled at least 10x faster.

    .venv/bin/python benchmarks/token_speed.py [--backbone tiny-sd] [--steps 50] [--images 4]
"""

from __future__ import annotations

import argparse
import time

from partedit_bench.data.suites import load_suite
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.tokens.training import TrainConfig, train_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="tiny-sd")
    parser.add_argument("--part", default="humanoid-torso")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    backbone = load_backbone(args.backbone, args.device)
    samples = [s for s in load_suite("partworld-train").samples if s.part_token == args.part][
        : args.images + 1
    ]
    seconds = {}
    for mode in ("decoupled", "coupled"):
        config = TrainConfig(steps=args.steps, images=args.images, mode=mode)
        start = time.perf_counter()
        result = train_token(backbone, args.part, samples, config)
        seconds[mode] = time.perf_counter() - start
        print(
            f"{mode:9s}: {seconds[mode]:7.2f} s for {args.steps} steps on {args.images} images "
            f"x {len(result.token.meta['timesteps'])} timesteps (train part "
            f"{result.seconds:.2f} s, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f})"
        )
    ratio = seconds["coupled"] / seconds["decoupled"]
    print(
        f"decoupled is {ratio:.1f}x faster on {args.backbone} ({backbone.device}); "
        f"target >= 10x: {'met' if ratio >= 10 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
