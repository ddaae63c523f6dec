"""`partedit-bench userstudy export`: a self-contained static 2AFC study and an MTurk batch."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

from partedit_bench.errors import UserError
from partedit_bench.io import script_json
from partedit_bench.store import first_seed_edits, load_run, suite_samples
from partedit_bench.userstudy import INSTRUCTION

PAGE = Path(__file__).with_name("study.html")


def parse_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        a, sep, b = item.strip().partition(":")
        if not sep or not a or not b or a == b:
            raise UserError(f"--pairs expects a:b[,c:d], got '{item}'")
        pairs.append((a, b))
    return pairs


def _safe(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:10]


def export_study(
    run_dir: Path,
    pairs: list[tuple[str, str]],
    output: Path,
    seed: int = 0,
    base_url: str = "",
    catches: int = 2,
    repeats: int = 2,
) -> dict[str, Any]:
    """Writes `index.html` (+ images) and `mturk_batch.csv` + `mturk_layout.html`; returns
    the study's key (questions with their sides)."""
    for flag, value in (("--catches", catches), ("--repeats", repeats)):
        if value < 0:
            raise UserError(f"userstudy export {flag} must be at least 0, got {value}")
    info = load_run(run_dir)
    _, current = first_seed_edits(run_dir, info)  # one edit per (method, sample)
    edits: dict[tuple[str, str], Path] = {
        (record["variant"], record["sample_id"]): path.parent / record["image"]
        for path, record in current
    }
    variants = {v for v, _ in edits}
    for a, b in pairs:
        for name in (a, b):
            if name not in variants:
                from partedit_bench.errors import did_you_mean

                raise UserError(f"no edits of '{name}' in {run_dir}{did_you_mean(name, variants)}")
    samples = suite_samples(load_run(run_dir))
    rng = random.Random(seed)
    images = output / "images"
    images.mkdir(parents=True, exist_ok=True)

    def copy(src: Path, kind: str, sample_id: str) -> str:
        name = f"{kind}-{sample_id}.png"
        shutil.copyfile(src, images / name)
        return f"images/{name}"

    questions: list[dict[str, Any]] = []
    for a, b in pairs:
        for sample_id in sorted({s for v, s in edits if v == a} & {s for v, s in edits if v == b}):
            sample = samples[sample_id]
            left, right = (a, b) if rng.random() < 0.5 else (b, a)
            questions.append(
                {
                    "qid": f"q{len(questions):04d}",
                    "pair": f"{a}:{b}",
                    "sample_id": sample_id,
                    "part": sample.part,
                    "part_token": sample.part_token,
                    "edit": sample.edit,
                    "prompt": sample.prompt_changed,
                    "left": left,
                    "right": right,
                    "source": copy(Path(sample.original_image), "source", sample_id),
                    "left_image": copy(edits[(left, sample_id)], _safe(left), sample_id),
                    "right_image": copy(edits[(right, sample_id)], _safe(right), sample_id),
                    "check": "",
                    "repeat_of": "",
                }
            )
    if not questions:
        raise UserError(f"no sample has edits of both methods of any pair in {run_dir}")
    originals = list(questions)
    for question in rng.sample(originals, min(repeats, len(originals))):
        repeat = dict(
            question,
            qid=f"q{len(questions):04d}",
            check="repeat",
            repeat_of=question["qid"],
            left=question["right"],
            right=question["left"],
            left_image=question["right_image"],
            right_image=question["left_image"],
        )
        questions.append(repeat)
    for question in rng.sample(originals, min(catches, len(originals))):
        source_left = rng.random() < 0.5
        catch = dict(question, qid=f"q{len(questions):04d}", check="catch", repeat_of="")
        method = question["left"]
        catch.update(
            left="source" if source_left else method,
            right=method if source_left else "source",
            left_image=question["source"] if source_left else question["left_image"],
            right_image=question["left_image"] if source_left else question["source"],
        )
        questions.append(catch)
    rng.shuffle(questions)
    study = {"seed": seed, "instruction": INSTRUCTION, "questions": questions}
    payload = script_json(study)
    page = PAGE.read_text().replace("/*STUDY*/null", payload)
    (output / "index.html").write_text(page)
    (output / "study_key.json").write_text(json.dumps(study, indent=2))
    write_mturk(questions, output, base_url)
    return study


def write_mturk(questions: list[dict[str, Any]], output: Path, base_url: str) -> None:
    base = base_url.rstrip("/") + "/" if base_url else ""
    buffer = io.StringIO()
    columns = [
        "question_id",
        "pair",
        "sample_id",
        "part",
        "edit",
        "left_method",
        "right_method",
        "check",
        "repeat_of",
        "source_url",
        "left_url",
        "right_url",
    ]
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for q in questions:
        writer.writerow(
            {
                "question_id": q["qid"],
                "pair": q["pair"],
                "sample_id": q["sample_id"],
                "part": q["part"],
                "edit": q["edit"],
                "left_method": q["left"],
                "right_method": q["right"],
                "check": q["check"],
                "repeat_of": q["repeat_of"],
                "source_url": base + q["source"],
                "left_url": base + q["left_image"],
                "right_url": base + q["right_image"],
            }
        )
    (output / "mturk_batch.csv").write_text(buffer.getvalue())
    layout = f"""<!-- MTurk HIT layout: ${{...}} fields come from mturk_batch.csv -->
<crowd-form>
  <p>{html.escape(INSTRUCTION)}</p>
  <p>PART: <b>${{part}}</b> &nbsp; EDIT: <b>${{edit}}</b></p>
  <div style="display:flex;gap:12px">
    <figure><img src="${{source_url}}" width="256"><figcaption>Original</figcaption></figure>
    <figure><img src="${{left_url}}" width="256"><figcaption>A</figcaption></figure>
    <figure><img src="${{right_url}}" width="256"><figcaption>B</figcaption></figure>
  </div>
  <crowd-radio-group>
    <crowd-radio-button name="choice_left" value="left">A</crowd-radio-button>
    <crowd-radio-button name="choice_right" value="right">B</crowd-radio-button>
  </crowd-radio-group>
  <input type="hidden" name="question_id" value="${{question_id}}">
</crowd-form>
"""
    (output / "mturk_layout.html").write_text(layout)
