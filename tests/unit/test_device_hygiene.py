"""Device hygiene of our code, read from its source: every tensor a factory creates names its
device (a bare `torch.zeros(...)` lands on the CPU while the backbone is on a GPU), every
generator names its device, and a tensor becomes numpy only after `.cpu()`. The jobs
themselves are watched in tests/e2e/test_half_precision.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for folder in ("partedit_bench", "methods", "benchmarks")
    for p in (REPO / folder).rglob("*.py")
)
#: torch functions that create a tensor from nothing (the `*_like` ones follow their input)
FACTORIES = {
    "zeros", "ones", "full", "empty", "tensor", "randn", "rand", "randint", "randperm",
    "arange", "linspace", "logspace", "eye",
}  # fmt: skip


def _violations(path: Path) -> list[str]:
    text = path.read_text()
    tree = ast.parse(text)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{node.lineno}"
        is_torch = isinstance(func.value, ast.Name) and func.value.id == "torch"
        keywords = {k.arg for k in node.keywords}
        if is_torch and func.attr in FACTORIES and "device" not in keywords:
            found.append(f"{where}: torch.{func.attr}(...) without device=")
        if is_torch and func.attr == "Generator" and not node.args and "device" not in keywords:
            found.append(f"{where}: torch.Generator() without its device")
        if func.attr == "numpy" and not node.args:
            receiver = ast.get_source_segment(text, func.value) or ""
            if ".cpu()" not in receiver and '"cpu"' not in receiver:
                found.append(f"{where}: .numpy() of a tensor not moved with .cpu()")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_tensors_are_created_on_a_named_device(path):
    assert _violations(path) == []


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "_hygiene_probe.py"  # (never written into the repository)
    bad.write_text(
        "import torch\nx = torch.zeros(3)\ng = torch.Generator()\ny = x.numpy()\n"
        "ok = torch.zeros(3, device=x.device).cpu().numpy()\n"
    )
    found = _violations(bad)
    assert [f.split(": ", 1)[1] for f in found] == [
        "torch.zeros(...) without device=",
        "torch.Generator() without its device",
        ".numpy() of a tensor not moved with .cpu()",
    ]
