"""Seed statistics: mean ± sample std of a group of runs, and a plain verdict from Welch's t-test.

The course compared single runs whose differences were often noise (the same dropout config gave 55.7%
in one report and 45.2% in another). A verdict is therefore only "better" or "worse" when Welch's
unequal-variance t-test over the seeds gives p < 0.05; otherwise it says how many seeds it had.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05  # significance level of the verdict


@dataclass(frozen=True)
class Stat:
    """One numeric column over the seeds of a group: mean, sample std (None for n=1) and the values."""

    mean: float
    std: float | None
    n: int
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        vals = tuple(float(v) for v in values)
        if not vals:
            raise ValueError("Stat of no values")
        mean = math.fsum(vals) / len(vals)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
        return cls(mean, std, len(vals), vals)

    def __str__(self) -> str:
        return f"{self.mean:.4g}" + ("" if self.std is None else f"±{self.std:.2g}") + f" (n={self.n})"

    def to_dict(self) -> dict[str, float | int | list[float] | None]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}


@dataclass(frozen=True)
class Verdict:
    """A row against the baseline: difference of means, Welch's p-value (None when untestable), the word."""

    delta: float
    p: float | None
    text: str


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (scipy), or None when it is undefined (n < 2 or no variance)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about nearly identical samples; the nan is handled below
        p = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return None if math.isnan(p) else p


def verdict(
    values: Sequence[float], baseline: Sequence[float], *, higher_is_better: bool = True, alpha: float = ALPHA
) -> Verdict:
    """Compare a row's per-seed values with the baseline's.

    - `better` / `worse`: p < alpha, the direction from the sign of the difference of means
      (flipped for metrics where lower is better, such as a loss);
    - `cannot tell with n=1`: either side has a single run, so there is no spread to test against;
    - `not distinguishable at n=3` (or `n=3 vs 2`): the test ran and found no significant difference.
    """
    if not values or not baseline:
        return Verdict(math.nan, None, "no value")
    delta = math.fsum(values) / len(values) - math.fsum(baseline) / len(baseline)
    if len(values) < 2 or len(baseline) < 2:
        return Verdict(delta, None, "cannot tell with n=1")
    p = welch_p(values, baseline)
    n = f"n={len(values)}" if len(values) == len(baseline) else f"n={len(values)} vs {len(baseline)}"
    if p is None and delta != 0:
        p = 0.0  # both sides without any spread but different: every seed agrees on the difference
    if p is None or p >= alpha or delta == 0:
        return Verdict(delta, p, f"not distinguishable at {n}")
    up = delta > 0 if higher_is_better else delta < 0
    return Verdict(delta, p, "better" if up else "worse")
