"""The progress bar: statuses in the summary's words, and the time left from the families'
expected costs, corrected by what finished families took (a clock of our own, no sleeping)."""

import io
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from harness import Cell, TimingOptions
from harness.runs.eta import PRIORS, Estimate, family_cost
from harness.runs.progress import RunProgress, status_line

TIMING = TimingOptions(min_run_time_s=0.05, rounds=11)
METHODS = ("manual", "autograd", "func")


def family(n=1000, d=16, dtype="float32", pattern="full", methods=METHODS):
    return [Cell("linear", m, pattern, dtype, n=n, d=d) for m in methods]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def records(cells, seconds, worker=0, compile_s=None, status="ok"):
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    end = start + timedelta(seconds=seconds)
    return [
        {
            "cell_id": c.cell_id,
            "method": c.method,
            "status": status,
            "worker": worker,
            "started_at": start.isoformat(),
            "finished_at": end.isoformat(),
            "first_call_s": compile_s if c.method == "compiled" else 0.001,
        }
        for c in cells
    ]


def predicted(cells) -> float:
    cost = family_cost(cells, TIMING)
    return cost.fixed_s + cost.data_s


def test_statuses_read_as_the_summary_says_them():
    assert status_line({"ok": 4}) == "ok 4"
    assert status_line({"ok": 4, "mismatch": 1, "timeout": 2}) == "ok 4, mismatch 1, timeout 2"
    out = io.StringIO()
    cells = family()
    with RunProgress([cells], TIMING, console=Console(file=out, width=160)) as progress:
        progress.finished(records(cells, 1.0)[:2] + records(cells, 1.0, status="mismatch")[2:])
    assert "ok 2, mismatch 1" in out.getvalue() and "failed" not in out.getvalue()


def test_a_family_costs_more_with_its_data_its_methods_and_its_passes():
    def cost(**kw):
        return family_cost(family(**kw), TIMING)

    big = {"n": 100_000, "d": 64}
    assert cost(**big).data_s > 100 * cost(n=1000).data_s
    assert cost(**big).fixed_s == cost(n=1000).fixed_s
    # the set-up (data, float64 reference) is the same whatever the pattern and dtype; the steps not
    prior = PRIORS["cpu"]
    setup = prior.setup_passes * big["n"] * (big["d"] + 1) * 8 / prior.bytes_per_s

    def steps(**kw):
        return cost(**big, **kw).data_s - setup

    assert steps(pattern="nozero:3") > 2.5 * steps()
    assert steps(pattern="microbatch:4") == pytest.approx(steps())
    assert steps(dtype="float64") > 1.5 * steps()
    assert cost(methods=(*METHODS, "fused")).fixed_s > cost().fixed_s
    assert cost().compile_key is None and cost(methods=("manual", "compiled")).compile_key
    on_gpu = family_cost([Cell("linear", m, device="cuda", **big) for m in METHODS], TIMING)
    assert on_gpu.data_s < cost(**big).data_s / 10  # each cell's device has its own prior


def test_the_time_left_is_the_families_laid_out_on_the_workers():
    fams = [family(n=1000 * (i + 1)) for i in range(4)]
    one = Estimate(fams, TIMING, workers=1, clock=Clock()).remaining_s()
    two = Estimate(fams, TIMING, workers=2, clock=Clock()).remaining_s()
    assert one == pytest.approx(sum(map(predicted, fams)))
    assert two == pytest.approx(predicted(fams[0]) + predicted(fams[2]), rel=0.2)
    assert one / 2 <= two < one


def test_the_time_left_learns_from_finished_families_and_counts_down():
    clock = Clock()
    fams = [family(n=1000 + i) for i in range(5)]
    eta = Estimate(fams, TIMING, workers=1, clock=clock)
    each = predicted(fams[0])
    assert eta.remaining_s() == pytest.approx(5 * each, rel=0.01)
    clock.t += 3 * each
    eta.finished(records(fams[0], 3 * each))  # this machine is three times slower than assumed
    assert eta.remaining_s() == pytest.approx(4 * 3 * each, rel=0.1)
    clock.t += each
    assert eta.remaining_s() == pytest.approx(4 * 3 * each - each, rel=0.1)
    for f in fams[1:]:
        eta.finished(records(f, 3 * each))
    assert eta.remaining_s() == 0


