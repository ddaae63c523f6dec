"""`edit`: one part edit on your own image (or on one generated from the prompt), and `demo`,
the same in a browser."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from partedit_bench.errors import UserError
from partedit_bench.outputs import output_file


def register(sub: Any) -> None:
    edit = sub.add_parser(
        "edit",
        help="edit one image (or, without IMAGE, one generated from --prompt and --seed)",
    )
    edit.add_argument("image", nargs="?", default=None, help="the image to edit (PNG, JPEG)")
    edit.add_argument("--prompt", required=True, help='describes the source: "a photo of a man"')
    edit.add_argument(
        "--edit",
        required=True,
        help='the edit, the part as a token: "a photo of a man with a robotic <humanoid-head>"',
    )
    edit.add_argument("--method", default="partedit", help="any method of `list methods`")
    edit.add_argument("--backbone", default="partworld-sd", help="a backbone or diffusers folder")
    edit.add_argument(
        "--t-e",
        type=int,
        default=None,
        help="partedit: blend for the first T_e steps (default: all)",
    )
    edit.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps (default: the method's; its options counted in steps follow)",
    )
    edit.add_argument("--seed", type=int, default=0, help="the source's seed (synthetic) and noise")
    edit.add_argument(
        "--mask",
        default=None,
        help="part mask, for methods that take one (blended_latent, sdxl_inpaint)",
    )
    edit.add_argument("--instruction", default=None, help="for instruction editors (ip2p)")
    edit.add_argument(
        "--set", action="append", default=[], metavar="METHOD.KEY=VALUE", help="method option"
    )
    edit.add_argument(
        "--out",
        default="edited.png",
        help="the edited image (PNG); beside it OUT_source.png, OUT_mask.png, OUT_overlay.png",
    )
    edit.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (never the inputs)"
    )
    edit.add_argument("--device", default="auto")
    edit.add_argument("--dtype", default="auto")

    demo = sub.add_parser("demo", help="part edits in the browser (gradio; pip install .[demo])")
    demo.add_argument("--backbone", default="partworld-sd")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--dtype", default="auto")
    demo.add_argument("--share", action="store_true", help="a public gradio link")


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """--t-e, --steps and --set METHOD.KEY=VALUE as the method's options."""
    from partedit_bench.variants import parse_sets

    options: dict[str, Any] = {}
    if args.steps is not None:
        options["steps"] = args.steps
    if args.t_e is not None:
        if args.method != "partedit":
            raise UserError(f"--t-e is PartEdit's option; {args.method} has none")
        options["t_e"] = args.t_e
    for method, values in parse_sets(args.set).items():
        if method != args.method:
            raise UserError(f"--set names method '{method}'; this edit runs {args.method}")
        options.update(values)
    return options


def outputs(out: Path, synthetic: bool, with_mask: bool) -> dict[str, Path]:
    stem = out.with_suffix("")
    paths = {"edited": out.with_suffix(".png")}
    if synthetic:
        paths["source"] = Path(f"{stem}_source.png")
    if with_mask:
        paths["mask"] = Path(f"{stem}_mask.png")
        paths["overlay"] = Path(f"{stem}_overlay.png")
    return paths


def command_edit(args: argparse.Namespace, console: Any) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from partedit_bench.editing import cached_backbone, edit, overlay, parts_in
    from partedit_bench.io import atomic_write_bytes, png_bytes

    parts_in(args.edit)  # checked before anything loads
    options = options_of(args)
    from partedit_bench.api import build_options, resolve_method_class, with_step_counts
    from partedit_bench.editing import check_before_loading

    cls = resolve_method_class(args.method)  # the method, its options and its needs: no model
    chosen = build_options(cls, with_step_counts(cls, dict(options)))
    check_before_loading(cls, chosen, args.backbone, args.mask, args.instruction)
    if args.seed < 0:
        raise UserError(f"edit --seed must be at least 0, got {args.seed}")
    out = Path(args.out)
    if out.suffix.lower() not in ("", ".png"):
        raise UserError(f"--out {out}: the edit is written as PNG (name it .png)")
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a folder; name the edited image, e.g. {out}/edited.png")
    for flag, given in (("image", args.image), ("--mask", args.mask)):
        if given is not None and not Path(given).is_file():
            raise UserError(f"{flag} not found: {given}")
    # every file this edit may write, checked before the backbone loads: never an input,
    # never an existing file without --overwrite
    for kind, path in outputs(out, synthetic=args.image is None, with_mask=True).items():
        output_file(path, f"--out ({kind})", args.overwrite, inputs=(args.image, args.mask))
    loading = time.perf_counter()
    with console.status(f"loading backbone {args.backbone}"):
        backbone = cached_backbone(args.backbone, args.device, args.dtype)
    loading = time.perf_counter() - loading
    start = time.perf_counter()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{args.method}: denoising", total=None)

        def step(calls: int) -> None:
            progress.update(task, description=f"{args.method}: {calls} UNet calls")

        result = edit(
            args.image,
            prompt=args.prompt,
            edit_prompt=args.edit,
            method=args.method,
            backbone=backbone,
            seed=args.seed,
            options=options,
            mask=args.mask,
            instruction=args.instruction,
            on_step=step,
        )
    paths = outputs(out, result.synthetic, result.mask is not None)
    files = {"edited": png_bytes(result.image)}
    if result.synthetic:
        files["source"] = png_bytes(result.source)
    if result.mask is not None and result.mask_png is not None:
        files["mask"] = png_bytes(result.mask_png)  # the same bytes a run stores
        files["overlay"] = png_bytes(overlay(result.image, result.mask))
    for kind, data in files.items():
        atomic_write_bytes(paths[kind], data)
    total = time.perf_counter() - start
    for kind, path in paths.items():
        print(f"{kind:8s} {path}")
    if backbone.random_weights:
        console.print(f"[yellow]{backbone.name}: {backbone.note}[/]")
    made = "generated, then edited" if result.synthetic else "edited"
    print(
        f"{made} with {result.method} on {result.backbone}: {result.seconds:.1f} s for the "
        f"edit, {total:.1f} s in all (the backbone loaded in {loading:.1f} s)"
    )
    return 0


def command_demo(args: argparse.Namespace, console: Any) -> int:
    from partedit_bench.demo import launch

    return launch(args.backbone, args.host, args.port, args.device, args.dtype, args.share)


COMMANDS = {"edit": command_edit, "demo": command_demo}
