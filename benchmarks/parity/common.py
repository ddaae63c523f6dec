"""What every parity harness shares: the official checkouts (where each is looked for, at which
commit), loading an official file by path, the glue a newer library or a CPU forces (each item
a named context manager), one tape of random draws served to both sides, and the table.

A harness module defines `METHOD`, `CHECKOUT` (an entry of `CHECKOUTS`), `CASES` (names) and
`run_case(official: Path, case: str) -> Row`; `python -m benchmarks.parity` runs them all.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

#: a difference at or below this is parity; above it a row must be a documented deviation
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Checkout:
    """An official implementation: its repository, the commit the fidelity tables cite, and
    the folder name looked for under `make parity OFFICIAL=<folder>`."""

    folder: str
    url: str
    commit: str

    def clone_command(self, official: str = "OFFICIAL") -> str:
        return (
            f"git clone {self.url} {official}/{self.folder} && "
            f"git -C {official}/{self.folder} checkout {self.commit}"
        )


CHECKOUTS = {
    "blended_latent": Checkout(
        "blended-latent-diffusion",
        "https://github.com/omriav/blended-latent-diffusion",
        "09565c5d9ca260de1fd22260784eb744874f9004",
    ),
    "ef_ddpm": Checkout(
        "DDPM_inversion",
        "https://github.com/inbarhub/DDPM_inversion",
        "58fc881772d34f0c24be9e34725d213731aa009d",
    ),
    "partedit": Checkout(
        "PartEdit",
        "https://github.com/Gorluxor/PartEdit",
        "af50018abaa0fc77f34ce49a74052999b47b8edd",
    ),
    "ledits_pp": Checkout(
        "ledits_pp",
        "https://github.com/ml-research/ledits_pp",
        "c2ccffb9d65d39da6f696676d85d09b62fdc8bd5",
    ),
    "masactrl": Checkout(
        "MasaCtrl",
        "https://github.com/TencentARC/MasaCtrl",
        "d0ba16bb7c12125b509e374b000ee61065bb8149",
    ),
    "stable_flow": Checkout(
        "stable-flow",
        "https://github.com/snap-research/stable-flow",
        "c99ac0eba297e7884bf2118be79734b63543ee45",
    ),
    "p2p": Checkout(
        "prompt-to-prompt",
        "https://github.com/google/prompt-to-prompt",
        "9c472e44aa1b607da59fea94820f7be9480ec545",
    ),
}


#: prompt-to-prompt's `seq_aligner.py`, as the DDPM_inversion checkout carries it
CHECKOUTS["alignment"] = CHECKOUTS["ef_ddpm"]


@dataclass
class Row:
    """One case: the largest absolute difference of the compared tensors, their scale, and a
    deviation's documented reason (None: must be within TOLERANCE)."""

    case: str
    compared: str
    max_abs_diff: float
    magnitude: float
    deviation: str | None = None

    @property
    def ok(self) -> bool:
        return math.isfinite(self.max_abs_diff) and (
            self.max_abs_diff <= TOLERANCE or self.deviation is not None
        )


def table(method: str, rows: list[Row]) -> str:
    """The Markdown table a method README shows: case, what was compared, max abs difference
    (3 significant digits), the tensors' scale, and the verdict."""
    lines = [
        f"### {method}",
        "",
        "| case | compared | max abs diff | values up to | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = (
            "parity"
            if row.max_abs_diff <= TOLERANCE
            else (f"deviation: {row.deviation}" if row.deviation else "**FAILS**")
        )
        lines.append(
            f"| {row.case} | {row.compared} | {row.max_abs_diff:.2e} | {row.magnitude:.3g} | "
            f"{verdict} |"
        )
    return "\n".join(lines)


def load_file(path: Path, name: str) -> ModuleType:
    """Imports an official file by its path (never copied into this repository)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the checkout")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def substituted(source: str, substitutions: list[tuple[str, str]], where: str) -> str:
    """`source` with each (old, new) glue substitution applied; an `old` that does not occur is
    an error naming it (the official file changed: the glue must be re-checked, never skipped)."""
    for old, new in substitutions:
        if old not in source:
            raise ValueError(f"glue substitution not applicable to {where}: {old!r} not found")
        source = source.replace(old, new)
    return source


def load_substituted(path: Path, name: str, substitutions: list[tuple[str, str]]) -> ModuleType:
    """Imports an official file by its path with named textual glue substitutions applied in
    memory (the file on disk is not touched, nothing is copied here)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the checkout")
    source = substituted(path.read_text(encoding="utf-8"), substitutions, str(path))
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def notebook_definitions(
    path: Path, substitutions: list[tuple[str, str]], namespace: dict[str, Any]
) -> dict[str, Any]:
    """The definitions of a Jupyter notebook's code cells (its imports, functions and classes;
    never its cells that load models, set constants or run examples) executed into
    `namespace`, which supplies the constants and the model those definitions read as globals.
    Glue substitutions apply to the cells' joined source first, as in `load_substituted`."""
    import ast
    import json

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the checkout")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = "\n\n".join("".join(c["source"]) for c in cells if c.get("cell_type") == "code")
    source = substituted(source, substitutions, str(path))
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    body = [node for node in ast.parse(source).body if isinstance(node, kept)]
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


