"""Seed statistics: mean ± sample std of a group of runs, and the tests behind compare's verdicts.

The course compared single runs whose differences were often noise (the same dropout config gave 55.7%
in one report and 45.2% in another). A row of compare is "better" or "worse" than the baseline only when
its test, corrected across the rows of the table (Holm), gives p < 0.05:

- both groups hold the same seeds (a suite's configs share init draws and batch order): the paired t-test
  on the per-seed differences; when every difference is the same, the exact sign-flip test;
- otherwise Welch's unequal-variance t-test; when neither group has any spread, the exact permutation test;
- two single runs: the exact McNemar test on per-example correctness of the test set (test-set noise only:
  it says nothing about another seed).

What p covers: the seed-to-seed variance of training on one fixed split (`data.seed`); a different split
of the data is a further source of variance that only runs on several splits measure.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

ALPHA = 0.05  # significance level of the verdict (family-wise over the rows of one table)
POWER = 0.8  # the power the seed estimate aims at
CORRECTION = "Holm"  # named in compare's title and legend
EXACT_LIMIT = 200_000  # permutations enumerated exactly; beyond, a fixed-seed Monte Carlo sample


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
    """A row against the baseline: Δ of means, the test's p (None when untestable), the word; the test's
    name, a 95% confidence interval for Δ, p after the correction across the table, and for a row that is
    not significant the seeds per group that would resolve its Δ at 80% power."""

    delta: float
    p: float | None
    text: str
    test: str = "-"
    ci: tuple[float, float] | None = None
    p_adj: float | None = None
    seeds_80: int | None = None


@dataclass(frozen=True)
class Outcome:
    """One test's result before the verdict: p, the CI of Δ and the test's name."""

    p: float | None
    ci: tuple[float, float] | None
    test: str


def _mean(v: Sequence[float]) -> float:
    return math.fsum(v) / len(v)


def _var(v: Sequence[float]) -> float:
    if max(v) == min(v):
        return 0.0  # exactly: the mean of equal floats can differ from them in the last bit
    m = _mean(v)
    return math.fsum((x - m) ** 2 for x in v) / (len(v) - 1)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (scipy), or None when it is undefined (n < 2 or no variance)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about nearly identical samples; the nan is handled below
        p = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return None if math.isnan(p) else p


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Outcome:
    """Welch's t-test of mean(a) − mean(b) with its Welch–Satterthwaite CI; the exact permutation test when
    neither group has any spread (the t statistic is undefined there, and p = 0 would be a fiction)."""
    from scipy import stats

    va, vb = _var(a) / len(a), _var(b) / len(b)
    if va + vb == 0:
        return Outcome(permutation_p(a, b), None, "exact permutation")
    df = (va + vb) ** 2 / ((va**2 / (len(a) - 1) if va else 0.0) + (vb**2 / (len(b) - 1) if vb else 0.0))
    delta, se = _mean(a) - _mean(b), math.sqrt(va + vb)
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Outcome(p, (delta - half, delta + half), "Welch t")


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Outcome:
    """The paired t-test on the differences a_i − b_i (same seeds, same order) with its CI; the exact
    sign-flip test when every difference is the same."""
    from scipy import stats

    d = [x - y for x, y in zip(a, b, strict=True)]
    n, md = len(d), _mean(d)
    vd = _var(d)
    if vd == 0:
        return Outcome(sign_flip_p(d), None, "exact sign-flip")
    se = math.sqrt(vd / n)
    p = float(2 * stats.t.sf(abs(md) / se, n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return Outcome(p, (md - half, md + half), "paired t")


def sign_flip_p(d: Sequence[float]) -> float:
    """Exact two-sided p of the mean difference under random signs (2^n flips; a fixed-seed sample beyond)."""
    obs = abs(math.fsum(d)) * (1 - 1e-12)
    if 2 ** len(d) <= EXACT_LIMIT:
        flips = itertools.product((1, -1), repeat=len(d))
        hits = sum(abs(math.fsum(s * x for s, x in zip(f, d, strict=True))) >= obs for f in flips)
        return hits / 2 ** len(d)
    import random

    rng, draws = random.Random(0), EXACT_LIMIT
    hits = sum(abs(math.fsum(x if rng.random() < 0.5 else -x for x in d)) >= obs for _ in range(draws))
    return (hits + 1) / (draws + 1)


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided p of |mean(a) − mean(b)| over every relabelling of the pooled values."""
    pooled, na, total = [*a, *b], len(a), math.fsum([*a, *b])
    obs = abs(_mean(a) - _mean(b)) * (1 - 1e-12)

    def stat(idx: Sequence[int]) -> float:
        sa = math.fsum(pooled[i] for i in idx)
        return abs(sa / na - (total - sa) / (len(pooled) - na))

    if math.comb(len(pooled), na) <= EXACT_LIMIT:
        combos = list(itertools.combinations(range(len(pooled)), na))
        return sum(stat(c) >= obs for c in combos) / len(combos)
    import random

    rng = random.Random(0)
    hits = sum(stat(rng.sample(range(len(pooled)), na)) >= obs for _ in range(EXACT_LIMIT))
    return (hits + 1) / (EXACT_LIMIT + 1)


