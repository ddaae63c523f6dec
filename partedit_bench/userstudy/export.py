"""`partedit-bench userstudy export`: a self-contained static 2AFC study and an MTurk batch."""

from __future__ import annotations

import csv
import html
import io
import random
import secrets
import shutil
from pathlib import Path
from typing import Any

from partedit_bench.data.schema import load_image
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, json_bytes, png_bytes, script_json
from partedit_bench.outputs import output_folder, replace_folder, staging_folder
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


#: The folder of an export that gets hosted (what a rater's browser can reach); the key and the
#: MTurk batch are written beside it, never inside it.
SITE = "site"
KEY_FILE = "study_key.json"


def _is_study(folder: Path) -> bool:
    return (folder / KEY_FILE).is_file()


def export_study(
    run_dir: Path,
    pairs: list[tuple[str, str]],
    output: Path,
    seed: int = 0,
    base_url: str = "",
    catches: int = 2,
    repeats: int = 2,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Writes a blind 2AFC study: `OUTPUT/site/` (index.html + images, the folder to host),
    and beside it `study_key.json` (which method is on which side of each question, which
    questions are attention checks or repeats), `mturk_batch.csv` and `mturk_layout.html`.
    Returns the key.

    Nothing a rater's browser receives names or fingerprints a method or marks a check: the
    page holds only each question's opaque id, PART, EDIT and three image URLs; every image
    is re-encoded (no metadata) under a random name of its own, per question and side; the
    question ids are assigned after shuffling. `userstudy analyze --key` joins the answers with
    the key. An existing export in `output` is replaced only with `overwrite`."""
    for flag, value in (("--catches", catches), ("--repeats", repeats)):
        if value < 0:
            raise UserError(f"userstudy export {flag} must be at least 0, got {value}")
    output_folder(output, "userstudy export --output", overwrite, owned=_is_study)
    info = load_run(run_dir)
    _, current = first_seed_edits(run_dir, info)  # one edit per (method, sample)
    edits: dict[tuple[str, str], Path] = {
        (record.variant, record.sample_id): path.parent / str(record.image)
        for path, record in current
    }
    variants = {v for v, _ in edits}
    for a, b in pairs:
        for name in (a, b):
            if name not in variants:
                from partedit_bench.errors import did_you_mean

                raise UserError(f"no edits of '{name}' in {run_dir}{did_you_mean(name, variants)}")
    samples = suite_samples(info)
    rng = random.Random(seed)
    questions: list[dict[str, Any]] = []
    for a, b in pairs:
        for sample_id in sorted({s for v, s in edits if v == a} & {s for v, s in edits if v == b}):
            sample = samples[sample_id]
            left, right = (a, b) if rng.random() < 0.5 else (b, a)
            questions.append(
                {
                    "pair": f"{a}:{b}",
                    "sample_id": sample_id,
                    "part": sample.part,
                    "part_token": sample.part_token,
                    "edit": sample.edit,
                    "prompt": sample.prompt_changed,
                    "left": left,
                    "right": right,
                    "source_file": str(sample.original_image),
                    "left_file": str(edits[(left, sample_id)]),
                    "right_file": str(edits[(right, sample_id)]),
                    "check": "",
                    "repeat_of": "",
                }
            )
    if not questions:
        raise UserError(f"no sample has edits of both methods of any pair in {run_dir}")
    originals = list(questions)
    for question in rng.sample(originals, min(repeats, len(originals))):
        questions.append(
            dict(
                question,
                check="repeat",
                repeat_of=question,  # its id once ids are assigned
                left=question["right"],
                right=question["left"],
                left_file=question["right_file"],
                right_file=question["left_file"],
            )
        )
    for question in rng.sample(originals, min(catches, len(originals))):
        source_left = rng.random() < 0.5
        method = question["left"]
        catch = dict(question, check="catch", repeat_of="")
        catch.update(
            left="source" if source_left else method,
            right=method if source_left else "source",
            left_file=question["source_file"] if source_left else question["left_file"],
            right_file=question["left_file"] if source_left else question["source_file"],
        )
        questions.append(catch)
    rng.shuffle(questions)
    for index, question in enumerate(questions):  # ids after shuffling: order tells nothing
        question["qid"] = f"q{index:04d}"
    for question in questions:
        if question["repeat_of"]:
            question["repeat_of"] = question["repeat_of"]["qid"]
    staging = staging_folder(output)
    try:
        images = staging / SITE / "images"
        images.mkdir(parents=True)
        encoded: dict[str, bytes] = {}

        def publish(src: str) -> str:
            if src not in encoded:  # pixels only: no name, no metadata travels with them
                encoded[src] = png_bytes(load_image(src))
            name = f"{secrets.token_hex(8)}.png"  # one per question and side
            atomic_write_bytes(images / name, encoded[src])
            return f"images/{name}"

        for question in questions:
            for side in ("source", "left", "right"):
                question[f"{side}_image"] = publish(question[f"{side}_file"])
        study_id = secrets.token_hex(6)
        page_questions = [  # what the rater's browser gets of a question, nothing more
            {
                "qid": q["qid"],
                "part": q["part"],
                "edit": q["edit"],
                "original": q["source_image"],
                "a": q["left_image"],
                "b": q["right_image"],
            }
            for q in questions
        ]
        page = PAGE.read_text().replace(
            "/*STUDY*/null",
            script_json(
                {"study": study_id, "instruction": INSTRUCTION, "questions": page_questions}
            ),
        )
        atomic_write_bytes(staging / SITE / "index.html", page.encode())
        study = {
            "study": study_id,
            "seed": seed,
            "run": str(run_dir),
            "instruction": INSTRUCTION,
            "questions": questions,
        }
        atomic_write_bytes(staging / KEY_FILE, json_bytes(study))
        write_mturk(questions, staging, base_url)
        atomic_write_bytes(staging / "README.md", README.encode())
        replace_folder(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return study


README = """# A blind 2AFC study

Host `site/` (index.html and images/) and nothing else: `study_key.json` says which method is
on which side of every question and which questions are attention checks or repeats, and
`mturk_batch.csv` is uploaded to MTurk, not hosted. Score the answers with

    partedit-bench userstudy analyze ANSWERS.csv... --key study_key.json --output DIR
"""


def write_mturk(questions: list[dict[str, Any]], output: Path, base_url: str) -> None:
    """The MTurk batch (one row per question: its opaque id, PART, EDIT, three image URLs;
    no method and no check: MTurk shows workers its rows) and the HIT layout."""
    base = base_url.rstrip("/") + "/" if base_url else ""
    buffer = io.StringIO()
    columns = ["question_id", "part", "edit", "source_url", "left_url", "right_url"]
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for q in questions:
        writer.writerow(
            {
                "question_id": q["qid"],
                "part": q["part"],
                "edit": q["edit"],
                "source_url": base + q["source_image"],
                "left_url": base + q["left_image"],
                "right_url": base + q["right_image"],
            }
        )
    atomic_write_bytes(output / "mturk_batch.csv", buffer.getvalue().encode())
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
    atomic_write_bytes(output / "mturk_layout.html", layout.encode())
