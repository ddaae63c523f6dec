"""Preference statistics: Wilson score interval and the two-sided exact binomial test."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); (nan, nan) when n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return center - half, center + half


def binomial_test(successes: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test p-value (outcomes at most as likely as the observed)."""
    if n == 0:
        return float("nan")
    from scipy.stats import binomtest

    return float(binomtest(successes, n, p, alternative="two-sided").pvalue)
