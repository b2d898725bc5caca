"""The regression gate's statistics (report/noise.py) on pairs of runs drawn from a model of a
busy machine: every family timed at a moment of its own (a shift of all its methods), every code
(a problem's method) wandering between runs as one, and every cell with noise of its own. The
model's figures are those of A/A pairs on two shared cores with one kept busy (docs/compare.md):
family moments of 30%, a cell's noise of 3 to 8%, a code's wander of 3% (the spread of a code's
median change there, 2 to 7%, is mostly its cells' noise) and more.

Each claim is a rate over many seeded pairs, as the A/A benchmark counts it: unchanged pairs are
rarely flagged, a changed code is caught, and the least slow-down a pair says it catches 4 times in
5 is caught about that often."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.report import noise as N

PROBLEMS = ("linear", "logistic", "mlp", "softmax")
METHODS = ("manual", "autograd", "func")
CELLS = ((1000, "full"), (1000, "microbatch:4"), (10000, "full"), (10000, "microbatch:4"))
THRESHOLD = 1.10
PAIRS = 100


def pair(seed: int, cell=0.03, family=0.3, code=0.03, slower=None, problems=PROBLEMS) -> pd.DataFrame:
    """Matched cells of two runs as compare hands them to noise.judge: new/base = exp(the family's
    moment + the code's wander + the cell's noise) times slower[(problem, method)]."""
    rng = np.random.default_rng(seed)
    slower = slower or {}
    rows = []
    for problem in problems:
        wander = {method: rng.normal(0, code) for method in METHODS}
        for n, pattern in CELLS:
            moment = rng.normal(0, family)
            for method in METHODS:
                base = 1e-4 * (1 + len(rows))
                d = moment + wander[method] + rng.normal(0, cell)
                rows.append(
                    {
                        "family": f"{problem} n={n} {pattern}",
                        "code": f"{problem} {method}",
                        "problem": problem,
                        "method": method,
                        "time_s_base": base,
                        "time_s_new": base * math.exp(d) * slower.get((problem, method), 1.0),
                        "time_samples_s_base": None,
                        "time_samples_s_new": None,
                    }
                )
    return pd.DataFrame(rows)


def flagged(m: pd.DataFrame) -> bool:
    return bool(N.judge(m, THRESHOLD)[0]["regression"].any())


def alarms(**model) -> int:
    """Unchanged pairs flagged, of PAIRS."""
    return sum(flagged(pair(seed, **model)) for seed in range(PAIRS))


def test_a_codes_wander_between_runs_is_measured_and_not_read_as_a_change():
    # codes wandering by 3%, past the 1.10x threshold in some code of twelve in many pairs. Judged
    # as if a code's cells were independent (tau = 0), their median looks certain; judged against
    # the wander measured over the codes, less so. At 4.5% neither holds 1 in 10 (docs/compare.md)
    models = ({"code": 0.03}, {"code": 0.03, "cell": 0.08}, {"code": 0.045})
    judged = [alarms(**model) for model in models]
    assert judged[0] <= 10 and judged[1] <= 10  # of 100: the target, 1 in 10
    tau = [N.judge(pair(seed, code=0.06), THRESHOLD)[1].code_spread for seed in range(20)]
    assert 0.02 < np.median(tau) < 0.09  # 6% put in (7% in a change against two others)

    without = N.MIN_SPREAD_CODES
    try:
        N.MIN_SPREAD_CODES = 10**6  # never measured: tau taken as 0
        naive = [alarms(**model) for model in models]
    finally:
        N.MIN_SPREAD_CODES = without
    assert all(n > j for n, j in zip(naive, judged)) and sum(naive) >= 1.3 * sum(judged), (naive, judged)


def test_quiet_pairs_measure_no_wander_and_keep_their_power():
    # no wander: tau measured near 0, and a 1.15x change of one code in all four of its cells is
    # caught nearly always although no cell alone stands out of noise of 3%
    noises = [N.judge(pair(seed, code=0.0), THRESHOLD)[1] for seed in range(20)]
    assert np.median([n.code_spread for n in noises]) < 0.01
    slow = {("mlp", "autograd"): 1.15}
    caught = sum(flagged(pair(seed, code=0.0, slower=slow)) for seed in range(PAIRS))
    assert caught >= 0.8 * PAIRS


def test_a_slower_baseline_is_caught_whatever_the_moments_of_its_families():
    # manual 2x slower in one problem, every family at a moment of its own (30%): its code's change
    # is read against the rest of its families, where the moments cancel, and the other methods of
    # those families, made to look faster by it, are not taken for changed
    slow = {("linear", "manual"): 2.0}
    results = [N.judge(pair(seed, code=0.0, slower=slow), THRESHOLD) for seed in range(PAIRS // 4)]
    for m, noise in results:
        assert noise.sigma is not None  # enough clean families to measure the noise from
        regressions = set(m.loc[m["regression"], "code"])
        assert regressions == {"linear manual"}, regressions
        assert not m.loc[m["code"] != "linear manual", "faster"].any()


def test_the_least_slow_down_a_pair_says_it_catches_4_times_in_5_is_caught_about_that_often():
    # what a pair says it catches POWER of the time is the bar of its test plus z(POWER) standard
    # errors; plant that much in one code of pairs drawn alike: caught about 4 times in 5
    told = [N.least_told(*N.judge(pair(seed, cell=0.08), THRESHOLD)) for seed in range(40)]
    least = float(np.median(told))
    assert THRESHOLD < least < 2
    slow = {("logistic", "func"): least}
    caught = sum(flagged(pair(1000 + seed, cell=0.08, slower=slow)) for seed in range(PAIRS))
    assert 0.6 * PAIRS <= caught <= 0.95 * PAIRS


def test_a_pair_that_cannot_catch_a_quarter_slower_says_so():
    m, noise = N.judge(pair(0, cell=0.3, code=0.1), THRESHOLD)
    least = N.least_told(m, noise)
    assert least > 1.5
    assert N.blind(m, noise, THRESHOLD) == (
        "this pair cannot tell a 1.25x change from noise: rerun on a quieter machine (it catches a "
        f"slow-down 80% of the time from {least:.2f}x)"
    )
    # a threshold above a quarter is what the pair is asked to catch then; past what it catches,
    # nothing is said
    assert N.blind(m, noise, 1.5).startswith("this pair cannot tell a 1.5x change from noise")
    assert N.blind(m, noise, least + 0.01) is None
    quiet, calm = N.judge(pair(0, cell=0.03, code=0.0), THRESHOLD)
    assert N.least_told(quiet, calm) < N.BLIND and N.blind(quiet, calm, THRESHOLD) is None


@pytest.mark.parametrize("problems", [PROBLEMS[:1], PROBLEMS[:2]])
def test_too_few_codes_to_measure_the_wander_are_taken_as_independent(problems):
    # one problem: three codes, two left when one changed: the wander is not measured; two: five
    m, noise = N.judge(pair(3, code=0.0, slower={("linear", "func"): 1.3}, problems=problems), THRESHOLD)
    if len(problems) == 1:
        assert noise.code_spread is None and noise.code_spread_codes == 2
    else:
        assert noise.code_spread is not None and noise.code_spread_codes == 5
    assert "linear func" in set(m.loc[m["regression"], "code"])
