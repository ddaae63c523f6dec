"""The parity harnesses' own parts, without the official code (CI has none): `make parity`
with no checkouts, the table, the shared random tape and each glue item."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from benchmarks.parity.common import (
    CHECKOUTS,
    Row,
    Tape,
    TorchWith,
    cuda_is_the_cpu,
    half_is_float64,
    load_file,
    load_substituted,
    notebook_definitions,
    table,
)
from tests.conftest import REPO, cli_env


def test_without_checkouts_every_method_is_one_line_and_the_exit_is_zero(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.parity", str(tmp_path)],
        cwd=REPO, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    skips = {
        line.split(":")[0].removeprefix("skip "): line for line in lines if line.startswith("skip ")
    }
    from benchmarks.parity.__main__ import HARNESSES

    assert set(skips) == set(HARNESSES)  # one line per harness
    for method, line in skips.items():
        checkout = CHECKOUTS[method]
        assert line.startswith(f"skip {method}: no checkout at {tmp_path / checkout.folder}")
        assert f"git clone {checkout.url}" in line and checkout.commit in line
    assert all(line.startswith("skip ") for line in lines)
    unknown = subprocess.run(
        [sys.executable, "-m", "benchmarks.parity", str(tmp_path), "--methods", "nope"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert unknown.returncode == 2 and len(unknown.stdout.strip().splitlines()) == 1


def test_the_table_gives_three_digits_and_a_verdict_per_case():
    rows = [
        Row("a", "latents", 1.234567e-14, 5.4321),
        Row("b", "latents", 3.0e-2, 6.0, deviation="the option x"),
        Row("c", "latents", 2.0e-3, 1.0),
        Row("d", "latents", float("nan"), 1.0),
    ]
    text = table("m", rows)
    assert "| a | latents | 1.23e-14 | 5.43 | parity |" in text
    assert "| b | latents | 3.00e-02 | 6 | deviation: the option x |" in text
    assert "| c | latents | 2.00e-03 | 1 | **FAILS** |" in text
    assert [r.ok for r in rows] == [True, True, False, False]


def test_the_tape_serves_one_list_in_order_whatever_is_asked():
    tape = Tape((1, 2, 3), 2, seed=5)
    again = Tape((1, 2, 3), 2, seed=5)
    first = tape.draw((9, 9), generator=None)  # the requested shape is not the tape's business
    assert torch.equal(first, again.maps[0]) and first.dtype == torch.float64
    first.add_(1)  # a consumer changing its draw leaves the tape's copy alone
    assert torch.equal(tape.maps[0], again.maps[0])
    assert torch.equal(tape.draw(), again.maps[1])
    with pytest.raises(RuntimeError, match="used up"):
        tape.draw()
    fake = TorchWith(randn=lambda *a: "from the tape")
    assert fake.randn(3) == "from the tape" and fake.zeros(2).shape == (2,)


def test_each_glue_item_applies_inside_and_is_undone_after():
    x, to = torch.ones(2, dtype=torch.float32), torch.Tensor.to
    with cuda_is_the_cpu():
        assert x.to("cuda").device.type == "cpu" and x.to(device="cuda").device.type == "cpu"
        assert x.to(torch.float64).dtype == torch.float64  # other uses unchanged
    assert torch.Tensor.to is to  # the real `.to` again
    module = torch.nn.Linear(2, 2).double()
    with half_is_float64():
        assert x.half().dtype == torch.float64
        assert module.half().weight.dtype == torch.float64
        assert module.float().weight.dtype == torch.float64
    assert x.half().dtype == torch.float16
    assert torch.nn.Linear(2, 2).half().weight.dtype == torch.float16


def test_an_official_file_is_loaded_by_path_or_named_missing(tmp_path):
    (tmp_path / "official.py").write_text("VALUE = 3\n")
    assert load_file(tmp_path / "official.py", "official_probe").VALUE == 3
    with pytest.raises(FileNotFoundError, match="missing from the checkout"):
        load_file(tmp_path / "absent.py", "absent_probe")


def test_a_glue_substitution_applies_in_memory_or_names_what_is_missing(tmp_path):
    official = tmp_path / "official.py"
    official.write_text("def scale(x):\n    return x * 512\n")
    module = load_substituted(official, "substituted_probe", [("* 512", "* 128")])
    assert module.scale(2) == 256
    assert official.read_text() == "def scale(x):\n    return x * 512\n"  # file untouched
    with pytest.raises(ValueError, match="not applicable.*'\\* 1024' not found"):
        load_substituted(official, "substituted_probe", [("* 1024", "* 128")])


def test_only_a_notebooks_definitions_run_with_the_harness_constants(tmp_path):
    import json

    cells = [
        {"cell_type": "markdown", "source": ["# text"]},
        {"cell_type": "code", "source": ["import math\n", "SIZE = 512\n"]},
        {"cell_type": "code", "source": ["model = load_the_real_weights()\n"]},  # never run
        {"cell_type": "code", "source": ["def area():\n", "    return SIZE * SIZE // 16 ** 2\n"]},
        {"cell_type": "code", "source": ["class Box:\n", "    side = math.sqrt(4)\n"]},
    ]
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": cells}))
    ns = notebook_definitions(notebook, [("16 ** 2", "4 ** 2")], {"SIZE": 8})
    assert ns["area"]() == 4  # the harness's SIZE, the substituted limit
    assert ns["Box"].side == 2.0 and "model" not in ns
    with pytest.raises(ValueError, match="not applicable"):
        notebook_definitions(notebook, [("32 ** 2", "8 ** 2")], {})
    with pytest.raises(FileNotFoundError, match="missing from the checkout"):
        notebook_definitions(tmp_path / "absent.ipynb", [], {})
