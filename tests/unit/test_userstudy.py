"""2AFC study: statistics against hand-computed values, and a whole exported study answered
with the keyboard in headless Chromium, downloaded and analyzed; the gallery in the browser."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.data.suites import load_suite
from partedit_bench.userstudy.stats import binomial_test, wilson_interval
from tests.helpers import CHROMEDRIVER, CHROMIUM, IDENTITY_RUN, chrome


def test_wilson_interval_hand_computed():
    # 7/10: p = .7, z^2 = 3.8415; center = (.7 + .19207) / 1.38415 = .64449;
    # half = 1.96 * sqrt(.021 + .0096036) / 1.38415 = .24772
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.39677, abs=1e-4) and high == pytest.approx(0.89221, abs=1e-4)
    # 0/10: [0, z^2 / (n + z^2)] = [0, 3.8415 / 13.8415]
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.27753, abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))


def test_binomial_test_hand_computed():
    # two-sided, p = .5: 2 * (C(10,7) + C(10,8) + C(10,9) + C(10,10)) / 2^10 = 352 / 1024
    assert binomial_test(7, 10) == pytest.approx(352 / 1024)
    assert binomial_test(9, 10) == pytest.approx(2 * 11 / 1024)
    assert binomial_test(5, 10) == pytest.approx(1.0)
    assert binomial_test(0, 6) == pytest.approx(2 / 64)


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--limit",
                "6",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    edits = tmp_path / "edits"
    edits.mkdir()
    rng = np.random.default_rng(0)
    for sample in load_suite("partworld").samples[:6]:
        pixels = np.asarray(Image.open(sample.original_image).convert("RGB")).astype(int)
        noisy = np.clip(pixels + rng.integers(-30, 31, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(edits / f"{sample.id}.png")
    assert (
        main(
            [
                "import-edits",
                str(edits),
                "--suite",
                "partworld",
                "--name",
                "noisy",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    return run


def export(run: Path, out: Path, *extra: str) -> int:
    return main(
        ["userstudy", "export", str(run), "--pairs", "identity:noisy", "--output", str(out), *extra]
    )


def test_export_writes_a_study_and_an_mturk_batch(tmp_path, capsys):
    run = make_run(tmp_path)
    out = tmp_path / "study"
    assert export(run, out, "--base-url", "https://example.org/study") == 0
    key = json.loads((out / "study_key.json").read_text())
    checks = [q["check"] for q in key["questions"]]
    assert checks.count("") == 6 and checks.count("catch") == 2 and checks.count("repeat") == 2
    sides = {q["left"] for q in key["questions"] if not q["check"]}
    assert sides == {"identity", "noisy"}  # sides randomized
    by_id = {q["qid"]: q for q in key["questions"]}
    for repeat in (q for q in key["questions"] if q["check"] == "repeat"):
        first = by_id[repeat["repeat_of"]]  # the same pair, sides swapped
        assert (repeat["left"], repeat["right"]) == (first["right"], first["left"])
    batch = pd.read_csv(out / "mturk_batch.csv")
    assert len(batch) == 10
    assert batch.left_url.str.startswith("https://example.org/study/images/").all()
    # MTurk shows workers the batch's rows: nothing in it names a method or a check
    assert list(batch.columns) == [
        "question_id", "part", "edit", "source_url", "left_url", "right_url"
    ]  # fmt: skip
    # the hosted folder is the page and its images; the key lives beside it
    site = out / "site"
    assert sorted(p.name for p in site.iterdir()) == ["images", "index.html"]
    assert len(list((site / "images").iterdir())) == 3 * 10  # one image per question and side
    page = (site / "index.html").read_text()
    assert "<script>" in page and '"qid"' in page and "</script>" in page
    # an export never replaces one without --overwrite (a new key would orphan the answers)
    capsys.readouterr()
    assert export(run, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((out / "study_key.json").read_text()) == key
    assert export(run, out, "--overwrite", "--seed", "4") == 0
    assert json.loads((out / "study_key.json").read_text())["study"] != key["study"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert export(run, other, "--overwrite") == 2  # not a study: never replaced
    assert (other / "notes.txt").read_text() == "mine"
    assert (
        main(
            [
                "userstudy",
                "export",
                str(run),
                "--pairs",
                "identity:missing",
                "--output",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def method_fingerprints(names) -> set[str]:
    """Each method's name and the constant prefixes an export could tie to a method."""
    import hashlib

    out = set()
    for name in names:
        out |= {name, hashlib.sha1(name.encode()).hexdigest()[:10]}
        out.add(hashlib.sha256(name.encode()).hexdigest()[:10])
    return out


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="browser test needs Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver); .ci/run installs them",
)
def test_a_whole_study_answered_in_a_real_browser(tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run = make_run(tmp_path)
    out = tmp_path / "study"
    assert export(run, out, "--seed", "3") == 0
    key = json.loads((out / "study_key.json").read_text())
    by_id = {q["qid"]: q for q in key["questions"]}
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(downloads)
    secret = method_fingerprints(["identity", "noisy", "source"])
    secret |= {q["sample_id"] for q in key["questions"]}
    secret |= {"catch", "repeat", "check", "pair", "left_method"}
    try:
        driver.get((out / "site" / "index.html").as_uri())
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.ENTER)  # consent page -> first question
        expected_wins = 0
        seen_pages, requests = [driver.page_source], []
        for index in range(len(key["questions"])):
            progress = driver.find_element(By.ID, "progress").text
            assert progress == f"Question {index + 1} of {len(key['questions'])}"
            # the rater's browser knows only the question's opaque id
            qid = driver.execute_script("return STUDY.questions[arguments[0]].qid", index)
            question = by_id[qid]
            seen_pages.append(driver.page_source)
            requests += driver.execute_script(  # what the browser fetched for this question
                "return [...document.images].map(i => i.currentSrc)"
            )
            # the rater: never the unedited source, otherwise always the left side
            side = "right" if question["left"] == "source" else "left"
            if not question["check"] and question[side] == "identity":
                expected_wins += 1
            if index != 2:
                body.send_keys(Keys.ARROW_LEFT if side == "left" else Keys.ARROW_RIGHT)
                continue
            # a key held down answers one question; a reload resumes at the next one
            arrow = "ArrowLeft" if side == "left" else "ArrowRight"
            press = "document.dispatchEvent(new KeyboardEvent(arguments[0], {key: arguments[1]}))"
            driver.execute_script(press, "keydown", arrow)  # answers question 3 ...
            driver.execute_script(press, "keydown", arrow)  # ... held: nothing more
            total = len(key["questions"])
            assert driver.find_element(By.ID, "progress").text == f"Question 4 of {total}"
            driver.execute_script(press, "keyup", arrow)
            driver.refresh()
            try:  # the page warns before leaving unsent answers
                driver.switch_to.alert.accept()
            except NoAlertPresentException:
                pass
            body = driver.find_element(By.TAG_NAME, "body")
            start = driver.find_element(By.ID, "start").text
            assert start == f"Continue (question 4 of {total})", start
            body.send_keys(Keys.ENTER)
        deadline = time.time() + 20
        while not (downloads / "answers.csv").is_file() and time.time() < deadline:
            time.sleep(0.1)
        assert (downloads / "answers.csv").is_file(), "the study did not download its answers"
        # blind: no method name, constant method prefix, sample id or check mark anywhere the
        # rater's browser reaches (the page, every request, every hosted file name, the answers)
        hosted = [str(p.relative_to(out / "site")) for p in (out / "site").rglob("*")]
        assert len(requests) == 3 * len(key["questions"]) and all(requests)
        answers_text = (downloads / "answers.csv").read_text()
        answered = [line.split(",")[1] for line in answers_text.strip().splitlines()[1:]]
        assert sorted(answered) == sorted(by_id)  # each question once, across the reload
        raw_page = (out / "site" / "index.html").read_text()
        for text in [raw_page, *seen_pages, *requests, *hosted, answers_text]:
            leaked = [s for s in secret if s in text.lower()]
            assert not leaked, (leaked, text[:200])
        # the gallery shows every method column (and, the edits scored, the report's plots)
        assert main(["evaluate", str(run)]) == 0 and main(["report", str(run)]) == 0
        driver.get((run / "report" / "gallery.html").as_uri())
        columns = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "th.method")]
        assert columns == ["identity", "noisy"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == 6
        # the report's plots are embedded and load in the browser
        plots = driver.find_elements(By.CSS_SELECTOR, "img.plot")
        assert len(plots) >= 3
        deadline = time.time() + 10
        while time.time() < deadline and not all(
            driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", p)
            for p in plots
        ):
            time.sleep(0.1)
        assert all(driver.execute_script("return arguments[0].naturalWidth", p) > 0 for p in plots)
        # the report folder moved elsewhere is whole: every image loads from the copy, every
        # metric is under every edit, and at 1400 px every column is on the screen
        import shutil

        moved = tmp_path / "elsewhere" / "report"
        shutil.copytree(run / "report", moved)
        driver.set_window_size(1400, 900)
        driver.get((moved / "gallery.html").as_uri())
        images = driver.find_elements(By.CSS_SELECTOR, "tbody img")
        deadline = time.time() + 10
        while time.time() < deadline and not all(
            driver.execute_script("return arguments[0].complete", i) for i in images
        ):
            time.sleep(0.1)
        sources = [i.get_attribute("src") for i in images]
        assert images and all(src.startswith(moved.as_uri()) for src in sources), sources[:3]
        assert all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
        wide = driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= driver.execute_script("return window.innerWidth"), wide
        metric_boxes = driver.find_elements(By.CSS_SELECTOR, "td .metrics")
        assert len(metric_boxes) == 2 * 6 and all("psnr_bg" in b.text for b in metric_boxes)
    finally:
        driver.quit()
    result_dir = tmp_path / "analysis"
    analyze = ["userstudy", "analyze", str(downloads / "answers.csv"), "--output", str(result_dir)]
    assert main(analyze) == 2  # blind answers need the key
    assert main([*analyze, "--key", str(out / "study_key.json")]) == 0
    prefs = pd.read_csv(result_dir / "preferences.csv")
    row = prefs.set_index("pair").loc["identity:noisy"]
    assert row.responses == 6 and row.preference == pytest.approx(expected_wins / 6)
    low, high = wilson_interval(expected_wins, 6)
    assert row.ci_low == pytest.approx(low) and row.ci_high == pytest.approx(high)
    assert row.p_value == pytest.approx(binomial_test(expected_wins, 6))
    assert "\\toprule" in (result_dir / "preferences.tex").read_text()
    # earlier results are replaced only with --overwrite
    assert main([*analyze, "--key", str(out / "study_key.json")]) == 2
    assert main([*analyze, "--key", str(out / "study_key.json"), "--overwrite"]) == 0


def test_analysis_drops_raters_failing_attention_checks(tmp_path):
    rows = []
    for rater, chooses_source in (("good", False), ("bad", True)):
        for q in range(4):
            rows.append(
                {
                    "rater_id": rater,
                    "question_id": f"q{q}",
                    "pair": "a:b",
                    "sample_id": f"s{q}",
                    "part": "head",
                    "left": "a",
                    "right": "b",
                    "chosen": "a" if q < 3 else "b",
                    "check": "",
                    "repeat_of": "",
                }
            )
        rows.append(
            {
                "rater_id": rater,
                "question_id": "q9",
                "pair": "a:b",
                "sample_id": "s0",
                "part": "head",
                "left": "source",
                "right": "a",
                "chosen": "source" if chooses_source else "a",
                "check": "catch",
                "repeat_of": "",
            }
        )
        rows.append(
            {
                "rater_id": rater,
                "question_id": "q8",
                "pair": "a:b",
                "sample_id": "s0",
                "part": "head",
                "left": "b",
                "right": "a",
                "chosen": "a",
                "check": "repeat",
                "repeat_of": "q0",
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "answers.csv", index=False)
    assert (
        main(
            [
                "userstudy",
                "analyze",
                str(tmp_path / "answers.csv"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    prefs = pd.read_csv(tmp_path / "out" / "preferences.csv").iloc[0]
    assert prefs.responses == 4 and prefs.raters == 1 and prefs.preference == pytest.approx(0.75)


def test_mturk_results_are_read(tmp_path):
    rows = [
        {
            "WorkerId": f"w{i % 2}",
            "Input.question_id": f"q{i}",
            "Input.pair": "a:b",
            "Input.sample_id": f"s{i}",
            "Input.part": "hair",
            "Input.left_method": "a",
            "Input.right_method": "b",
            "Input.check": "",
            "Input.repeat_of": "",
            "Answer.choice": "choice_left" if i < 5 else "choice_right",
        }
        for i in range(8)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "batch_results.csv", index=False)
    assert (
        main(
            [
                "userstudy",
                "analyze",
                str(tmp_path / "batch_results.csv"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    prefs = pd.read_csv(tmp_path / "out" / "preferences.csv").iloc[0]
    assert prefs.responses == 8 and prefs.raters == 2 and prefs.preference == pytest.approx(5 / 8)
    per_part = pd.read_csv(tmp_path / "out" / "preferences_per_part.csv")
    assert per_part.part.tolist() == ["hair"]


def test_gallery_and_study_use_the_runs_first_seed(tmp_path):
    from partedit_bench.cli import main
    from partedit_bench.userstudy.export import export_study

    out = tmp_path / "run"
    slow = "tests.helpers:SlowIdentity"
    args = ["--limit", "2", "--seeds", "3,5", "--output", str(out)]
    assert main(["run", "--backbone", "tiny-sd", "--methods", f"identity,{slow}", *args]) == 0
    page = (out / "report" / "gallery.html").read_text()
    assert '"seed": 3' in page
    data = json.loads(page.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    assert data["reference"] == data["variants"][0]  # (no partedit ran: the first column)
    for row in data["rows"]:  # the edits shown are the seed-3 ones, copied beside the page
        assert row["true"] == f"gallery/{row['id']}_true.png"  # PartWorld's exact edit
        assert (out / "report" / row["true"]).is_file()
        for variant, shown in row["edits"].items():
            stored = out / variant / row["split"] / f"{row['id']}__s3.png"
            assert (out / "report" / shown["image"]).read_bytes() == stored.read_bytes()
    study = export_study(out, [("identity", "SlowIdentity")], tmp_path / "study")
    assert study["questions"]


def test_analyze_when_no_rater_is_left_is_one_line(tmp_path, capsys):
    import csv

    from partedit_bench.cli import main

    fields = ["rater_id", "question_id", "pair", "left", "right", "chosen", "check"]
    rows = [
        ["r1", "q1", "a:b", "a", "b", "a", ""],
        ["r1", "c1", "a:source", "a", "source", "source", "catch"],
    ]
    path = tmp_path / "answers.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([fields, *rows])
    capsys.readouterr()
    assert main(["userstudy", "analyze", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 1 rater(s) dropped" in err, err
    assert not (tmp_path / "out").exists()
    rows[1][-1] = "fail"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([fields, *rows])
    assert main(["userstudy", "analyze", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "unknown check value(s) 'fail'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (["r1", "q1", "a:b", "a", "b", "zzz", ""], "chosen 'zzz' is neither side"),
        (["", "", "", "", "", "", ""], "empty rater_id"),
        (["r1", "q1", "a:b:c", "a", "b", "a", ""], "pair 'a:b:c' is not 'a:b'"),
        (["r1", "q1", "a:a", "a", "a", "a", ""], "pair 'a:a' is not 'a:b'"),
        (["r1", "q1", "a:b", "a", "b", "a", "fail"], "unknown check value(s) 'fail'"),
        (["r1", "q1", "a:b", "b", "a", "a", "repeat"], "names no repeated question"),
    ],
)
def test_malformed_answer_rows_are_one_line_naming_file_and_line(tmp_path, capsys, row, expected):
    import csv

    fields = ["rater_id", "question_id", "pair", "left", "right", "chosen", "check"]
    good = ["r1", "q0", "a:b", "a", "b", "a", ""]
    path = tmp_path / "answers.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([fields, good, row])
    capsys.readouterr()
    assert main(["userstudy", "analyze", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path} line 3" in err and expected in err, err
    assert not (tmp_path / "out").exists()


def test_blind_mturk_results_are_joined_with_the_key(tmp_path, capsys):
    run = make_run(tmp_path)
    out = tmp_path / "study"
    assert export(run, out, "--catches", "0", "--repeats", "0") == 0
    key = json.loads((out / "study_key.json").read_text())
    batch = pd.read_csv(out / "mturk_batch.csv", dtype=str)
    # every worker picks the side that holds `noisy`
    rows = []
    for worker in ("w1", "w2"):
        for q in batch.itertuples():
            question = next(k for k in key["questions"] if k["qid"] == q.question_id)
            side = "left" if question["left"] == "noisy" else "right"
            rows.append(
                {
                    "WorkerId": worker,
                    "Input.question_id": q.question_id,
                    "Input.part": q.part,
                    "Answer.choice": f"choice_{side}",
                }
            )
    results = tmp_path / "batch_results.csv"
    pd.DataFrame(rows).to_csv(results, index=False)
    args = ["userstudy", "analyze", str(results), "--output", str(tmp_path / "a")]
    capsys.readouterr()
    assert main(args) == 2
    assert "--key" in capsys.readouterr().err
    assert main([*args, "--key", str(out / "study_key.json")]) == 0
    prefs = pd.read_csv(tmp_path / "a" / "preferences.csv").set_index("pair")
    assert prefs.loc["identity:noisy"].preference == 0.0 and prefs.loc["identity:noisy"].raters == 2
    # per part: the canonical parts of the key (two "head"s are two rows, not one)
    per_part = pd.read_csv(tmp_path / "a" / "preferences_per_part.csv")
    assert set(per_part.part) == {q["part_token"] for q in key["questions"]}
    # an answer to a question the key does not hold is named with its line
    rows[3]["Input.question_id"] = "q9999"
    pd.DataFrame(rows).to_csv(results, index=False)
    capsys.readouterr()
    assert main([*args, "--key", str(out / "study_key.json"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "line 5: question 'q9999' is not in the key" in err, err


def test_metric_agreement_and_rater_agreement_on_known_answers(tmp_path, capsys):
    """A hand-made answers file over a run of identity and a rotated edit: psnr_bg always
    prefers identity and edit_strength the rotation, so their agreement is the share of
    answers choosing each (9 and 3 of 12); mask_iou has no value for either (not scored).
    Fleiss' kappa 1/9 and Krippendorff's alpha 10/54, computed by hand in the comments."""
    run = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "4", "--output", str(run)]) == 0
    edits = tmp_path / "edits"
    edits.mkdir()
    samples = load_suite("partworld").samples[:4]
    for sample in samples:
        Image.open(sample.original_image).convert("RGB").rotate(90).save(edits / f"{sample.id}.png")
    assert main(["import-edits", str(edits), "--suite", "partworld", "--name", "rot",
                 "--output", str(run)]) == 0  # fmt: skip
    assert main(["evaluate", str(run)]) == 0
    # per question, (identity, rot) counts: (3, 0), (3, 0), (2, 1), (1, 2): P-bar 2/3,
    # P_e 0.75^2 + 0.25^2 = 0.625, kappa (2/3 - 0.625) / 0.375 = 1/9. Coincidences: o(id,id) 7,
    # o(rot,rot) 1, o(id,rot) = o(rot,id) 2; n_id 9, n_rot 3: alpha 1 - 11 * 4 / 54 = 10/54.
    picks = {"A": "iiir", "B": "iirr", "C": "iiii"}
    rows = [
        {"rater_id": rater, "question_id": f"q{q}", "pair": "identity:rot",
         "sample_id": samples[q].id, "part": samples[q].part_token, "left": "identity",
         "right": "rot", "chosen": "identity" if pick == "i" else "rot", "check": "",
         "repeat_of": ""}
        for rater, chosen in picks.items()
        for q, pick in enumerate(chosen)
    ]  # fmt: skip
    answers = tmp_path / "answers.csv"
    pd.DataFrame(rows).to_csv(answers, index=False)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["userstudy", "analyze", str(answers), "--run", str(run), "--output",
                 str(out)]) == 0  # fmt: skip
    table = pd.read_csv(out / "metric_agreement.csv").set_index("metric")
    psnr, strength = table.loc["psnr_bg"], table.loc["edit_strength"]
    assert (psnr.agree, psnr.disagree, psnr.ties, psnr.answers) == (9, 3, 0, 12)
    assert psnr.agreement == 0.75 and psnr.ci_low < 0.75 < psnr.ci_high
    assert strength.agreement == 0.25 and strength.direction == "higher"
    assert table.loc["leakage"].agreement == 0.75 and table.loc["leakage"].direction == "lower"
    assert "mask_iou" not in table.index  # no value in this run: not a row by default
    assert list(table.agreement) == sorted(table.agreement, reverse=True)
    raters = json.loads((out / "inter_rater.json").read_text())
    assert raters["fleiss_kappa"] == pytest.approx(1 / 9, abs=1e-12)
    assert raters["krippendorff_alpha"] == pytest.approx(10 / 54, abs=1e-12)
    assert raters["questions_with_two_or_more_raters"] == 4
    md = (out / "metric_agreement.md").read_text()
    assert "| psnr_bg (higher) | 75.0% |" in md and "Fleiss' kappa 0.111" in md
    # chosen metrics, a named metric without values is counted as not scored
    assert main(["userstudy", "analyze", str(answers), "--run", str(run), "--metrics",
                 "mask_iou,psnr_bg", "--output", str(out), "--overwrite"]) == 0  # fmt: skip
    table = pd.read_csv(out / "metric_agreement.csv").set_index("metric")
    assert list(table.index) == ["psnr_bg", "mask_iou"]
    assert table.loc["mask_iou"].not_scored == 12 and np.isnan(table.loc["mask_iou"].agreement)
    capsys.readouterr()
    # answers of another run's methods: one line
    other = tmp_path / "other.csv"
    pd.DataFrame([{**rows[0], "right": "p2p", "pair": "identity:p2p"}]).to_csv(other, index=False)
    assert main(["userstudy", "analyze", str(other), "--run", str(run), "--output",
                 str(tmp_path / "o2")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "the run has no finished job of p2p" in err and "\n" not in err


def test_rater_agreement_equals_published_examples():
    """Fleiss' kappa on Fleiss's Wikipedia example (10 items, 14 raters: 0.210) and
    Krippendorff's alpha on the nominal example of Krippendorff (2011), 'Computing
    Krippendorff's Alpha-Reliability' (4 observers, 12 units, missing values: 0.743)."""
    from partedit_bench.userstudy.meta import fleiss_kappa, krippendorff_alpha

    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]  # fmt: skip
    assert round(fleiss_kappa(np.array(table)), 3) == 0.210
    n = None
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = [[o[i] for o in observers if o[i] is not None] for i in range(12)]
    assert round(krippendorff_alpha(units), 3) == 0.743
    assert np.isnan(fleiss_kappa(np.array([[3, 0], [2, 0]])))  # one category: undefined
