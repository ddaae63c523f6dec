"""`partedit-bench userstudy analyze`: answers -> preferences per method pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes
from partedit_bench.outputs import output_file, output_folder
from partedit_bench.userstudy.stats import binomial_test, wilson_interval

#: MTurk result columns of a batch that carried the methods (exports before the blind study).
MTURK_COLUMNS = {
    "WorkerId": "rater_id",
    "Input.question_id": "question_id",
    "Input.pair": "pair",
    "Input.sample_id": "sample_id",
    "Input.part": "part",
    "Input.left_method": "left",
    "Input.right_method": "right",
    "Input.check": "check",
    "Input.repeat_of": "repeat_of",
}
#: What analysis needs of every answer once joined with the key.
NEEDED = ("rater_id", "question_id", "pair", "left", "right", "chosen", "check")
CHECKS = ("", "catch", "repeat")


def read_key(path: Path) -> dict[str, Any]:
    """A study's `study_key.json` (written by `userstudy export` beside the hosted folder)."""
    import json

    try:
        key = json.loads(path.read_text())
        questions = {str(q["qid"]): q for q in key["questions"]}
    except FileNotFoundError as exc:
        raise UserError(f"study key not found: {path}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a study key ({type(exc).__name__}: {exc})") from exc
    return {"study": str(key.get("study") or ""), "questions": questions, "path": path}


def _frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"answers file not found: {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read answers {path}: {exc}") from exc


