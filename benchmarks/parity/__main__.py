"""`make parity OFFICIAL=<folder>`: every parity harness of this folder against the official
checkouts under OFFICIAL (each in the folder `benchmarks.parity.common.CHECKOUTS` names, at its
commit), printing each method's table; a method whose checkout is missing is skipped with one
line saying how to get it. Exit 0 unless a case exceeds the tolerance without a documented
deviation.

    python -m benchmarks.parity OFFICIAL [--methods blended_latent,...]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # (run from anywhere)

#: the methods with a harness in this folder (module name = method name)
HARNESSES = [
    "partedit",
    "blended_latent",
    "ef_ddpm",
    "ledits_pp",
    "masactrl",
    "p2p",
    "stable_flow",
    "alignment",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__)
    parser.add_argument("official", help="the folder holding the official checkouts")
    parser.add_argument("--methods", default=",".join(HARNESSES))
    args = parser.parse_args(argv)
    official = Path(args.official)
    failed = 0
    for method in [m for m in args.methods.split(",") if m]:
        if method not in HARNESSES:
            print(f"parity: no harness for '{method}' (harnesses: {', '.join(HARNESSES)})")
            return 2
        harness = importlib.import_module(f"benchmarks.parity.{method}")
        checkout = official / harness.CHECKOUT.folder
        if not checkout.is_dir():
            print(
                f"skip {method}: no checkout at {checkout} "
                f"(get it: {harness.CHECKOUT.clone_command(str(official))})"
            )
            continue
        failed += harness.main(["--official", str(checkout)])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
