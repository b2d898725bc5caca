"""The cost model on synthetic timings whose fixed cost and cost per byte are known.

A linear gradient at d = 64 in float32 reads (n d + n) 4 bytes: 260 n. Manual costs 10 µs plus
0.1 ns per byte, autograd 50 µs plus 0.105 ns per byte, so autograd's overhead is 40 µs per step
and 1.05x per byte, and it comes within 10% of manual where 50 + 0.105 x*1e-3 = 1.1 (10 + 0.1 x*1e-3)
(x in bytes, times in µs): x = 39 / 0.005e-3 = 7.8 MB, n = 30,000.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.measure import paired_ratio, summarize
from harness.report import costmodel as cm
from harness.report.bracket import model_of
from harness.report.data import normalize
from harness.runs import crossover as X

BYTES_PER_N = 260
MANUAL = (10e-6, 0.1e-9)
AUTOGRAD = (50e-6, 0.105e-9)
CROSSOVER_N = 30_000
SIZES = (1_000, 10_000, 100_000, 1_000_000)


def cell(method: str, n: int, samples, **extra) -> dict:
    stats_ = summarize(list(samples))
    return {
        "problem": "linear", "mode": "gradient", "dtype": "float32", "pattern": "full", "data": "random",
        "device": "cpu", "device_name": "test cpu", "method": method, "n": n, "d": 64, "seed": 0,
        "status": "ok", "bytes_moved": BYTES_PER_N * n, "time_samples_s": list(samples), **stats_, **extra,
    }  # fmt: skip


def rounds(line, n: int, rng, noise: float = 0.02, outlier: float | None = 5.0, r: int = 11) -> np.ndarray:
    """r rounds of a step costing `line` at n: multiplicative noise, and one round disturbed."""
    t = (line[0] + line[1] * BYTES_PER_N * n) * (1 + noise * rng.standard_normal(r))
    if outlier:
        t[rng.integers(r)] *= outlier
    return t


def family(
    sizes=SIZES, seed: int = 0, lines=(("manual", MANUAL), ("autograd", AUTOGRAD)), **kw
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    recs = [cell(m, n, rounds(line, n, rng, **kw)) for n in sizes for m, line in lines]
    return normalize(pd.DataFrame(recs))


def models(df: pd.DataFrame) -> dict[str, cm.Model]:
    return {m.method: m for m in cm.cost_models(df, "manual")}


def test_theil_sen_is_scipys_joint_estimator():
    rng = np.random.default_rng(1)
    xs = [1e3, 1e4, 1e5]
    ys = [2e-5 + 1e-9 * x * (1 + 0.05 * rng.standard_normal(7)) for x in xs]
    fixed, slope = cm.theil_sen(xs, ys)
    ref = stats.theilslopes(np.concatenate(ys), np.repeat(xs, 7), method="joint")
    assert float(slope) == pytest.approx(ref.slope, rel=1e-12)
    assert float(fixed) == pytest.approx(ref.intercept, rel=1e-9)


def test_the_fit_recovers_a_known_fixed_cost_and_cost_per_byte():
    got = models(family())
    for name, (fixed, per_byte) in (("manual", MANUAL), ("autograd", AUTOGRAD)):
        m = got[name]
        assert m.unit == "byte" and m.ns == SIZES
        assert m.fixed_s.value == pytest.approx(fixed, rel=0.10)
        assert m.per_unit_s.value == pytest.approx(per_byte, rel=0.03)
        assert m.fixed_s.lo <= fixed <= m.fixed_s.hi
        assert m.per_unit_s.lo <= per_byte <= m.per_unit_s.hi


def test_against_the_baseline_extra_fixed_cost_ratio_per_byte_and_crossover():
    m = models(family())["autograd"]
    assert m.baseline == "manual"
    assert m.extra_fixed_s.value == pytest.approx(40e-6, rel=0.10)
    assert m.extra_fixed_s.lo <= 40e-6 <= m.extra_fixed_s.hi
    assert m.per_unit_ratio.value == pytest.approx(1.05, abs=0.02)
    assert m.per_unit_ratio.lo <= 1.05 <= m.per_unit_ratio.hi
    assert m.crossover.kind == "from"
    assert m.crossover.n == pytest.approx(CROSSOVER_N, rel=0.25)
    assert m.crossover.lo <= CROSSOVER_N <= m.crossover.hi


def test_one_disturbed_round_per_cell_moves_neither_the_slope_nor_the_fixed_cost():
    clean, disturbed = models(family(outlier=None)), models(family(outlier=20.0))
    for name in ("manual", "autograd"):
        a, b = clean[name], disturbed[name]
        assert b.per_unit_s.value == pytest.approx(a.per_unit_s.value, rel=0.03)
        assert b.fixed_s.value == pytest.approx(a.fixed_s.value, rel=0.15)
    # least squares through the same rounds is pulled far off by them
    df = family(outlier=20.0)
    man = df[df["method"] == "manual"]
    xs = np.concatenate([[b] * len(s) for b, s in zip(man["bytes_moved"], man["time_samples_s"])])
    ls = np.polyfit(xs, np.concatenate(list(man["time_samples_s"])), 1)[0]
    assert abs(ls / MANUAL[1] - 1) > 0.2


def test_the_prediction_is_checked_on_each_size_left_out():
    m = models(family())["autograd"]
    assert m.fit_error < 0.02 and m.held_out_error < 0.05
    # a step that grows as n^1.5 is no line: a size left out is predicted badly
    rng = np.random.default_rng(3)
    recs = [
        cell(meth, n, (1e-5 + 1e-12 * n**1.5) * (1 + 0.01 * rng.standard_normal(11)))
        for n in SIZES
        for meth in ("manual", "autograd")
    ]
    bent = models(normalize(pd.DataFrame(recs)))["manual"]
    assert bent.worst_held_out_error > 0.5


def test_two_sizes_fit_a_line_but_cannot_check_it_and_one_size_says_so():
    two = models(family(sizes=(1_000, 100_000)))["autograd"]
    assert two.fitted and two.held_out_error is None
    one = models(family(sizes=(10_000,)))["autograd"]
    assert not one.fitted and "one size (n = 10,000)" in one.note


@pytest.mark.parametrize(
    "line, kind",
    [
        ((10.5e-6, 0.1e-9), "always"),  # within 10% at every size
        ((50e-6, 0.2e-9), "never"),  # slower per byte by 2x: never within 10%
        ((5e-6, 0.2e-9), "up to"),  # cheaper fixed cost, dearer bytes: within 10% only while small
    ],
)
def test_crossover_kinds(line, kind):
    m = models(family(lines=(("manual", MANUAL), ("other", line)), outlier=None, noise=0.005))["other"]
    assert m.crossover.kind == kind


def test_a_family_without_a_byte_floor_is_fitted_per_row():
    df = family().assign(bytes_moved=math.nan)
    m = models(df)["autograd"]
    assert m.unit == "row"
    assert m.per_unit_s.value == pytest.approx(AUTOGRAD[1] * BYTES_PER_N, rel=0.03)
    assert m.crossover.n == pytest.approx(CROSSOVER_N, rel=0.25)


def test_the_bisection_and_the_model_agree_on_the_crossover():
    """`gradbench crossover`'s search over synthetic paired rounds brackets the model's n (where
    a step straddles 10%, between the steps on either side of it)."""
    rng = np.random.default_rng(5)
    measured: list[dict] = []

    def measure(n: int, r: int):
        base = rounds(MANUAL, n, rng, noise=0.01, r=r, outlier=None)
        other = rounds(AUTOGRAD, n, rng, noise=0.01, r=r, outlier=None)
        measured.extend([cell("manual", n, base), cell("autograd", n, other)])
        return paired_ratio(list(other), list(base))

    found = X.search(measure, 1_000, 10_000_000, threshold=1.10, rounds=11)
    assert found.outcome in ("found", "straddles") and found.above and found.below
    m = models(normalize(pd.DataFrame(measured)))["autograd"]
    lo, hi = found.interval
    assert lo <= m.crossover.n <= hi, (found.interval, m.crossover)
    assert lo <= CROSSOVER_N <= hi
    said = model_of(measured, "autograd", "manual", 1.10, found.interval)
    assert said["agrees_with_bisection"] is True and said["kind"] == "from"
    assert "inside the bisection's bracket" in said["sentence"]
