"""`localize`: mask sources scored against a suite's GT masks, without editing."""

from __future__ import annotations

import argparse
from typing import Any

from partedit_bench.errors import UserError


def register(sub: Any) -> None:
    loc = sub.add_parser(
        "localize",
        help="score mask sources (PartEdit's tokens, GT, Grounded-SAM, SAM 3, a folder) "
        "against a suite's GT masks, and draw Figure 27's grid",
    )
    loc.add_argument("--suite", default="partworld", help="a suite with GT masks")
    loc.add_argument(
        "--backbone", default="partworld-sd", help="the backbone whose part tokens `tokens` uses"
    )
    loc.add_argument(
        "--sources",
        default="tokens,gt",
        help="comma-separated: tokens, gt, grounded-sam, sam3, tiny-grounded-sam, a folder; "
        "tokens at chosen options as a grid: tokens[padding=bg|sot|eot|zero|context] (Fig. 15)",
    )
    loc.add_argument("--output", required=True, help="folder for the tables, grid and masks")
    loc.add_argument("--seed", type=int, default=0, help="the seed of PartEdit's edit (tokens)")
    loc.add_argument("--limit", type=int, default=None, help="only the first N samples")
    loc.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="partedit.KEY=VALUE",
        help="PartEdit option for `tokens` (default: the backbone's default run options)",
    )
    loc.add_argument("--device", default="auto")
    loc.add_argument("--overwrite", action="store_true", help="replace earlier results")
    maps = sub.add_parser(
        "maps",
        help="a partedit job's token maps per step: normalized, 0.5, Otsu, adaptive (App. N)",
    )
    maps.add_argument("run_dir", help="a run folder")
    maps.add_argument("job", help="the job, VARIANT/SPLIT/SAMPLE-ID__sSEED (as in the folder)")
    maps.add_argument("--output", required=True, help="the PNG to write")
    maps.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    maps.add_argument("--device", default="cpu")


def command_localize(args: argparse.Namespace, console: Any) -> int:
    from pathlib import Path

    from rich.console import Console

    from partedit_bench.localization import localize
    from partedit_bench.variants import parse_scalar, split_method_list

    if args.seed < 0:
        raise UserError(f"localize --seed must be at least 0, got {args.seed}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"localize --limit must be at least 1, got {args.limit}")
    options: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        method, dot, option = key.rpartition(".")
        if not sep or method != "partedit" or not option:
            raise UserError(f"localize --set expects partedit.key=value, got '{item}'")
        options[option] = parse_scalar(value)
    localize(
        args.suite,
        args.backbone,
        split_method_list(args.sources),
        Path(args.output),
        seed=args.seed,
        limit=args.limit,
        partedit_options=options,
        device=args.device,
        overwrite=args.overwrite,
        console=console,
    )
    Console().print((Path(args.output) / "localization.md").read_text(), markup=False)
    console.print(f"wrote {args.output}/localization.csv, figure27.png and masks/")
    return 0


def command_maps(args: argparse.Namespace, console: Any) -> int:
    """Recomputes the job with its maps kept, checks that it gives the stored edit, draws."""
    from pathlib import Path

    import numpy as np

    from partedit_bench.api import finish
    from partedit_bench.data.schema import load_image
    from partedit_bench.io import atomic_write_bytes
    from partedit_bench.methods.partedit.figures import draw_strip, job_maps, strip_panels
    from partedit_bench.outputs import output_file

    output = output_file(args.output, "maps --output", args.overwrite)
    if output.suffix.lower() != ".png":
        raise UserError(f"maps --output {output}: the strip is a PNG (name it .png)")
    root = Path(args.run_dir)
    with console.status(f"recomputing {args.job} with its maps"):
        run, options, record = job_maps(root, args.job, args.device)
    stored = load_image(root / Path(args.job).parent / str(record.image))
    again, _ = finish(run.result, stored.size)
    same = np.array_equal(np.asarray(again), np.asarray(stored))
    steps = strip_panels(run.maps, options.omega)
    title = f"{args.job} (threshold used: {options.threshold}, omega {options.omega})"
    atomic_write_bytes(output, draw_strip(steps, title))
    console.print(
        f"wrote {output}: {len(steps)} steps; the recomputed edit "
        + ("equals the stored one" if same else "DIFFERS from the stored one (not the same job)")
    )
    return 0 if same else 1


COMMANDS = {"localize": command_localize, "maps": command_maps}