class Tape:
    """Random draws shared by both sides: `draw(shape)` returns the next map of a list drawn
    once from `seed` (float64), so that the official code and ours get the same noise in the
    same order whatever shapes and generators each asks with."""

    def __init__(self, shape: tuple[int, ...], count: int, seed: int = 0):
        import torch

        generator = torch.Generator("cpu").manual_seed(seed)
        self.maps = [
            torch.randn(shape, generator=generator, dtype=torch.float64, device="cpu")
            for _ in range(count)
        ]
        self.used = 0

    def draw(self, *args: Any, **kwargs: Any) -> Any:
        if self.used >= len(self.maps):
            raise RuntimeError(f"the tape's {len(self.maps)} draws are used up")
        self.used += 1
        return self.maps[self.used - 1].clone()


class TorchWith:
    """`torch` as an official module sees it, with some functions replaced (glue: its
    `torch.randn` / `torch.randn_like` served from a `Tape`), everything else torch's own."""

    def __init__(self, **replaced: Callable[..., Any]):
        import torch

        self._torch, self._replaced = torch, replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced[name] if name in self._replaced else getattr(self._torch, name)


@contextlib.contextmanager
def cuda_is_the_cpu() -> Iterator[None]:
    """Glue: the official code's hard-coded `.to("cuda")` (and `device="cuda"`) runs on the
    CPU here."""
    import torch

    original = torch.Tensor.to

    def to(self: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple("cpu" if a == "cuda" else a for a in args)
        if kwargs.get("device") == "cuda":
            kwargs["device"] = "cpu"
        return original(self, *args, **kwargs)

    torch.Tensor.to = to  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.to = original  # type: ignore[method-assign]


@contextlib.contextmanager
def half_is_float64() -> Iterator[None]:
    """Glue: the official code's fp16 casts (`tensor.half()`, `module.half()` / `.float()`)
    keep the float64 of the comparison (a tensor's `.half()` becomes `.double()`; a module's
    casts leave it as it is)."""
    import torch

    saved = (torch.Tensor.half, torch.nn.Module.half, torch.nn.Module.float)
    torch.Tensor.half = lambda self, *a, **k: self.double()  # type: ignore[method-assign]
    torch.nn.Module.half = lambda self: self  # type: ignore[method-assign]
    torch.nn.Module.float = lambda self: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.half, torch.nn.Module.half, torch.nn.Module.float = saved  # type: ignore[method-assign]


@contextlib.contextmanager
def float64_alphas(enabled: bool = True) -> Iterator[None]:
    """Glue: every DDIMScheduler made inside keeps `alphas`, `alphas_cumprod` and
    `final_alpha_cumprod` in float64 (the same float32 values, float64 arithmetic): the
    official inversions take square roots of those values in float32, ours (`engine/inversion`)
    in the latents' float64."""
    import torch
    from diffusers import DDIMScheduler

    original = DDIMScheduler.__init__

    @functools.wraps(original)  # (`from_config` reads the signature: it must stay the same)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.alphas = self.alphas.double()
        self.alphas_cumprod = self.alphas_cumprod.double()
        self.final_alpha_cumprod = torch.as_tensor(self.final_alpha_cumprod).double()

    if enabled:
        DDIMScheduler.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        DDIMScheduler.__init__ = original  # type: ignore[method-assign]


def max_abs(a: Any, b: Any) -> tuple[float, float]:
    """(max |a - b|, max |a|) in float64."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max()), float(a.abs().max())


def parser(doc: str, checkout: Checkout, cases: list[str]) -> Any:
    """A harness's command line: `--official CHECKOUT` and the cases (default: all)."""
    import argparse

    made = argparse.ArgumentParser(description=doc.split("\n")[0])
    made.add_argument("--official", required=True, help=f"a checkout of {checkout.url}")
    made.add_argument("cases", nargs="*", default=cases)
    return made


def write_store(path: str, checkout: Checkout, command: str, **payload: Any) -> None:
    """`--store FILE`: the official side's outputs for the CI tests, with the commit and the
    command that made them (one compact JSON line)."""
    import json

    record = {"commit": checkout.commit, "command": command, **payload}
    Path(path).write_text(json.dumps(record, separators=(",", ":")) + "\n")


def main_with_store(
    argv: list[str] | None,
    doc: str,
    method: str,
    checkout: Checkout,
    cases: list[str],
    run_case: Callable[[Path, str], Row],
    command: str,
    stored: Callable[[], dict[str, Any]],
) -> int:
    """A harness's command line with `--store FILE`: runs and reports the cases, then writes
    `stored()` (the official side's outputs the runs collected) with `command` and the cases."""
    made = parser(doc, checkout, cases)
    made.add_argument("--store", default=None, help="write the official outputs (JSON)")
    args = made.parse_args(argv)
    code = report(method, [run_case(Path(args.official), case) for case in args.cases])
    if args.store:
        write_store(args.store, checkout, f"{command} {' '.join(args.cases)}", **stored())
    return code


def report(method: str, rows: list[Row]) -> int:
    """Prints the method's table; 1 when a case is neither parity nor a documented deviation."""
    print(table(method, rows))
    return 0 if all(r.ok for r in rows) else 1
