"""FLUX.1 Kontext on the tiny FLUX backbone: the instruction reaches the pipeline, the result
is deterministic in its seed, the Kontext checkpoint is the run's backbone or loaded beside
`tiny-flux`, and other families are refused or skipped with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from partedit_bench.api import EditRequest
from partedit_bench.cli import main
from partedit_bench.data.schema import load_image
from partedit_bench.data.suites import load_suite
from partedit_bench.methods.flux_kontext import FluxKontext, KontextOptions
from partedit_bench.store import iter_records
from tests.helpers import spy_on_pipe


def request(sample, backbone, seed=0):
    image = load_image(sample.original_image)
    return EditRequest(sample=sample, image=image, seed=seed, options=None, backbone=backbone)


def test_an_empty_edit_is_deterministic_in_its_seed(tiny):
    backbone = tiny("tiny-flux-kontext")
    sample = load_suite("partworld").samples[0]
    sample.instructp2p_edit = [""]
    method = FluxKontext(KontextOptions(steps=2))
    method.preflight(backbone, [sample])
    method.inputs_fingerprint(sample)
    seen = spy_on_pipe(method)
    first = method.edit(request(sample, backbone)).image
    assert seen["prompt"] == "" and seen["guidance_scale"] == 2.5 and seen["image"].size == (64, 64)
    again = method.edit(request(sample, backbone)).image
    other = method.edit(request(sample, backbone, seed=1)).image
    assert first.size == (64, 64)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


@pytest.mark.parametrize("backbone", ["tiny-flux-kontext", "tiny-flux"])
def test_run_evaluate_report_on_the_flux_family(tmp_path, backbone):
    out = tmp_path / "run"
    args = ["run", "--backbone", backbone, "--methods", "flux_kontext,identity,partedit",
            "--limit", "1", "--set", "flux_kontext.steps=2", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in iter_records(out))}
    assert records["flux_kontext"]["status"] == "ok" and records["identity"]["status"] == "ok"
    assert records["flux_kontext"]["extras"]["checkpoint"] == "tiny-flux-kontext"
    assert records["partedit"]["status"] == "skipped"
    assert "supports sd, sdxl backbones, not flux" in records["partedit"]["error"]
    assert list(out.glob("flux_kontext*/*/*.metrics.json"))  # scored
    assert "flux_kontext" in (out / "report" / "table.md").read_text()


def test_other_families_skip_it_in_a_run_and_refuse_it_in_an_edit(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--backbone", "tiny-sd", "--methods", "flux_kontext,identity",
            "--limit", "1", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    records = {r["variant"]: r for r in (json.loads(p.read_text()) for p in iter_records(out))}
    assert records["flux_kontext"]["status"] == "skipped"
    assert records["flux_kontext"]["error"].startswith("flux_kontext supports flux backbones")
    capsys.readouterr()
    code = main(["edit", "--prompt", "a photo of a man", "--edit", "a robotic <humanoid-head>",
                 "--method", "flux_kontext", "--instruction", "x", "--backbone", "tiny-sd",
                 "--out", str(tmp_path / "e.png")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "supports flux backbones" in err
    assert not (tmp_path / "e.png").exists()


def test_the_flux_backbone_in_bfloat16_keeps_its_fingerprint(tiny):
    assert tiny("tiny-flux", "bfloat16").fingerprint == tiny("tiny-flux").fingerprint
    assert tiny("tiny-flux").describe()["family"] == "flux"