def _choices(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """An MTurk result file -> rater_id, question_id, choice (+ the methods of a batch that
    carried them)."""
    frame = frame.rename(columns=MTURK_COLUMNS)
    choice = next((c for c in frame if c.startswith("Answer.")), None)
    if choice is None:
        raise UserError(f"{path}: an MTurk result file needs an Answer.* column")
    frame["choice"] = frame[choice].str.replace("choice_", "", regex=False)
    return frame


def _joined(frame: pd.DataFrame, path: Path, key: dict[str, Any] | None) -> pd.DataFrame:
    """Answers with the methods of each side: from the key (blind studies), or from the file
    itself (answers written before the study was blind, or by hand)."""
    if key is None:
        if "choice" in frame and not {"left", "right"} <= set(frame):
            raise UserError(
                f"{path}: these answers name no methods (a blind study); pass --key with the "
                "study's study_key.json"
            )
        if "chosen" not in frame and {"choice", "left", "right"} <= set(frame):
            frame["chosen"] = [
                r.left if r.choice == "left" else r.right if r.choice == "right" else ""
                for r in frame.itertuples()
            ]
        return frame
    if "question_id" not in frame or "choice" not in frame:
        raise UserError(f"{path}: missing columns (needs question_id and choice)")
    if "study" in frame:
        other = sorted(set(frame.study) - {"", key["study"]})
        if other:
            raise UserError(
                f"{path}: answers of study {other[0]}, not of the key's study {key['study']} "
                f"({key['path']})"
            )
    rows = []
    for line, row in enumerate(frame.to_dict("records"), start=2):
        question = key["questions"].get(row["question_id"])
        if question is None:
            raise UserError(
                f"{path} line {line}: question {row['question_id']!r} is not in the key "
                f"{key['path']}"
            )
        side = row.get("choice", "")
        joined = {
            **row,
            **{k: str(question.get(k) or "") for k in ("pair", "left", "right", "check")},
            "sample_id": str(question.get("sample_id", "")),
            # the canonical part (animal-head and humanoid-head are both "head" on the page)
            "part": str(question.get("part_token") or question.get("part", "")),
            "repeat_of": str(question.get("repeat_of") or ""),
        }
        joined["chosen"] = question[side] if side in ("left", "right") else ""
        rows.append(joined)
    return pd.DataFrame(
        rows,
        columns=list(frame.columns)
        + [
            c
            for c in ("pair", "left", "right", "check", "sample_id", "part", "repeat_of", "chosen")
            if c not in frame
        ],
    )


def _check_rows(frame: pd.DataFrame, path: Path) -> None:
    """Every answer well formed, or one line naming the file and line (the header is line 1):
    a rater and a question, a pair `a:b` of two methods, a choice of one side, a known check."""
    for line, row in enumerate(frame.to_dict("records"), start=2):
        where = f"{path} line {line}"
        for column in ("rater_id", "question_id"):
            if not str(row.get(column, "")).strip():
                raise UserError(f"{where}: empty {column}")
        if "choice" in row and row["choice"] not in ("left", "right"):
            raise UserError(f"{where}: choice {row['choice']!r} is neither left nor right")
        parts = str(row["pair"]).split(":")
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise UserError(f"{where}: pair {row['pair']!r} is not 'a:b' of two methods")
        if row["check"] not in CHECKS:
            raise UserError(
                f"{where}: unknown check value(s) {row['check']!r} (expected '', catch or repeat)"
            )
        if row["chosen"] not in (row["left"], row["right"]) or not row["chosen"]:
            raise UserError(
                f"{where}: chosen {row['chosen']!r} is neither side ({row['left']!r}, "
                f"{row['right']!r})"
            )
        if row["check"] == "repeat" and not str(row.get("repeat_of", "")).strip():
            raise UserError(f"{where}: a repeat that names no repeated question (repeat_of)")


def read_answers(paths: list[Path], key_path: Path | None = None) -> pd.DataFrame:
    """Study CSVs (one per rater) and MTurk result CSVs, in one frame of answers, joined with
    the study's key when given. A malformed answer stops the analysis with one line naming its
    file and line: a count of dropped rows would hide a broken export or a tampered file."""
    key = read_key(key_path) if key_path is not None else None
    frames = []
    for path in paths:
        frame = _frame(path)
        if "WorkerId" in frame:
            frame = _choices(frame, path)
        frame = _joined(frame, path, key)
        missing = set(NEEDED) - set(frame)
        if missing:
            raise UserError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for optional in ("part", "sample_id", "repeat_of"):
            if optional not in frame:
                frame[optional] = ""
        _check_rows(frame, path)
        frames.append(frame)
    if not frames:
        raise UserError("no answers given")
    return pd.concat(frames, ignore_index=True)


def analyze(answers: pd.DataFrame) -> dict[str, Any]:
    """Drops raters who chose the unedited source in an attention check, then per pair:
    preference for the first method, Wilson 95% interval, two-sided binomial p, responses,
    raters; per part; and rater self-consistency on repeated pairs."""
    catches = answers[answers.check == "catch"]
    failed = sorted(set(catches[catches.chosen == "source"].rater_id))
    kept = answers[~answers.rater_id.isin(failed)]
    unknown = sorted(set(answers.check) - set(CHECKS))
    if unknown:
        raise UserError(
            f"answers: unknown check value(s) {', '.join(map(repr, unknown))} "
            "(expected '', catch or repeat)"
        )
    regular = kept[kept.check == ""]
    if regular.empty:
        raise UserError(
            f"no answers left to analyze: {len(failed)} of {answers.rater_id.nunique()} "
            "rater(s) dropped for choosing the unedited source in an attention check"
            if failed
            else "no answers left to analyze: every answer is an attention check or a repeat"
        )
    rows, part_rows = [], []
    for pair, group in regular.groupby("pair", sort=False):
        first = pair.split(":")[0]
        rows.append(_row({"pair": pair}, group, first))
        for part, sub in group.groupby("part"):
            part_rows.append(_row({"pair": pair, "part": part}, sub, first))
    repeats = kept[kept.check == "repeat"]
    original = regular.set_index(["rater_id", "question_id"])["chosen"]
    same = [
        original.get((r.rater_id, r.repeat_of)) == r.chosen
        for r in repeats.itertuples()
        if (r.rater_id, r.repeat_of) in original.index
    ]
    from partedit_bench.userstudy.meta import inter_rater

    return {
        "pairs": pd.DataFrame(rows),
        "parts": pd.DataFrame(part_rows),
        "inter_rater": inter_rater(kept),
        "kept": kept,
        "raters": int(answers.rater_id.nunique()),
        "dropped_raters": failed,
        "consistency": (sum(same) / len(same)) if same else float("nan"),
        "repeated_pairs": len(same),
    }


def _row(key: dict[str, Any], group: pd.DataFrame, first: str) -> dict[str, Any]:
    wins, n = int((group.chosen == first).sum()), len(group)
    low, high = wilson_interval(wins, n)
    return {
        **key,
        "preference": wins / n if n else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "p_value": binomial_test(wins, n),
        "responses": n,
        "raters": int(group.rater_id.nunique()),
    }


RESULT_FILES = (
    "preferences.csv",
    "preferences_per_part.csv",
    "preferences.tex",
    "inter_rater.json",
    "metric_agreement.csv",
    "metric_agreement.md",
)


def check_output(output: Path, overwrite: bool = False) -> None:
    """The analysis folder, checked before anything is read: a folder (not a file), and
    earlier results in it replaced only with `overwrite`."""
    output_folder(output, "userstudy analyze --output")
    for name in RESULT_FILES:
        output_file(output / name, "userstudy analyze --output", overwrite)


def write_results(result: dict[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output / "preferences.csv", result["pairs"].to_csv(index=False).encode())
    atomic_write_bytes(
        output / "preferences_per_part.csv", result["parts"].to_csv(index=False).encode()
    )
    table = result["pairs"].set_index("pair")[
        ["preference", "ci_low", "ci_high", "p_value", "responses", "raters"]
    ]
    table.index = [i.replace("_", "\\_") for i in table.index]
    latex = table.style.format(precision=3).to_latex(
        hrules=True,
        caption="2AFC preference for the first method of each pair (Wilson 95% "
        f"interval, two-sided binomial test); {len(result['dropped_raters'])} rater(s) dropped "
        "for failed attention checks.",
    )
    atomic_write_bytes(output / "preferences.tex", latex.encode())
    from partedit_bench.io import json_bytes

    atomic_write_bytes(output / "inter_rater.json", json_bytes(result["inter_rater"]))
    if result.get("agreement") is not None:
        from partedit_bench.userstudy.meta import markdown

        table = result["agreement"]
        atomic_write_bytes(output / "metric_agreement.csv", table.to_csv(index=False).encode())
        atomic_write_bytes(
            output / "metric_agreement.md", markdown(table, result["inter_rater"]).encode()
        )


def agreement_with(result: dict[str, Any], run_dir: Path, metrics: list[str] | None) -> None:
    """Adds `agreement`: each metric's agreement with the answers (`meta.metric_agreement`),
    every metric the run has values of unless `metrics` names some."""
    from partedit_bench.metrics import METRICS
    from partedit_bench.userstudy.meta import metric_agreement, shown_values

    names = metrics or list(METRICS)
    values = shown_values(run_dir, names)
    if not metrics:
        names = [m for m in names if values[m].notna().any()]
    directions = {m: METRICS[m].higher_is_better for m in names}
    result["agreement"] = metric_agreement(result["kept"], values[names], directions)
