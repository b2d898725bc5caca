"""run_family's timing: faithful to torch.utils.benchmark, paired across methods, cost ratios."""

import statistics

import pytest
import torch
from torch.utils.benchmark import Timer

from harness import Cell, TimingOptions, run_family
from harness.measure import paired_ratio, peak_bytes, summarize
from harness.methods import get_method
from harness.patterns import parse_pattern
from helpers import TINY_TIMING


def test_run_family_agrees_with_a_direct_benchmark_within_10_percent():
    # the same step, measured by run_family and directly by torch.utils.benchmark in this
    # process; the direct figure is taken before and after, so a drift of the machine between
    # them widens the band instead of failing the test
    threads = torch.get_num_threads()
    cell = Cell("linear", "manual", n=20_000, d=64)
    problem = cell.problem_instance()
    params, data = problem.make(torch.Generator().manual_seed(cell.seed))
    step = parse_pattern("full").bind(get_method("manual")(problem, params, data))

    def direct():
        return (
            Timer("step()", globals={"step": step}, num_threads=threads)
            .blocked_autorange(min_run_time=0.3)
            .median
        )

    before = direct()
    (record,) = run_family([cell], threads=threads, timing=TimingOptions(min_run_time_s=0.3, rounds=15))
    after = direct()
    low, high = min(before, after), max(before, after)
    assert 0.9 * low <= record["time_median_s"] <= 1.1 * high, (before, record["time_median_s"], after)
    assert record["threads"] == threads


def test_autograd_costs_more_than_manual_on_a_tiny_problem():
    # autograd's fixed cost (graph building, about 45 us here) dominates at n = 4
    cells = [Cell("linear", m, n=4, d=2) for m in ("manual", "autograd")]
    manual, autograd = run_family(cells, timing=TimingOptions(min_run_time_s=0.1, rounds=15))
    assert manual["vs_manual"] == 1.0
    assert autograd["vs_manual"] > 1
    assert autograd["vs_manual_lo"] > 1, "the paired interval must exclude 1"
    assert autograd["vs_manual_lo"] <= autograd["vs_manual"] <= autograd["vs_manual_hi"]


def test_every_timed_record_carries_its_statistics_and_cost():
    cells = [Cell("logistic", m, n=256, d=8) for m in ("manual", "autograd", "func", "numpy")]
    for r in run_family(cells, timing=TINY_TIMING):
        assert r["samples"] == TINY_TIMING.rounds and r["inner"] >= 1
        assert r["time_min_s"] <= r["time_median_s"] <= r["time_median_s"] + r["time_iqr_s"]
        assert r["forward_median_s"] > 0
        assert r["cost_ratio"] == pytest.approx(r["time_median_s"] / r["forward_median_s"])
        assert r["bytes_moved"] == (256 * 8 + 256) * 4  # one read of X and y in float32
        assert r["achieved_gbps"] == pytest.approx(r["bytes_moved"] / r["time_median_s"] / 1e9)
        assert r["first_call_s"] > 0


def test_summary_statistics_come_from_the_raw_samples():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["time_median_s"] == 3.0 and s["time_min_s"] == 1.0 and s["time_mean_s"] == 22.0
    assert s["time_iqr_s"] == 2.0 and s["samples"] == 5 and s["stable"] is False
    assert summarize([1.0, 1.01, 0.99])["stable"] is True


def test_paired_ratio_interval_brackets_the_median():
    base = [1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.95, 1.05, 1.0, 1.1, 1.0]
    times = [2 * t for t in base]
    times[0] = 3.0  # one noisy round moves the interval, not the median
    median, lo, hi = paired_ratio(times, base)
    assert median == 2.0 and lo == 2.0 and hi >= 2.0
    assert median == statistics.median(t / b for t, b in zip(times, base))


def test_peak_bytes_counts_what_a_step_allocates():
    X, y = torch.randn(10_000, 64), torch.randn(10_000)
    w = torch.randn(64)

    def manual():
        r = (X @ w - y) * (2 / X.shape[0])  # two vectors of n floats alive at once
        X.T @ r

    peak, kind = peak_bytes(manual, torch.device("cpu"))
    assert kind == "torch_live_tensors"
    assert 2 * 10_000 * 4 <= peak <= 3 * 10_000 * 4  # and X itself (a view in X.T) not counted


def test_train_mode_times_each_step():
    cells = [Cell("linear", m, n=64, d=4, mode="train", steps=20, lr=0.05) for m in ("manual", "autograd")]
    for r in run_family(cells):
        assert r["samples"] == 20
        assert len(r["trajectory"]) == 20
        assert r["trajectory"][-1]["loss"] < r["trajectory"][0]["loss"]
        assert r["vs_manual"] is not None
