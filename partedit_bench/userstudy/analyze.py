"""`partedit-bench userstudy analyze`: answers -> preferences per method pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from partedit_bench.errors import UserError
from partedit_bench.userstudy.stats import binomial_test, wilson_interval

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


def read_answers(paths: list[Path]) -> pd.DataFrame:
    """Study CSVs (one per rater) and MTurk result CSVs, in one frame of answers."""
    frames = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"answers file not found: {path}")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read answers {path}: {exc}") from exc
        if "WorkerId" in frame:
            frame = frame.rename(columns=MTURK_COLUMNS)
            choice = next((c for c in frame if c.startswith("Answer.")), None)
            if choice is None:
                raise UserError(f"{path}: an MTurk result file needs an Answer.* column")
            frame["choice"] = frame[choice].str.replace("choice_", "", regex=False)
            frame["chosen"] = frame.apply(
                lambda r: r["left"] if r["choice"] == "left" else r["right"], axis=1
            )
        missing = {"rater_id", "question_id", "pair", "left", "right", "chosen", "check"} - set(
            frame
        )
        if missing:
            raise UserError(f"{path}: missing columns {', '.join(sorted(missing))}")
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
    unknown = sorted(set(answers.check) - {"", "catch", "repeat"})
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
    return {
        "pairs": pd.DataFrame(rows),
        "parts": pd.DataFrame(part_rows),
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


def write_results(result: dict[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    result["pairs"].to_csv(output / "preferences.csv", index=False)
    result["parts"].to_csv(output / "preferences_per_part.csv", index=False)
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
    (output / "preferences.tex").write_text(latex)
