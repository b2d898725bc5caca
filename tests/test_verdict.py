"""The verdict as an answer: a line per method, then each fact that needs attention once, with
its count; unstable timings grouped by cause with their noise."""

from __future__ import annotations

import pandas as pd

from harness.report.data import normalize
from harness.report.verdict import unstable_groups, verdict


def rec(method: str, n: int, d: int = 1, worker: int = 0, iqr: float = 0.01, **extra) -> dict:
    median = 1e-4
    return {
        "problem": "linear", "mode": "gradient", "dtype": "float32", "pattern": "full", "data": "random",
        "device": "cpu", "device_name": "test cpu", "method": method, "n": n, "d": d, "seed": 0,
        "status": "ok", "agree": True, "worker": worker, "time_median_s": median, "time_iqr_s": iqr * median,
        "stable": iqr <= 0.1, "vs_manual": 1.0 if method == "manual" else 3.0, "bound": "compute", **extra,
    }  # fmt: skip


def test_the_same_disagreement_in_eight_cells_is_one_line_with_its_count():
    wrong = "4.000x the reference: a sum where a mean over n=1000 was meant?"
    records = [rec("manual", 1000, d) for d in range(1, 9)]
    records += [
        rec("func", 1000, d, agree=False, status="mismatch", diagnosis=wrong, rel_err=3.0, tol=1e-5)
        for d in range(1, 9)
    ]
    v = verdict(normalize(pd.DataFrame(records)), models=[])
    assert v.lines[0] == "**8 cells disagree** with the float64 reference."
    func = next(line for line in v.lines if line.startswith("**func**"))
    assert func.endswith("**8 of 8 cells disagree**.")
    assert v.attention == [
        f"**8 func cells disagree**: {wrong} (linear n=1000 d=1 float32 full, and 7 more)."
    ]
    assert len(v.mismatches) == 8  # the table still lists each one


def test_failures_are_one_line_each_status_and_error_once_with_its_count():
    records = [rec("manual", 1000)] + [
        rec("autograd", 1000, d, status="timeout", error="past 600 s") for d in (2, 3, 4)
    ]
    v = verdict(normalize(pd.DataFrame(records)), models=[])
    assert v.attention == [
        "**3 cells failed**: 3 timeout, past 600 s (linear n=1000 d=2 float32 full autograd, and 2 more)."
    ]


def test_unstable_timings_are_grouped_by_cause_with_their_noise():
    records = []
    # worker 0: small launch-bound cells that spread 30%; worker 1: everything spreads 50%
    records += [rec("autograd", 1000, d, worker=0, iqr=0.3, bound="launch") for d in range(1, 5)]
    records += [rec("manual", 10**5, d, worker=0, iqr=0.02) for d in range(1, 9)]
    records += [rec("manual", 10**5, d, worker=1, iqr=0.5) for d in range(10, 16)]
    groups = unstable_groups(normalize(pd.DataFrame(records)))
    assert [len(g.cells) for g in groups] == [4, 6]
    launch, noisy = groups
    assert launch.cause == "in launch- or overhead-bound steps" and launch.noise == 0.3
    assert "swing 2 to 3x between runs" in launch.sentence()
    assert noisy.cause.startswith("on worker 1, noisier than the others") and noisy.noise == 0.5
    assert noisy.sentence().startswith("6 timings unstable on worker 1")
    assert "(median IQR 50%)" in noisy.sentence()


def test_unstable_timings_on_every_worker_alike_are_one_group():
    records = [rec("manual", 10**5, d, worker=d % 2, iqr=0.2) for d in range(1, 11)]
    (group,) = unstable_groups(normalize(pd.DataFrame(records)))
    assert group.cause == "elsewhere, on every worker alike" and len(group.cells) == 10
    assert group.sentence().endswith("other load on the machine while they ran?")
