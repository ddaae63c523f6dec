"""Resume after SIGKILL at a random moment, and sharding (DESIGN.md, "Scale")."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partedit_bench.data.suites import load_suite
from partedit_bench.errors import UserError
from partedit_bench.jobs import shard_from
from partedit_bench.store import iter_records
from tests.conftest import REPO, cli_command, cli_env, run_cli

SLOW = "tests.helpers:SlowIdentity"
VOLATILE = {"started", "finished", "wall_time_s", "peak_memory", "shard"}


def stable_records(root: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(iter_records(root)):
        record = json.loads(path.read_text())
        out[str(path.relative_to(root))] = {k: v for k, v in record.items() if k not in VOLATILE}
    return out


def test_resume_after_sigkill_records_every_job_once(tmp_path):
    out = tmp_path / "run"
    args = [
        "run",
        "--backbone",
        "tiny-sd",
        "--methods",
        SLOW,
        "--set",
        f"{SLOW}.delay_s=0.02",
        "--limit",
        "16",
        "--seeds",
        "0,1",
        "--output",
        str(out),
    ]
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    for _attempt in range(3):
        proc = subprocess.Popen(
            cli_command(*args),
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while not list(iter_records(out)) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = run_cli(*args)
    assert done.returncode == 0, f"kill seed {seed}: {done.stderr[-2000:]}"
    jsons = sorted(iter_records(out))
    assert len(jsons) == 32, f"kill seed {seed}"
    assert not list(out.rglob("*.tmp")), f"kill seed {seed}: temporary files left"
    samples = {s.id: s for s in load_suite("partworld").samples}
    keys = set()
    for path in jsons:
        record = json.loads(path.read_text())
        assert record["status"] == "ok"
        keys.add((record["variant"], record["sample_id"], record["seed"]))
        edited = np.asarray(Image.open(path.with_suffix(".png")))
        source = np.asarray(Image.open(samples[record["sample_id"]].original_image))
        np.testing.assert_array_equal(edited, source)
    assert len(keys) == 32


def test_two_shards_equal_one_unsharded_run(tmp_path):
    common = [
        "run",
        "--methods",
        f"identity,{SLOW}[delay_s=0.01]",
        "--limit",
        "6",
        "--seeds",
        "0,1",
    ]
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    procs = [
        subprocess.Popen(
            cli_command(*common, "--output", str(sharded), "--shard", f"{i}/2"),
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert run_cli(*common, "--output", str(whole)).returncode == 0
    a, b = stable_records(sharded), stable_records(whole)
    assert len(a) == 24 and a == b
    for rel in a:
        png = Path(rel).with_suffix(".png")
        assert (sharded / png).read_bytes() == (whole / png).read_bytes()
    run_json = json.loads((sharded / "run.json").read_text())
    assert run_json["run_hash"] == json.loads((whole / "run.json").read_text())["run_hash"]
    shard_files = sorted(p.name for p in (sharded / "shards").glob("*.json"))
    assert shard_files == ["0-of-2.json", "1-of-2.json"]
    assert all(
        len(list((sharded / "shards" / n).glob("*.json"))) == 1 for n in ("0-of-2", "1-of-2")
    )
    assert not list(sharded.glob(".run.json*"))


def test_shard_from_launcher_environments():
    assert shard_from("1/4", {}) == shard_from("1/4", {"RANK": "3", "WORLD_SIZE": "8"})
    torchrun = shard_from(None, {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert (torchrun.index, torchrun.count, torchrun.local_rank) == (3, 8, 1)
    slurm = shard_from(
        None,
        {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "10"},
    )
    assert (slurm.index, slurm.count) == (2, 4)
    assert (shard_from(None, {}).index, shard_from(None, {}).count) == (0, 1)
    for bad in ("2/2", "a/b", "3"):
        with pytest.raises(UserError):
            shard_from(bad, {})


def test_two_identical_runs_on_one_folder_split_the_jobs(tmp_path):
    out = tmp_path / "run"
    args = [
        "run", "--methods", f"{SLOW}[delay_s=0.4]", "--limit", "8", "--seeds", "0,1",
        "--output", str(out),
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            cli_command(*args),
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert len(list(iter_records(out))) == 16 and not list(out.rglob("*.claim"))
    for path in iter_records(out):
        assert json.loads(path.read_text())["status"] == "ok"
    import re

    computed = []  # each worker's summary row: jobs, ok, cached, [claimed,] skipped, failed
    for stdout, _ in results:
        rows = [r for r in stdout.splitlines() if re.match(r"^│\s*16\s*│", r)]
        computed.append(int(rows[0].split("│")[2]))
    # each job was computed by exactly one of the two; both did some
    assert sum(computed) == 16 and min(computed) > 0, computed


def test_a_stale_claim_of_a_dead_process_is_taken_over(tmp_path):
    import socket

    from partedit_bench.store import claim_job

    claim = tmp_path / "job.claim"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    claim.write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    assert claim_job(claim)  # the dead process's claim is replaced by ours
    assert json.loads(claim.read_text())["pid"] == os.getpid()
    other = tmp_path / "other.claim"
    other.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    assert not claim_job(other)  # a live claim of another host is respected


def test_leftover_temporary_files_of_a_killed_run_are_removed(tmp_path):
    import os
    import time

    from partedit_bench.cli import main
    from tests.helpers import IDENTITY_RUN

    out = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(out)]) == 0
    old = time.time() - 3600
    leftovers = [
        out / ".run.json.abc123.tmp",
        out / "identity" / "synth" / ".pw0-00000__s0.pixel-1.metrics.json.x1.tmp",
        out / "report" / ".table.csv.y2.tmp",
        out / "shards" / ".0of1.json.z3.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
        os.utime(path, (old, old))
    fresh = out / "identity" / ".being-written.json.q9.tmp"  # a live writer's: kept
    fresh.write_bytes(b"partial")
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(out)]) == 0
    assert not any(p.exists() for p in leftovers)
    assert fresh.exists()


def test_every_invocation_of_a_shard_keeps_its_summary(tmp_path):
    import json

    from partedit_bench.cli import main
    from tests.helpers import IDENTITY_RUN

    out = tmp_path / "run"
    for _ in range(2):
        assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(out)]) == 0
    history = sorted((out / "shards" / "0-of-1").glob("*.json"))
    assert len(history) == 2
    first, second = (json.loads(p.read_text()) for p in history)
    assert first["ok"] == 1 and second["cached"] == 1
    assert json.loads((out / "shards" / "0-of-1.json").read_text()) == second


def test_a_killed_writers_temporary_file_is_removed_at_once(tmp_path):
    """A temporary file names its writer: one whose process is gone is a leftover at once
    (a SIGKILL between writing and renaming), a live writer's is kept until it is old."""
    import os

    from partedit_bench.io import _host, remove_stale_temps

    gone = subprocess.Popen(["true"])
    gone.wait()
    leftover = tmp_path / "v" / f".pw0-00003__s0.claim.{_host()}-{gone.pid}.k2x9.tmp"
    leftover.parent.mkdir()
    leftover.write_text("")
    live = tmp_path / "v" / f".pw0-00004__s0.json.{_host()}-{os.getpid()}.a1b2.tmp"
    live.write_text("")
    assert remove_stale_temps(tmp_path) == 1
    assert not leftover.exists() and live.exists()
