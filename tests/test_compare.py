"""compare_runs as a regression gate: a run against itself, or an unchanged rerun, passes; a method
made slower on purpose fails and is named with its p-value; noise alone never fails; a gradient
that turns wrong does; runs whose timings are incomparable are named; runs with nothing in
common are refused."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import Cell, TimingOptions, register_method, run_family
from harness.cli import main
from harness.methods import METHODS, Autograd
from harness.report import compare_runs
from harness.report.compare import IQR_RULE, RANK_TEST, NothingToCompare, ratio_bounds
from harness.runs.store import RECORDS_JSONL, read_jsonl
from helpers import write_run

TIMES = ("time_median_s", "time_iqr_s", "time_min_s", "time_mean_s")
SIZES = ((256, 4), (2048, 8))
# 11 rounds: two runs of 11 samples can reach p = 3e-6; 3 rounds could never go below 0.1
TIMING = TimingOptions(min_run_time_s=0.011, rounds=11, warmup=1)


def family(problem: str, methods=("manual", "autograd", "func"), **cell) -> list[dict]:
    return run_family([Cell(problem, m, **cell) for m in methods], timing=TIMING)


def base_records() -> list[dict]:
    """Real records, their samples replaced by a spread of +-5% around their median: the machine
    running the tests may be busy, and what these tests check is the gate's arithmetic; the
    noise tests set their own."""
    records = [r for n, d in SIZES for r in family("linear", n=n, d=d)]
    for r in records:
        r["time_samples_s"] = list(r["time_median_s"] * np.linspace(0.95, 1.05, 11))
        r["time_iqr_s"] = min(r["time_iqr_s"], 0.05 * r["time_median_s"])
    return records


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "base", base_records())


def altered(base: Path, dest: Path, change) -> Path:
    """A copy of a run whose records pass through `change(record) -> record`."""
    return write_run(dest, [change(r) for r in records_of(base)])


def records_of(run: Path) -> list[dict]:
    return read_jsonl(run / RECORDS_JSONL)


def scaled(method: str, factor: float):
    def change(r):
        if r["method"] == method:
            r.update({c: r[c] * factor for c in TIMES})
            r["time_samples_s"] = [t * factor for t in r["time_samples_s"]]
        return r

    return change


def test_a_run_against_itself_has_no_regressions(base, tmp_path):
    result = compare_runs(base, base, out=tmp_path)
    assert result.regressions == [] and result.exit_code == 0
    assert "No regressions." in result.text
    assert (result.table["ratio"] == 1.0).all() and len(result.table) == 3 * len(SIZES)
    assert (result.table["test"] == RANK_TEST).all() and (result.table["p"] == 1.0).all()
    assert result.warnings == []
    assert result.plot is not None and result.plot.read_bytes().startswith(b"\x89PNG")
    assert result.markdown is not None and "No regressions." in result.markdown.read_text()


def test_a_method_made_three_times_slower_is_named(base, tmp_path):
    new = altered(base, tmp_path / "slow-autograd", scaled("autograd", 3.0))
    result = compare_runs(base, new)
    autograd = pd.read_parquet(base / "records.parquet").query("method == 'autograd'")
    assert result.exit_code == 1
    assert {r["cell_id"] for r in result.regressions} == set(autograd["cell_id"])
    assert {r["kind"] for r in result.regressions} == {"time"}
    for r in result.regressions:
        assert r["cell"].endswith(" autograd") and r["detail"].startswith("3.00x")
        assert r["cell"] in result.text
    # 11 samples against 11, none overlapping: the least two-sided p, 2 / C(22, 11)
    slow = result.table[result.table["method"] == "autograd"]
    assert slow["p"].to_numpy() == pytest.approx(2 / 705432, rel=1e-3)
    assert (slow["q"] < 0.05).all() and (slow["regression"]).all()
    assert all(f"p {p:.1e}" in result.text for p in slow["p"])
    assert f"REGRESSIONS: {len(SIZES)} ({len(SIZES)} time)" in result.text
    assert result.plot == new / f"compare-{base.name}.png" and result.plot.exists()


def test_an_unchanged_rerun_passes(base, tmp_path):
    # a rerun: every cell's rounds drawn again from the same distribution (+-5% of the median,
    # seeded), the method order and everything else the same
    rng = np.random.default_rng(0)

    def redrawn(r):
        r["time_samples_s"] = list(r["time_median_s"] * rng.uniform(0.95, 1.05, 11))
        return r

    result = compare_runs(base, altered(base, tmp_path / "rerun", redrawn))
    assert result.regressions == [] and result.exit_code == 0
    assert (result.table["q"] > 0.05).all()


def test_a_slower_ratio_within_noise_is_not_a_regression(base, tmp_path):
    # 1.3x slower at the median, but the rounds spread from 0.2x to 2x: not significant
    def noisy(r):
        if r["method"] == "func":
            t = r["time_median_s"]
            r["time_samples_s"] = list(t * 1.3 * np.linspace(0.2, 2.0, 11))
        return r

    result = compare_runs(base, altered(base, tmp_path / "noisy", noisy))
    assert result.regressions == []
    func = result.table[result.table["method"] == "func"]
    assert (func["ratio"] > 1.29).all() and (func["q"] > 0.05).all()


def test_runs_without_samples_fall_back_to_the_iqr_rule_and_say_so(base, tmp_path):
    def old(r):  # a record from before time_samples_s
        r.pop("time_samples_s")
        if r["method"] == "func":
            r["time_median_s"] *= 1.3
            r["time_iqr_s"] = r["time_median_s"]  # spread as wide as the time itself
        if r["method"] == "autograd":
            r.update({c: r[c] * 3.0 for c in TIMES})
        return r

    result = compare_runs(base, altered(base, tmp_path / "old", old))
    assert (result.table["test"] == IQR_RULE).all()
    assert "the test cannot run for them; they are judged by the older IQR rule" in result.text
    kinds = {r["cell"].split()[-1] for r in result.regressions}
    assert kinds == {"autograd"}  # 3x beyond the IQR bound; func's 1.3x within its noise
    assert all("IQR bounds" in r["detail"] for r in result.regressions)


def test_runs_of_different_thread_counts_are_named_first(tmp_path):
    # the same config on Ray (1 thread per worker) and with --executor local (2 threads)
    records = family("linear", n=256, d=4)

    def threads(k):
        return [{**r, "threads": k} for r in records]

    base = write_run(tmp_path / "ray", threads(1), manifest={"executor": {"executor": "ray"}})
    new = write_run(tmp_path / "local", threads(2), manifest={"executor": {"executor": "local"}})
    result = compare_runs(base, new)
    assert result.warnings == [
        "threads per worker: 1 (base) vs 2 (new)",
        "executor: ray (base) vs local (new)",
    ]
    first = result.text.splitlines()[0]
    assert first.startswith("WARNING: timings may not be comparable") and "threads per worker" in first
    assert "threads per worker" in result.markdown.read_text().split("compare ")[0]


def test_runs_with_no_cell_in_common_are_refused(tmp_path, capsys):
    a = write_run(tmp_path / "a", family("linear", methods=("manual",), n=64, d=4))
    b = write_run(tmp_path / "b", family("logistic", methods=("manual",), n=64, d=4))
    with pytest.raises(NothingToCompare, match="no cell in common"):
        compare_runs(a, b)
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no cell in common" in err


def test_ratio_bounds_by_hand():
    # base 100 ± IQR 10, new 130 ± IQR 10: lower (130 - 5) / (100 + 5) = 1.19
    ratio, lower, upper = ratio_bounds(100.0, 10.0, 130.0, 10.0)
    assert (
        ratio == pytest.approx(1.3) and lower == pytest.approx(125 / 105) and upper == pytest.approx(135 / 95)
    )
    # IQR 40 on both: (130 - 20) / (100 + 20) = 0.917, under any threshold above 1
    assert ratio_bounds(100.0, 40.0, 130.0, 40.0)[1] == pytest.approx(110 / 120)
    assert all(x != x for x in ratio_bounds(None, None, 1.0, 0.1))  # a failed cell: NaN, not a crash


def test_a_gradient_that_turns_wrong_or_a_cell_that_fails_is_a_regression(base, tmp_path):
    records = pd.read_parquet(base / "records.parquet")
    wrong_id, failed_id = records["cell_id"].iloc[0], records["cell_id"].iloc[4]

    def change(r):
        if r["cell_id"] == wrong_id:
            r.update(agree=False, status="mismatch", rel_err=1.0, diagnosis="2.000x the reference: ...?")
        if r["cell_id"] == failed_id:
            r.update({c: None for c in (*TIMES, "vs_manual", "rel_err", "agree", "time_samples_s")})
            r.update(status="error", error="RuntimeError: boom")
        return r

    result = compare_runs(base, altered(base, tmp_path / "broken", change))
    kinds = {r["cell_id"]: r["kind"] for r in result.regressions}
    assert kinds == {wrong_id: "agreement", failed_id: "status"}
    changes = " ".join(result.changes["change"])
    assert "agree True → False" in changes and "status ok → error" in changes and "rel_err" in changes


def test_cells_missing_from_one_run_are_counted(base, tmp_path):
    new = write_run(tmp_path / "fewer", [r for r in records_of(base) if r["n"] == SIZES[0][0]])
    result = compare_runs(base, new)
    assert result.regressions == [] and len(result.only_base) == 3 and result.only_new == []
    assert "3 only in base" in result.text


# -- end to end: a method that really is slower -----------------------------------------------------

DELAY = {"s": 0.0}


class Sleepy(Autograd):
    """autograd plus a sleep: a method made slower on purpose between two runs."""

    name = "test_sleepy_autograd"

    def accumulate(self, batch, weight=1.0):
        time.sleep(DELAY["s"])
        super().accumulate(batch, weight)


@pytest.fixture
def sleepy():
    """Registered for this test only: tests that walk every registered method must not meet it."""
    register_method(Sleepy)
    yield
    METHODS.remove(Sleepy.name)


def test_a_plugin_method_that_sleeps_is_caught_end_to_end(tmp_path, sleepy):
    # the sleepy method alone: a cell that did not change can still drift between two runs on a
    # busy machine (what paired ratios within a run are for); this test is about the one that did
    cells = [Cell("linear", "test_sleepy_autograd", n=256, d=4)]
    DELAY["s"] = 0.0
    base = write_run(tmp_path / "before", run_family(cells, timing=TIMING))
    # 50 ms on a gradient of tens of microseconds: on a quiet machine 2 ms is caught, but on two
    # shared cores a call of 200 us has been measured at 20 to 70 ms in the base run itself
    DELAY["s"] = 0.05
    try:
        new = write_run(tmp_path / "after", run_family(cells, timing=TIMING))
    finally:
        DELAY["s"] = 0.0
    result = compare_runs(base, new)
    assert [r["cell_id"] for r in result.regressions] == [cells[0].cell_id]
    assert "linear n=256 d=4 float32 full test_sleepy_autograd" in result.text
    # caught on its samples: significant, and the p-value named (a busy machine can delay a base
    # round past the sleep, so the exact value varies)
    p = result.table["p"].iloc[0]
    assert p < 0.01 and f"p {p:.1e}" in result.regressions[0]["detail"]
