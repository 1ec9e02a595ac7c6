"""compare's verdicts on simulated tables: no false verdicts beyond 5% of tables where nothing differs, a small
gain found with matched seeds, exact tests where there is no spread, McNemar for single runs, seeds for power."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regbench.core.stats import (
    by_seed,
    holm,
    judge_table,
    mcnemar,
    paired,
    permutation_p,
    seeds_for_power,
    sign_flip_p,
    verdict,
    welch,
)

ROWS, SEEDS, TABLES = 8, 5, 400  # tables of 9 rows (8 against the baseline), 5 seeds each


def simulated_table(rng, *, matched: bool, gain: float = 0.0, seed_sd: float = 0.02, noise: float = 0.002):
    """One table: a baseline and ROWS configs whose accuracy is 0.9 + a per-seed effect (the same draws for
    every config when the seeds are matched, as in a suite) + the run's own noise; row 0 gains `gain`."""
    shared = rng.normal(0, seed_sd, SEEDS)

    def group(g: float, tag: str) -> dict:
        effect = shared if matched else rng.normal(0, seed_sd, SEEDS)
        ids = list(range(SEEDS)) if matched else [f"{tag}{i}" for i in range(SEEDS)]
        return dict(zip(ids, 0.9 + g + effect + rng.normal(0, noise, SEEDS), strict=True))

    base = group(0.0, "b")
    rows = [group(gain if r == 0 else 0.0, f"r{r}") for r in range(ROWS)]
    return base, rows


def decided(v) -> bool:
    return v.text in ("better", "worse")


@pytest.mark.parametrize("matched", [False, True], ids=["different seeds (Welch)", "same seeds (paired)"])
def test_tables_where_nothing_differs_get_a_verdict_in_at_most_5_percent(matched):
    rng = np.random.default_rng(21)
    with_verdict = uncorrected = 0
    for _ in range(TABLES):
        base, rows = simulated_table(rng, matched=matched, noise=0.01)
        tested = [by_seed(r, base) for r in rows]
        with_verdict += any(decided(v) for v in judge_table(tested))
        uncorrected += any(v.p is not None and v.p < 0.05 for v in tested)
    assert with_verdict / TABLES <= 0.05
    assert uncorrected / TABLES > 0.15  # one test per row at 0.05, as before: about a third of the tables
    assert {by_seed(r, base).test for r in rows} == {"paired t" if matched else "Welch t"}


def test_a_small_gain_under_a_shared_seed_effect_is_found_with_matched_seeds():
    rng = np.random.default_rng(7)
    found = {True: 0, False: 0}
    for _ in range(100):
        for matched in (True, False):
            base, rows = simulated_table(rng, matched=matched, gain=0.01)
            v = judge_table([by_seed(r, base) for r in rows])[0]
            found[matched] += v.text == "better"
    assert found[True] >= 80  # paired: the per-seed effect (std 0.02) cancels, the 0.01 gain stands out
    assert found[False] <= 10  # the same gain hides under the seed-to-seed spread without pairing


def test_paired_and_welch_by_hand():
    from scipy import stats

    a, b = [0.91, 0.93, 0.95, 0.90], [0.90, 0.915, 0.94, 0.895]
    out = paired(a, b)
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / 2)
    assert out.p == pytest.approx(2 * stats.t.sf(abs(t), 3)) and out.test == "paired t"
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert out.ci == pytest.approx((d.mean() - half, d.mean() + half))
    w = welch(a, b)
    assert w.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue) and w.ci[0] < d.mean() < w.ci[1]


def test_groups_without_spread_get_exact_tests_never_p_zero():
    # every seed agrees: 3 vs 3 identical values → 2 of the 20 relabellings are as extreme
    assert permutation_p([0.9] * 3, [0.8] * 3) == pytest.approx(2 / 20)
    v = verdict([0.9] * 3, [0.8] * 3)
    assert v.test == "exact permutation" and v.p == pytest.approx(0.1) and v.text == "not distinguishable at n=3"
    # same seeds, every difference +0.01: 2 of the 2^5 sign flips are as extreme
    assert sign_flip_p([0.01] * 5) == pytest.approx(2 / 32)
    v = verdict([0.91] * 5, [0.9] * 5, paired_seeds=True)
    assert v.test == "exact sign-flip" and v.p == pytest.approx(2 / 32) and v.p > 0
    assert verdict([0.91] * 7, [0.9] * 7, paired_seeds=True).text == "better"  # 2/128 < 0.05


def test_mcnemar_counts_discordant_examples():
    a = [True] * 80 + [True] * 15 + [False] * 5
    b = [True] * 80 + [False] * 15 + [True] * 5
    out = mcnemar(a, b)
    from scipy import stats

    assert out.p == pytest.approx(stats.binomtest(15, 20, 0.5).pvalue) and out.test == "McNemar (test-set noise)"
    assert out.ci[0] < 0.10 < out.ci[1]
    assert mcnemar([True, False], [True, False]).p == 1.0


def test_holm_and_seeds_for_power():
    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06], nan_ok=True)
    # a Δ of half a std of the paired differences: 34 seeds reach 80% (noncentral t); 64 per group unpaired
    assert seeds_for_power(0.5, 1.0, paired_test=True) == 34
    assert seeds_for_power(0.5, 1.0, paired_test=False) == 64
    assert seeds_for_power(0.0, 1.0, paired_test=True) is None and seeds_for_power(0.1, None, paired_test=True) is None
    v = verdict([0.90, 0.95, 0.88], [0.91, 0.86, 0.93])
    assert v.seeds_80 is not None and v.seeds_80 > 3 and not decided(v) and math.isfinite(v.ci[0])