def mcnemar(right_a: Sequence[bool], right_b: Sequence[bool], level: float = 0.95) -> Outcome:
    """Exact McNemar test of two models' per-example correctness on the same test set (binomial test on the
    discordant examples), with a Wald CI for the accuracy difference. Test-set noise only."""
    from scipy import stats

    n = len(right_a)
    only_a = sum(1 for x, y in zip(right_a, right_b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(right_a, right_b, strict=True) if y and not x)
    disc = only_a + only_b
    p = 1.0 if disc == 0 else float(stats.binomtest(only_a, disc, 0.5).pvalue)
    diff = (only_a - only_b) / n
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt(max(disc / n - diff**2, 0.0) / n)
    return Outcome(p, (diff - half, diff + half), "McNemar (test-set noise)")


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): the family-wise error over the table's rows
    stays at α whatever the dependence between the rows (they share the baseline)."""
    order = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m, out, running = len(order), list(ps), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def seeds_for_power(
    delta: float, sd: float | None, *, paired_test: bool, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Seeds per group at which a two-sided t-test at `alpha` finds a true difference `delta` with
    probability `power`, given the spread `sd` (of the differences when paired, else the pooled per-group
    std): the normal-theory size with Guenther's t correction (+z²/2 paired, +z²/4 per group unpaired),
    checked against the noncentral t below 20 seeds. None when Δ is 0 or there is no spread to plan with."""
    if not sd or not delta or not math.isfinite(delta):
        return None
    from statistics import NormalDist

    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    effect = abs(delta) / sd
    n = (za + zb) ** 2 / effect**2 + za**2 / 2 if paired_test else 2 * (za + zb) ** 2 / effect**2 + za**2 / 4
    n = max(2, math.ceil(n))
    if n > 20:
        return n
    from scipy import stats

    while True:  # few seeds: where the correction is off by one, the noncentral t decides
        df = n - 1 if paired_test else 2 * n - 2
        nc, crit = effect * math.sqrt(n if paired_test else n / 2), stats.t.ppf(1 - alpha / 2, df)
        reached = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
        if not reached < power:  # nan (an enormous effect) counts as reached
            return n
        n += 1


def test_rows(
    values: Sequence[float], baseline: Sequence[float], *, paired_seeds: bool = False
) -> tuple[Outcome | None, int | None]:
    """The test of one row against the baseline (None when either side has one run), and the seeds per
    group that 80% power would need."""
    if len(values) < 2 or len(baseline) < 2:
        return None, None
    delta = _mean(values) - _mean(baseline)
    if paired_seeds and len(values) == len(baseline):
        d = [x - y for x, y in zip(values, baseline, strict=True)]
        return paired(values, baseline), seeds_for_power(delta, math.sqrt(_var(d)), paired_test=True)
    pooled = math.sqrt((_var(values) + _var(baseline)) / 2)
    return welch(values, baseline), seeds_for_power(delta, pooled, paired_test=False)


def decide(v: Verdict, *, higher_is_better: bool = True, alpha: float = ALPHA) -> Verdict:
    """The word of a tested verdict from its (adjusted) p; a significant row needs no seed estimate."""
    p = v.p_adj if v.p_adj is not None else v.p
    if p is None or p >= alpha or v.delta == 0:
        return v
    up = v.delta > 0 if higher_is_better else v.delta < 0
    return replace(v, text="better" if up else "worse", seeds_80=None)


def tested(values: Sequence[float], baseline: Sequence[float], *, paired_seeds: bool = False) -> Verdict:
    """A row's test against the baseline, before any decision: Δ, p, CI, the test, the seeds 80% power
    needs, and the text of an undecided row (`not distinguishable at n=3`, or `cannot tell with n=1`)."""
    if not values or not baseline:
        return Verdict(math.nan, None, "no value")
    delta = _mean(values) - _mean(baseline)
    outcome, seeds = test_rows(values, baseline, paired_seeds=paired_seeds)
    if outcome is None:
        return Verdict(delta, None, "cannot tell with n=1")
    n = f"n={len(values)}" if len(values) == len(baseline) else f"n={len(values)} vs {len(baseline)}"
    return Verdict(delta, outcome.p, f"not distinguishable at {n}", outcome.test, outcome.ci, None, seeds)


def verdict(
    values: Sequence[float],
    baseline: Sequence[float],
    *,
    higher_is_better: bool = True,
    alpha: float = ALPHA,
    paired_seeds: bool = False,
) -> Verdict:
    """Compare a row's per-seed values with the baseline's, uncorrected (one comparison on its own).

    - `better` / `worse`: p < alpha, the direction from the sign of the difference of means
      (flipped for metrics where lower is better, such as a loss);
    - `cannot tell with n=1`: either side has a single run, so there is no seed spread to test against;
    - `not distinguishable at n=3` (or `n=3 vs 2`): the test ran and found no significant difference.
    """
    v = tested(values, baseline, paired_seeds=paired_seeds)
    return decide(v, higher_is_better=higher_is_better, alpha=alpha)


def by_seed(values: dict[Any, float], baseline: dict[Any, float]) -> Verdict:
    """`tested` on per-seed values: paired when both sides hold the same seeds (two or more), else not."""
    same = len(values) > 1 and set(values) == set(baseline)
    mine = [values[s] for s in baseline] if same else list(values.values())
    return tested(mine, list(baseline.values()), paired_seeds=same)


def judge_table(verdicts: Sequence[Verdict], *, higher_is_better: bool = True, alpha: float = ALPHA) -> list[Verdict]:
    """The rows of one table decided together: Holm's correction over their p-values, then each row's word
    from its adjusted p. On tables where nothing differs, a verdict appears in at most `alpha` of them."""
    adjusted = holm([v.p for v in verdicts])
    return [
        decide(replace(v, p_adj=p) if v.p is not None else v, higher_is_better=higher_is_better, alpha=alpha)
        for v, p in zip(verdicts, adjusted, strict=True)
    ]
