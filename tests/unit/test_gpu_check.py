"""`benchmarks/gpu_check.py`: one clear line without CUDA, and its output (JSON and Markdown)
from the dry mode, which runs the same steps on the CPU with a tiny backbone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, cli_env


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_stops_with_one_line(tmp_path):
    done = subprocess.run(
        ["make", "-s", "gpu-check", f"GPU_CHECK_ARGS=--output {tmp_path}"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("gpu_check")]
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--dry" in lines[0]
    assert not (tmp_path / "gpu_check.json").exists()


def test_the_dry_run_writes_the_report(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry", "--backbones", "tiny-sdxl",
         "--output", str(tmp_path)],
        cwd=REPO, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry"] and report["facts"]["device"] == "cpu"
    (entry,) = report["backbones"]
    assert entry["backbone"] == "tiny-sdxl" and entry["size"] == 64
    parts = entry["parts"]
    assert {p: parts[p]["status"] for p in parts} == {
        "token_training": "ok", "speed": "ok", "methods": "ok",
    }  # fmt: skip
    assert parts["token_training"]["finite"]
    speed = parts["speed"]
    for key in ("PartEdit / plain (explicit attention)", "3-path / PartEdit"):
        assert speed["ratios"][key] > 0
    jobs = {j["method"]: j for j in parts["methods"]["jobs"]}
    from partedit_bench.api import METHOD_REGISTRY

    assert set(jobs) == set(METHOD_REGISTRY)
    from partedit_bench.api import resolve_method_class

    # (the methods of other families, FLUX's and Qwen-Image's, are skipped on SDXL)
    other_family = {m for m in METHOD_REGISTRY if "sdxl" not in resolve_method_class(m).families}
    assert all(j["status"] == "ok" for m, j in jobs.items() if m not in other_family), jobs
    assert all(jobs[m]["status"] == "skipped" for m in other_family)
    # ip2p and sdxl_inpaint each held their checkpoint while they ran, never both at once
    residency = parts["methods"]["residency"]
    held = {r["after"]: r["specials"] for r in residency}
    assert held["ip2p"] == ["tiny-sdxl-ip2p"] and held["sdxl_inpaint"] == ["tiny-sdxl-inpaint"]
    assert held["p2p"] == [] and parts["methods"]["most_specials_resident_at_once"] == 1
    text = (tmp_path / "gpu_check.md").read_text()
    assert "## tiny-sdxl at 64 px" in text and "| partedit | ok |" in text
    assert "dry run on the CPU" in text and "one at a time" in text


def test_the_dry_run_covers_the_dit_editors(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry", "--backbones",
         "tiny-flux,tiny-qwen-image", "--output", str(tmp_path)],
        cwd=REPO, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    flux, qwen = report["backbones"]
    ok = {
        e["backbone"]: sorted(
            j["method"] for j in e["parts"]["methods"]["jobs"] if j["status"] == "ok"
        )
        for e in (flux, qwen)
    }
    from partedit_bench.api import METHOD_REGISTRY, resolve_method_class

    def runnable(family):  # every registered method of the family, and those without a backbone
        classes = {m: resolve_method_class(m) for m in METHOD_REGISTRY}
        return sorted(m for m, c in classes.items() if family in c.families or not c.uses_backbone)

    assert ok == {"tiny-flux": runnable("flux"), "tiny-qwen-image": runnable("qwen-image")}
    assert set(flux["parts"]) == {"methods"}  # no UNet: no token, no PartEdit step costs
    held = {r["after"]: r["specials"] for r in flux["parts"]["methods"]["residency"]}
    assert held["flux_kontext"] == ["tiny-flux-kontext"] and held["stable_flow"] == []
    assert "## tiny-qwen-image at 64 px" in (tmp_path / "gpu_check.md").read_text()
