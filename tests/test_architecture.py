"""The layers stay layers: what reads runs and data never loads a model."""

from __future__ import annotations

import subprocess
import sys

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
