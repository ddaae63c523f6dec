"""Meta-evaluation: which metric agrees with people on part edits, and how much the people
agree with each other (`userstudy analyze --run RUN_DIR`).

Agreement of a metric: over the answered 2AFC questions (attention checks and repeats left
out, raters who failed a check dropped), the share of answers where the metric prefers the
edit the rater chose. The metric prefers the side with the better value in its declared
direction; equal values are a tie and a missing value (NaN: an empty region, a metric not
scored) is not scored: both are counted apart and left out of the share. Its 95% interval is
a percentile bootstrap over answers (the report's: 1000 resamples, seed 0). Each side's value
is the job the study showed: the run's first seed of that method and sample (as `userstudy
export` picks).

Inter-rater agreement, as ImagenHub reports it: Fleiss' kappa over the questions at least two
raters answered (raters per question may differ: each question's agreement is over its own
raters), and Krippendorff's alpha for nominal data (any number of raters, missing answers).
"""

from __future__ import annotations

from collections import Counter
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from partedit_bench.errors import UserError


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an (items, categories) table of how many raters chose each category;
    items with fewer than two ratings are left out. NaN when nothing is left or every rating
    is one category (no expected disagreement)."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    counts, n = counts[n >= 2], n[n >= 2]
    if len(counts) == 0:
        return float("nan")
    per_item = ((counts * counts).sum(axis=1) - n) / (n * (n - 1))
    observed = per_item.mean()
    shares = counts.sum(axis=0) / counts.sum()
    expected = float((shares * shares).sum())
    if expected == 1.0:
        return float("nan")
    return float((observed - expected) / (1.0 - expected))


def krippendorff_alpha(units: list[list[Any]]) -> float:
    """Krippendorff's alpha for nominal values: `units` holds, per unit, the values its raters
    gave (missing ones left out). Units with fewer than two values are not pairable."""
    coincidence: dict[tuple[Any, Any], float] = {}
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for a, b in permutations(range(m), 2):
            pair = (values[a], values[b])
            coincidence[pair] = coincidence.get(pair, 0.0) + 1.0 / (m - 1)
    if not coincidence:
        return float("nan")
    totals: dict[Any, float] = {}
    for (c, _), weight in coincidence.items():
        totals[c] = totals.get(c, 0.0) + weight
    n = sum(totals.values())
    observed = sum(w for (c, k), w in coincidence.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if expected == 0:
        return float("nan")
    return float(1.0 - (n - 1) * observed / expected)


def inter_rater(answers: pd.DataFrame) -> dict[str, Any]:
    """Fleiss' kappa and Krippendorff's alpha of the regular answers (the method chosen per
    question), with how many questions and raters they rest on."""
    regular = answers[answers.check == ""]
    by_question = regular.groupby("question_id", sort=True).chosen.apply(list)
    shared = by_question[by_question.map(len) >= 2]
    categories = sorted({c for values in shared for c in values})
    table = np.array([[values.count(c) for c in categories] for values in shared], dtype=float)
    return {
        "fleiss_kappa": fleiss_kappa(table) if len(shared) else float("nan"),
        "krippendorff_alpha": krippendorff_alpha(list(by_question)),
        "questions_with_two_or_more_raters": int(len(shared)),
        "raters": int(regular.rater_id.nunique()),
    }


def shown_values(run_dir: Path, metrics: list[str]) -> pd.DataFrame:
    """The metric values of the edits a study showed: per (variant, sample_id), the run's first
    seed's job (what `userstudy export` publishes)."""
    from partedit_bench.report import GT_MARK, load_rows

    frame, _ = load_rows([run_dir])
    frame = frame[frame.status == "ok"].copy()
    frame["variant"] = frame.variant.str.removesuffix(GT_MARK)
    first = frame.sort_values("seed").groupby(["variant", "sample_id"], sort=False).head(1)
    return first.set_index(["variant", "sample_id"])[metrics]


def metric_agreement(
    answers: pd.DataFrame, values: pd.DataFrame, directions: dict[str, bool]
) -> pd.DataFrame:
    """Per metric: answers, agree, disagree, ties, not scored, agreement share and its
    bootstrap 95% interval (see the module's docstring). `directions`: higher is better."""
    from partedit_bench.report import bootstrap_ci

    regular = answers[answers.check == ""]
    missing = [
        (side, r.sample_id)
        for r in regular.itertuples()
        for side in (r.left, r.right)
        if (side, r.sample_id) not in values.index
    ]
    if missing:
        variant, sample = missing[0]
        raise UserError(
            f"userstudy analyze --run: the run has no finished job of {variant} on {sample} "
            f"({len(missing)} answer side(s) without one): is it the study's run?"
        )
    rows = []
    for metric, higher in directions.items():
        outcome = []
        for r in regular.itertuples():
            left = float(values.at[(r.left, r.sample_id), metric])
            right = float(values.at[(r.right, r.sample_id), metric])
            if np.isnan(left) or np.isnan(right):
                outcome.append("not scored")
                continue
            if left == right:
                outcome.append("tie")
                continue
            better = r.left if (left > right) == higher else r.right
            outcome.append("agree" if better == r.chosen else "disagree")
        counts = Counter(outcome)
        decided = np.array([o == "agree" for o in outcome if o in ("agree", "disagree")], float)
        low, high = (
            bootstrap_ci(decided, np.random.default_rng(0))
            if len(decided)
            else (float("nan"), float("nan"))
        )
        rows.append(
            {
                "metric": metric,
                "direction": "higher" if higher else "lower",
                "answers": len(outcome),
                "agree": counts["agree"],
                "disagree": counts["disagree"],
                "ties": counts["tie"],
                "not_scored": counts["not scored"],
                "agreement": float(decided.mean()) if len(decided) else float("nan"),
                "ci_low": low,
                "ci_high": high,
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values("agreement", ascending=False, na_position="last", kind="stable")


def markdown(table: pd.DataFrame, raters: dict[str, Any]) -> str:
    lines = [
        "| metric | agrees with people | 95% CI | agree / decided | ties | not scored |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        decided = r.agree + r.disagree
        share = f"{r.agreement:.1%}" if decided else "n/a"
        ci = f"{r.ci_low:.1%} - {r.ci_high:.1%}" if decided > 1 else "n/a"
        lines.append(
            f"| {r.metric} ({r.direction}) | {share} | {ci} | {r.agree} / {decided} | "
            f"{r.ties} | {r.not_scored} |"
        )
    lines += [
        "",
        f"Raters agree with each other: Fleiss' kappa {raters['fleiss_kappa']:.3f} over "
        f"{raters['questions_with_two_or_more_raters']} questions answered by two or more "
        f"raters, Krippendorff's alpha {raters['krippendorff_alpha']:.3f} "
        f"({raters['raters']} raters).",
    ]
    return "\n".join(lines) + "\n"
