"""End-to-end runs of the CLI: records, resume, failure isolation, variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.data.suites import load_suite
from partedit_bench.runner import iter_records
from tests.helpers import IDENTITY_RUN


def records(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in iter_records(root)}


def test_identity_run_writes_complete_records(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            *IDENTITY_RUN,
            "--limit",
            "4",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    info = json.loads((out / "run.json").read_text())
    assert info["backbone"]["name"] == "tiny-sd" and info["backbone"]["random_weights"]
    assert info["note"] == "random weights: checks the plumbing, not the methods"
    assert info["suite"]["name"] == "partworld" and "torch" in info["versions"]
    recs = records(out)
    assert len(recs) == 4
    samples = {s.id: s for s in load_suite("partworld").samples}
    for rel, rec in recs.items():
        assert rec["status"] == "ok" and rec["run_hash"] == info["run_hash"]
        assert rec["wall_time_s"] >= 0 and rec["peak_memory"]["bytes"] > 0
        edited = np.asarray(Image.open(out / Path(rel).parent / rec["image"]))
        source = np.asarray(Image.open(samples[rec["sample_id"]].original_image).convert("RGB"))
        np.testing.assert_array_equal(edited, source)


def test_rerun_skips_complete_jobs_and_recompute_redoes_them(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--methods", "identity", "--limit", "3", "--seeds", "0,1", "--output", str(out)]
    assert main(args) == 0
    first = records(out)
    assert len(first) == 6
    assert main(args) == 0
    summary = json.loads((out / "shards" / "0-of-1.json").read_text())
    assert summary["cached"] == 6 and summary["ok"] == 0
    assert records(out) == first
    assert main([*args, "--recompute"]) == 0
    summary = json.loads((out / "shards" / "0-of-1.json").read_text())
    assert summary["ok"] == 6 and summary["cached"] == 0


def test_failing_job_is_recorded_and_run_goes_on(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "--methods",
            "tests.helpers:SlowIdentity",
            "--limit",
            "3",
            "--set",
            "tests.helpers:SlowIdentity.fail_on=pw0-00001",
            "--output",
            str(out),
        ]
    )
    assert code == 1
    recs = {r["sample_id"]: r for r in records(out).values()}
    assert recs["pw0-00001"]["status"] == "failed"
    assert "deliberate failure" in recs["pw0-00001"]["error"]
    assert recs["pw0-00000"]["status"] == "ok" and recs["pw0-00002"]["status"] == "ok"
    summary = json.loads((out / "shards" / "0-of-1.json").read_text())
    assert summary["failed"] == 1 and summary["ok"] == 2
    # the failed job is retried on the next run, the good ones are not
    assert (
        main(
            ["run", "--methods", "tests.helpers:SlowIdentity", "--limit", "3", "--output", str(out)]
        )
        == 0
    )


def test_variants_are_separate_rows_with_their_options(tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "methods.yaml"
    config.write_text(
        "options:\n  tests.helpers:SlowIdentity: {delay_s: 0.0}\n"
        "variants:\n  - tests.helpers:SlowIdentity[threshold=soft]\n"
    )
    code = main(
        [
            "run",
            "--methods",
            "tests.helpers:SlowIdentity",
            "--limit",
            "1",
            "--method-config",
            str(config),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    by_variant = {r["variant"]: r for r in records(out).values()}
    assert set(by_variant) == {"SlowIdentity", "SlowIdentity[threshold=soft]"}
    assert by_variant["SlowIdentity[threshold=soft]"]["options"]["threshold"] == "soft"
    assert by_variant["SlowIdentity"]["options"]["threshold"] == "adaptive"
    assert (out / "SlowIdentity[threshold=soft]" / "synth").is_dir()
