"""End-to-end runs of the CLI: records, resume, failure isolation, variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.data.suites import load_suite
from partedit_bench.store import iter_records
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


def _summary(out):
    return json.loads((out / "shards" / "0-of-1.json").read_text())


def test_a_truncated_edit_png_is_recomputed_not_trusted(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--methods", "identity", "--limit", "2", "--output", str(out)]
    assert main(args) == 0
    first = records(out)
    rel, rec = sorted(first.items())[0]
    png = out / Path(rel).parent / rec["image"]
    assert rec["files"][rec["image"]]["bytes"] == png.stat().st_size
    good = png.read_bytes()
    png.write_bytes(good[: len(good) // 2])  # truncated behind an intact record
    assert main(args) == 0
    assert _summary(out)["ok"] == 1 and _summary(out)["cached"] == 1
    assert png.read_bytes() == good
    # the same size with other bytes is caught by the hash
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    png.write_bytes(bytes(flipped))
    assert main(args) == 0
    assert _summary(out)["ok"] == 1 and png.read_bytes() == good


def test_a_replaced_part_token_recomputes_the_jobs_that_use_it(tmp_path):
    import shutil

    import torch

    from partedit_bench.tokens import load_token

    tokens = tmp_path / "tokens"
    shutil.copytree(Path("benchmark_data/tokens/tiny-sd"), tokens)
    out = tmp_path / "run"
    args = [
        "run", "--methods", "partedit", "--backbone", "tiny-sd", "--limit", "2",
        "--set", "partedit.steps=2", "--set", f"partedit.tokens={tokens}", "--output", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    before = records(out)
    assert main(args) == 0 and _summary(out)["cached"] == 2
    part = load_suite("partworld").samples[0].part_token
    token = load_token(tokens / f"{part}.safetensors")
    token.embedding = torch.randn_like(token.embedding)  # another token, same part
    token.save(tokens / f"{part}.safetensors")
    assert main(args) == 0
    uses = sum(1 for s in load_suite("partworld").samples[:2] if s.part_token == part)
    assert _summary(out)["ok"] == uses and _summary(out)["cached"] == 2 - uses
    after = records(out)
    changed = [r for r in after if after[r]["job_hash"] != before[r]["job_hash"]]
    assert len(changed) == uses


def test_a_new_method_version_recomputes_its_jobs(tmp_path, monkeypatch):
    from partedit_bench.methods.identity.method import Identity

    out = tmp_path / "run"
    args = ["run", "--methods", "identity", "--limit", "2", "--output", str(out)]
    assert main(args) == 0
    monkeypatch.setattr(Identity, "version", "999")
    assert main(args) == 0
    assert _summary(out)["ok"] == 2 and _summary(out)["cached"] == 0


def test_a_render_cache_deleted_during_a_run_is_rendered_again(tmp_path, monkeypatch):
    from partedit_bench.runner import Runner

    prepare = Runner.prepare

    def prepare_then_lose_the_cache(self):
        prepare(self)
        for sample in self.samples[1:3]:  # deleted from outside after the run started
            Path(sample.original_image).unlink()
            Path(sample.gt_mask).unlink()

    monkeypatch.setattr(Runner, "prepare", prepare_then_lose_the_cache)
    out = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "3", "--output", str(out)]) == 0
    recs = records(out)
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs.values())
    for sample in load_suite("partworld").samples[:3]:
        assert Path(sample.original_image).is_file() and Path(sample.gt_mask).is_file()


def test_a_log_file_gets_a_line_per_job(tmp_path):
    import subprocess

    from tests.conftest import REPO, cli_command, cli_env

    done = subprocess.run(
        cli_command("run", "--methods", "identity", "--backbone", "tiny-sd", "--limit", "2",
                    "--output", str(tmp_path / "run")),
        cwd=REPO, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert done.returncode == 0, done.stderr
    assert [line.split(" s0:")[0] for line in lines] == [
        "[1/2] identity pw0-00000",
        "[2/2] identity pw0-00001",
    ]


def test_the_benchmark_runs_from_python(tmp_path):
    from partedit_bench.benchmark import run_benchmark
    from partedit_bench.config import RunConfig

    cfg = RunConfig(methods="identity", backbone="tiny-sd", limit=2, output=str(tmp_path / "r"))
    result = run_benchmark(cfg)
    assert result.code == 0 and result.summary["ok"] == 2
    assert (result.root / "report" / "table.csv").is_file()
    long = result.report["long"]
    assert set(long.variant) == {"identity"}


def test_a_grid_of_variants_is_the_product_of_its_values(tmp_path, capsys):
    """`method[a=1|2,b=x|y]` is one row per combination, named by its values; the run and
    each job record the grid; a malformed grid is one line."""
    from partedit_bench.variants import parse_variants

    specs = parse_variants("partedit[t_e=10|30,omega=1|1.5,steps=2]")
    assert [s.overrides for s in specs] == [
        (("t_e", 10), ("omega", 1), ("steps", 2)),
        (("t_e", 10), ("omega", 1.5), ("steps", 2)),
        (("t_e", 30), ("omega", 1), ("steps", 2)),
        (("t_e", 30), ("omega", 1.5), ("steps", 2)),
    ]
    assert all(s.grid == (("t_e", (10, 30)), ("omega", (1, 1.5))) for s in specs)
    assert parse_variants("partedit[t_e=30]")[0].grid == ()
    out = tmp_path / "run"
    slow = "tests.helpers:SlowIdentity"
    args = ["run", "--methods", f"{slow}[delay_s=0|0.001,threshold=soft|binary]", "--limit", "1"]
    assert main([*args, "--output", str(out)]) == 0
    names = sorted(r["variant"] for r in records(out).values())
    assert names == [
        "SlowIdentity[delay_s=0,threshold=binary]",
        "SlowIdentity[delay_s=0,threshold=soft]",
        "SlowIdentity[delay_s=0.001,threshold=binary]",
        "SlowIdentity[delay_s=0.001,threshold=soft]",
    ]
    assert all(
        r["grid"] == {"delay_s": [0, 0.001], "threshold": ["soft", "binary"]}
        for r in records(out).values()
    )
    grids = json.loads((out / "run.json").read_text())["grids"]
    assert set(grids) == set(names)
    for bad, expected in (
        ("identity[x=1|]", "has an empty value"),
        ("identity[x=1|1]", "lists a value twice"),
        ("identity[x=1,x=2]", "is given twice"),
    ):
        capsys.readouterr()
        assert main(["run", "--methods", bad, "--output", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err, err
