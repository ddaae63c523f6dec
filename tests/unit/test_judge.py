"""The MLLM judge: VIEScore's prompt texts (against the reference's, by digest and, when a
checkout is at hand, directly), parsing, the part overlay, the answer cache and resume, the
unparseable path, end to end on a tiny random image-text-to-text model in-process."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from partedit_bench.cli import main
from partedit_bench.judge import (
    JudgeGroup,
    outlined,
    parse_scores,
    part_prompt,
    pq_prompt,
    sc_prompt,
)
from partedit_bench.metrics import ScoredEdit

#: sha256 of VIEScore's assembled editing prompts ("tie": "\n".join of context_no_delimit,
#: two_image_edit_rule and tie_rule_SC; PQ: context_no_delimit and rule_PQ), computed from
#: TIGER-AI-Lab/VIEScore's viescore/vie_prompts.py at commit 2cbea4e.
REFERENCE_SC = "8f529562c2f89f8db51a3f7cc4d487686f676909c21010b67b0e65ec78150de5"
REFERENCE_PQ = "2473ff2c7406e06545c5c039ceb039ff2604ebacf150868a48f0bf07c9e733b0"


def test_viescore_prompts_equal_the_references():
    assert hashlib.sha256(sc_prompt("<instruction>").encode()).hexdigest() == REFERENCE_SC
    assert hashlib.sha256(pq_prompt().encode()).hexdigest() == REFERENCE_PQ
    assert "Editing instruction: make the hat red" in sc_prompt("make the hat red")
    prompt = part_prompt("make the hat red", "hat")
    assert prompt.startswith(pq_prompt().split("\nRULES:")[0])  # VIEScore's context first
    assert "outlined part (hat)" in prompt and prompt.endswith("make the hat red")


@pytest.mark.skipif(not os.environ.get("VIESCORE_DIR"), reason="VIESCORE_DIR: a VIEScore checkout")
def test_viescore_prompts_equal_a_checkout():
    """With VIESCORE_DIR pointing at a checkout (fetched, never committed): the prompts as its
    own `VIEScore(task="tie")` assembles them."""
    import importlib.util

    path = Path(os.environ["VIESCORE_DIR"]) / "viescore" / "vie_prompts.py"
    spec = importlib.util.spec_from_file_location("vie_prompts", path)
    v = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(v)
    context = v._context_no_delimit
    sc = "\n".join([context, v._prompts_0shot_two_image_edit_rule, v._prompts_0shot_tie_rule_SC])
    assert sc_prompt("X") == sc.replace("<instruction>", "X")
    assert pq_prompt() == "\n".join([context, v._prompts_0shot_rule_PQ])


@pytest.mark.parametrize(
    "answer, scores",
    [
        ('{\n"score" : [7, 9],\n"reasoning" : "fine"\n}', [7.0, 9.0]),
        ('Sure! {"score": [3.5, 10], "reasoning": "the hat is red"} done', [3.5, 10.0]),
        ("{'score' : [4, 6], 'reasoning' : 'single quotes'}", None),  # not JSON, no "score"
        ('{"score" : [4, 6], "reasoning" : "unterminated}', [4.0, 6.0]),  # the list is read
        ('{"score": [11, 2]}', None),  # out of range
        ('{"score": [5]}', None),  # one score where two are asked
        ('{"score": [true, 2]}', None),
        ("no json at all", None),
        ("", None),
    ],
)
def test_parse_scores(answer, scores):
    assert parse_scores(answer) == scores


def test_the_part_overlay_outlines_the_mask_only():
    image = np.full((20, 20, 3), 0.5)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 6:16] = True
    drawn = np.asarray(outlined(image, mask))
    red = np.all(drawn == (255, 0, 0), axis=-1)
    assert red.any() and not (red & ~mask).any()  # inside the part only
    assert not red[8:12, 9:13].any()  # its inside untouched
    assert (drawn[~red] == 128).all()


class Scripted:
    """A backend that answers from a list (the parsing path end to end); counts questions."""

    identity = {"backend": "scripted"}

    def __init__(self, answers):
        self.answers, self.asked = list(answers), []

    def ask(self, images, prompt):
        self.asked.append((len(images), prompt))
        return self.answers.pop(0)


def edit(seed=0):
    rng = np.random.default_rng(seed)
    source = rng.random((16, 16, 3))
    mask = np.zeros((16, 16), bool)
    mask[4:10, 4:10] = True
    return ScoredEdit(source, np.clip(source + 0.1, 0, 1), mask, fg_text="a red hat", part="hat")


def test_scores_cache_and_unparseable_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "cache"))
    backend = Scripted(['{"score": [8, 6]}', '{"score": [9, 4]}', '{"score": [7, 10]}'])
    values = JudgeGroup(backend)(edit())
    assert values["vie_sc"] == 6 and values["vie_pq"] == 4 and values["vie_o"] == math.sqrt(24)
    assert (values["part_edit_ok"], values["outside_unchanged"]) == (7, 10)
    assert values["judge_unparsed"] == 0
    assert [n for n, _ in backend.asked] == [2, 1, 3]  # source+edit, edit, +outline
    assert "Change the image to: a red hat" in backend.asked[0][1]  # no instruction: the prompt
    again = JudgeGroup(Scripted([]))(edit())  # every answer from the cache
    assert again == values
    broken = Scripted(["I think it is fine.", '{"score": [5, 5]}', '{"score": [1]}'])
    values = JudgeGroup(broken)(edit(1))
    assert math.isnan(values["vie_sc"]) and math.isnan(values["vie_o"])  # never 0
    assert values["vie_pq"] == 5 and math.isnan(values["part_edit_ok"])
    assert values["judge_unparsed"] == 2
    only_part = Scripted(['{"score": [2, 3]}'])
    values = JudgeGroup(only_part, "part")(edit(2))
    assert math.isnan(values["vie_sc"]) and values["part_edit_ok"] == 2


def test_judge_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    """evaluate --group judge --judge-model FOLDER: the tiny random model answers noise, so
    every answer is unparseable: NaN values, counted in the report's notes, cached (a second
    evaluate asks nothing), and a killed evaluation resumes from the cached answers."""
    from partedit_bench.judge.tiny import write_tiny_judge
    from tests.helpers import IDENTITY_RUN

    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "cache"))
    model = write_tiny_judge(tmp_path / "tiny-judge")
    run = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "2", "--output", str(run)]) == 0
    capsys.readouterr()
    args = ["evaluate", str(run), "--group", "judge", "--judge-model", str(model)]
    assert main(args) == 0
    rows = [json.loads(p.read_text())["values"] for p in run.rglob("*.judge-*.metrics.json")]
    assert len(rows) == 2
    for values in rows:
        assert all(values[m] is None for m in ("vie_sc", "vie_pq", "vie_o", "part_edit_ok"))
        assert values["judge_unparsed"] == 3
    answers = list((tmp_path / "cache" / "judge").glob("*.json"))
    assert len(answers) == 6  # 3 questions x 2 edits
    asked = json.loads(answers[0].read_text())
    assert asked["model"]["model"] == str(model) and asked["model"]["weights"]
    assert "score" in asked["prompt"]
    manifest = json.loads((run / "metrics_manifest.json").read_text())["judge"]["manifest"]
    assert manifest["prompts"]["vie_sc"] == REFERENCE_SC
    # resume: the metric rows gone (a killed evaluation), the answers kept: nothing is asked
    for path in run.rglob("*.judge-*.metrics.json"):
        path.unlink()
    import partedit_bench.judge.backends as backends

    monkeypatch.setattr(backends.TransformersJudge, "ask", lambda *a: pytest.fail("asked"))
    assert main(args) == 0
    assert len(list(run.rglob("*.judge-*.metrics.json"))) == 2
    capsys.readouterr()
    assert main(["report", str(run), "--metrics", "psnr_bg,vie_o,part_edit_ok"]) == 0
    notes = json.loads((run / "report" / "manifest.json").read_text())["notes"]
    assert any("3 judge answer" not in n and "6 judge answer(s) had no readable score" in n
               for n in notes), notes  # fmt: skip
    table = pd.read_csv(run / "report" / "table.csv")
    assert set(table.metric) == {"psnr_bg", "vie_o", "part_edit_ok"}


def test_a_judge_that_cannot_be_loaded_is_one_line(tmp_path, capsys):
    from tests.helpers import IDENTITY_RUN

    run = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(run)]) == 0
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(run), "--group", "judge", "--judge-model", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"judge folder '{empty}' could not be loaded" in err and "\n" not in err
    url = ["evaluate", str(run), "--group", "judge", "--judge-url", "http://127.0.0.1:9/v1"]
    assert main(url) == 2
    assert "needs the served model's name" in capsys.readouterr().err
    assert main([*url, "--judge-model", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "judge endpoint http://127.0.0.1:9/v1 did not answer" in err and "\n" not in err


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_judge_over_http_against_transformers_serve(tmp_path, monkeypatch, capsys):
    """The OpenAI-compatible backend end to end: `transformers serve` (a real server on
    loopback, started and stopped here) serving the tiny model from its folder; the same client
    talks to vLLM or SGLang on a GPU."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    from partedit_bench.judge.tiny import write_tiny_judge
    from tests.helpers import IDENTITY_RUN

    serve = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    if not Path(serve).is_file():
        pytest.skip("transformers serve needs transformers[serving] (make install installs it)")
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "cache"))
    model = write_tiny_judge(tmp_path / "tiny-judge")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [serve, "serve", str(model), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, "transformers serve exited"
                assert time.monotonic() < deadline, "transformers serve did not start"
                time.sleep(1)
        run = tmp_path / "run"
        assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(run)]) == 0
        monkeypatch.setenv("JUDGE_KEY", "not-a-secret")
        args = ["evaluate", str(run), "--group", "judge", "--judge-url",
                f"http://127.0.0.1:{port}/v1", "--judge-model", str(model),
                "--judge-key-env", "JUDGE_KEY"]  # fmt: skip
        assert main(args) == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    (row,) = [json.loads(p.read_text())["values"] for p in run.rglob("*.judge-*.metrics.json")]
    assert row["judge_unparsed"] == 3 and row["vie_sc"] is None  # noise from random weights
    answers = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "judge").glob("*.json")]
    assert len(answers) == 3 and all(a["answer"] for a in answers)  # the server answered
    assert answers[0]["model"] == {
        "backend": "openai-compatible", "url": f"http://127.0.0.1:{port}/v1", "model": str(model)
    }  # fmt: skip
    assert "not-a-secret" not in json.dumps(answers)  # the key is never stored
