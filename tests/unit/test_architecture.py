"""The layers stay layers: what reads runs and data never loads a model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LIGHT = [
    "partedit_bench.store",
    "partedit_bench.report",
    "partedit_bench.gallery",
    "partedit_bench.importing",
    "partedit_bench.config",
    "partedit_bench.metrics.evaluate",
    "partedit_bench.userstudy.analyze",
    "partedit_bench.userstudy.export",
    "partedit_bench.data.schema",
    "partedit_bench.data.masks",
    "partedit_bench.data.suites",
    "partedit_bench.data.generated",
    "partedit_bench.paths",
    "partedit_bench.data.partworld",
    "partedit_bench.data.parts",
    "partedit_bench.data.files_suite",
    "partedit_bench.data.annotations",
    "partedit_bench.data.hub",
    "partedit_bench.data.hub_sources",
    "partedit_bench.outputs",
    "partedit_bench.data.part_datasets",
    "partedit_bench.data.validate",
]
HEAVY = (
    "torch",
    "diffusers",
    "transformers",
    "partedit_bench.engine.backbones",
    "partedit_bench.runner",
)


@pytest.mark.parametrize("module", LIGHT)
def test_reading_runs_and_data_imports_no_model(module):
    code = f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("module", ["partedit_bench", "partedit_bench.cli"])
def test_the_cli_runs_as_a_module(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "list", "methods"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0 and "partedit" in done.stdout, done.stderr


def _module_graph(function_level: bool) -> dict[str, set[str]]:
    """Imports among this project's modules (a `from pkg import submodule` names the
    submodule; with `function_level`, imports inside functions count too)."""
    import ast

    files = {}
    for base in ("partedit_bench",):
        for path in (REPO / base).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        nodes = list(ast.walk(tree)) if function_level else tree.body
        found = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                subs = {f"{node.module}.{a.name}" for a in node.names} & files.keys()
                found |= subs or ({node.module} & files.keys())
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names} & files.keys()
        graph[name] = found - {name}
    return graph


@pytest.mark.parametrize("function_level", [False, True])
def test_no_import_cycles(function_level):
    graph = _module_graph(function_level)
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for other in sorted(graph[node]):
            if state.get(other) == 1:
                cycles.append(" -> ".join([*path[path.index(other) :], other]))
            elif other not in state:
                visit(other, [*path, other])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_module_of_the_package_is_over_400_lines():
    # the PartWorld renderer is one procedural drawing routine per class, kept together
    exempt = {"partedit_bench/data/partworld.py"}
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "partedit_bench").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400 and str(p.relative_to(REPO)) not in exempt
    }
    assert long == {}


def test_a_new_method_is_its_folder_only(tmp_path, monkeypatch):
    import importlib

    from partedit_bench import api, methods

    folder = tmp_path / "probe_method"
    folder.mkdir()
    (folder / "__init__.py").write_text(
        "from partedit_bench.methods.identity import Identity\n\n\n"
        "class Probe(Identity):\n    name = 'probe_method'\n\n\nMETHOD = Probe\n"
    )
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    found = api.registry([*(Path(p) for p in methods.__path__)])
    assert found["probe_method"] == "partedit_bench.methods.probe_method:METHOD"
    monkeypatch.setattr(api, "METHOD_REGISTRY", found)
    cls = api.resolve_method_class("probe_method")
    assert cls.name == "probe_method" and issubclass(cls, api.EditMethod)
    importlib.invalidate_caches()


def test_map_rewriting_processors_refuse_attention_they_do_not_implement():
    import torch
    from diffusers.models.attention_processor import Attention

    from partedit_bench.engine.attention import require_plain_attention

    plain = Attention(32, heads=2, dim_head=16)
    x = torch.zeros(1, 4, 32)
    require_plain_attention(plain, x, None, "p2p")  # SD / SDXL transformer-block attention
    vae_like = Attention(32, heads=2, dim_head=16, norm_num_groups=8, residual_connection=True)
    with pytest.raises(NotImplementedError, match="group_norm, residual_connection"):
        require_plain_attention(vae_like, x, None, "p2p")
    with pytest.raises(NotImplementedError, match="4-D input, an attention mask"):
        require_plain_attention(plain, torch.zeros(1, 32, 2, 2), torch.ones(1, 4), "masactrl")


def test_the_layers_contract_holds():
    """ARCHITECTURE.md's layers, as the import-linter contract in pyproject.toml states them:
    no module imports from a layer above its own (imports inside functions count too)."""
    import shutil

    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([lint], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "KEPT" in done.stdout, done.stdout[-3000:]