def test_a_part_no_finished_family_exercised_moves_with_the_observed_ratio():
    """Small families finish first; the large ones left are scaled by the small ones' ratio,
    not taken at the prior."""
    clock = Clock()
    small, large = family(n=1000), family(n=200_000, d=64)
    eta = Estimate([small, large], TIMING, workers=1, clock=clock)
    eta.finished(records(small, 2 * predicted(small)))
    assert eta.remaining_s() == pytest.approx(2 * predicted(large), rel=0.15)


def test_compiling_shows_while_a_compile_runs_and_its_cost_is_learned():
    clock = Clock()
    plain = family()
    first = family(n=2000, methods=("manual", "compiled"))
    again = family(dtype="float64", methods=("manual", "compiled"))
    eta = Estimate([plain, first, again], TIMING, workers=1, clock=clock)
    assert not eta.compiling()
    prior = PRIORS["cpu"]
    compiles = prior.first_compile_s + prior.next_compile_s
    assert eta.remaining_s() == pytest.approx(sum(map(predicted, (plain, first, again))) + compiles)
    eta.finished(records(plain, predicted(plain)))
    assert eta.compiling()
    eta.finished(records(first, predicted(first) + 1.0, compile_s=1.0))
    # the same worker, a new dtype: a later compile, not a first one
    assert eta.remaining_s() == pytest.approx(predicted(again) + prior.next_compile_s, rel=0.01)
    assert eta.compiling()
    eta.finished(records(again, 1.0, compile_s=0.5))
    assert not eta.compiling()


def test_a_first_compile_that_took_long_beyond_its_first_call_is_learned():
    """The family's time beyond its other parts is the compile, more than first_call_s."""
    clock = Clock()
    one, two = (family(n=n, methods=("manual", "compiled")) for n in (1000, 2000))
    eta = Estimate([one, two], TIMING, workers=2, clock=clock)
    eta.finished(records(one, predicted(one) + 30.0, worker=0, compile_s=20.0))
    # worker 1 has its first compile ahead: (prior + observed) / 2
    expected = (PRIORS["cpu"].first_compile_s + 30.0) / 2
    assert eta.remaining_s() == pytest.approx(predicted(two) + expected, rel=0.01)


def test_a_shape_a_worker_compiled_already_costs_no_compile():
    clock = Clock()
    full = family(methods=("manual", "compiled"))
    nozero = family(pattern="nozero:3", methods=("manual", "compiled"))  # same shapes as full
    eta = Estimate([full, nozero], TIMING, workers=1, clock=clock)
    eta.finished(records(full, predicted(full) + 5.0, compile_s=5.0))
    assert eta.remaining_s() == pytest.approx(predicted(nozero), rel=0.05)
    assert not eta.compiling()


def test_workers_are_the_executors_plan_or_one():
    from types import SimpleNamespace

    from harness.runs.local import LocalExecutor
    from harness.runs.progress import worker_count

    assert worker_count(SimpleNamespace(plan=SimpleNamespace(workers=3))) == 3
    assert worker_count(LocalExecutor()) == 1


def test_a_problem_that_costs_more_than_the_others_is_learned_on_its_own():
    """Linear families as predicted, MLP ones 1.5x: the MLP families left are predicted higher,
    the linear ones not."""
    clock = Clock()
    lin = [family(n=1000 + i) for i in range(4)]
    mlp = [[Cell("mlp", m, n=1000 + i, d=16, h=8) for m in ("manual", "autograd")] for i in range(4)]
    eta = Estimate([*lin[:3], *mlp[:3], lin[3], mlp[3]], TIMING, workers=1, clock=clock)
    for f in lin[:3]:
        eta.finished(records(f, predicted(f)))
    for f in mlp[:3]:
        eta.finished(records(f, 1.5 * predicted(f)))
    truth = predicted(lin[3]) + 1.5 * predicted(mlp[3])
    with_kinds = eta.remaining_s()
    eta._kind_factor = {}  # the same fit with one factor for all problems
    alone = eta.remaining_s()
    assert abs(with_kinds - truth) < 0.5 * abs(alone - truth)


def test_the_run_order_is_compiles_first_then_longest_first():
    from harness.runs.command import run_order

    small, large = family(n=1000), family(n=200_000, d=64)
    compiled = family(n=1000, methods=("manual", "compiled"))
    same = family(n=1000, dtype="float64")
    order = run_order([small, same, large, compiled], TIMING)
    assert order[0] is compiled and order[1] is large
    assert {id(f) for f in order[2:]} == {id(small), id(same)}
