"""Where the time goes: profile columns and `bound`, the read floor, `graphed`, the crossover."""

import argparse
import math
import time

import pandas as pd
import pytest
import torch

from harness import Cell, TimingOptions, gpu, run_family
from harness.methods import Autograd, get_method
from harness.problems import get_problem
from harness.profiling import (
    BOUNDS,
    LAUNCH_BUSY_FRACTION,
    MAX_PROFILED_STEPS,
    MEMORY_FLOOR_FRACTION,
    bound,
    profile_step,
    steps_to_profile,
    union_us,
)
from harness.report import explain
from harness.runs import crossover as X
from harness.runs.config import load_config
from harness.runs.grid import expand
from harness.runs.local import LocalBackend

QUICK = TimingOptions(min_run_time_s=0.01, rounds=3, warmup=1)
PROFILED = ("manual", "autograd", "func", "fused")


# -- profiling: the pieces, by hand -------------------------------------------------------------


def test_union_of_overlapping_kernel_intervals():
    assert union_us([]) == 0
    assert union_us([(0, 10), (5, 15), (20, 25)]) == 20  # 0..15 and 20..25
    assert union_us([(0, 10), (2, 3)]) == 10  # one inside another counts once


def test_bound_thresholds():
    busy_low = LAUNCH_BUSY_FRACTION * 0.9
    assert bound(busy_low, 1.0, 0.9) == "launch"  # idle device: launch whatever the bandwidth
    assert bound(0.9, 1.0, MEMORY_FLOOR_FRACTION) == "memory"
    assert bound(0.9, 1.0, MEMORY_FLOOR_FRACTION / 2) == "compute"
    assert bound(0.9, 1.0, None) == "other"  # busy, but no byte floor to tell which
    assert bound(None, 1.0, 0.5) is None


def test_profiling_cost_is_capped():
    assert steps_to_profile(None) == 1
    assert steps_to_profile(1.0) == 1  # a long step: one
    assert steps_to_profile(1e-7) == MAX_PROFILED_STEPS  # a tiny one: a few, never more


def test_cpu_profile_counts_the_ops_that_do_work():
    X, w, y = torch.randn(50, 4), torch.randn(4), torch.randn(50)

    def step():
        X @ w - y  # matmul -> mv -> addmv_ (+ an empty), then sub: two ops do work

    p = profile_step(step, lambda: None, torch.device("cpu"))
    assert p.kernels == 2
    assert p.ops > p.kernels  # matmul and mv dispatch, empty allocates
    assert 0 < p.busy_s <= p.wall_s


def test_cpu_ops_read_from_kinetos_events_match_the_profilers_event_tree():
    """The same ops, the same work ops and the same busy time as torch's FunctionEvent tree, for
    a torch.func step (each op recorded once per functorch layer: nested repeats are one op)."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler import profile

    from harness.profiling import NO_WORK, cpu_ops

    X, w, y = torch.randn(64, 4), torch.randn(4), torch.randn(64)
    grad = torch.func.grad(lambda w: ((X @ w - y) ** 2).mean())
    grad(w)
    with profile(use_kineto=True) as prof:
        grad(w)
    ours = cpu_ops(prof)
    theirs = [
        e for e in prof.function_events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")
    ]

    def works(e):
        below = lambda c: (
            (c.name.startswith("aten::") and c.name not in NO_WORK) or any(map(below, c.cpu_children))
        )
        return e.name not in NO_WORK and not any(map(below, e.cpu_children))

    assert len(ours) == len(theirs) and sorted(o[0] for o in ours) == sorted(e.name for e in theirs)
    work = [e for e in theirs if works(e)]
    assert sum(o[3] for o in ours) == len(work) >= 3
    busy = sum((end - start) for _, start, end, w in ours if w) * 1e-3
    assert busy == pytest.approx(sum(e.cpu_time_total for e in work), rel=1e-9)


# -- run_family fills them ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def records():
    cells = [Cell("linear", m, n=256, d=8) for m in (*PROFILED, "numpy")]
    micro = [Cell("linear", m, pattern="microbatch:4", n=256, d=8) for m in ("manual", "autograd")]
    return run_family(cells, threads=1, timing=QUICK) + run_family(micro, threads=1, timing=QUICK)


def test_every_timed_cell_has_a_profile_and_a_bound_or_says_why_not(records):
    for r in records:
        assert r["status"] == "ok", r["error"]
        assert r["time_median_s"] is not None
        if r["method"] == "numpy":
            assert r["bound"] is None and "numpy" in r["profile_note"]
            continue
        assert r["profile_steps"] >= 1
        # a profile the machine's load disturbed (5x the timed median, three tries) gives no bound
        # and says so: on a quiet machine every cell has one
        assert (r["bound"] in BOUNDS and r["profile_note"] is None) or r["profile_note"].startswith(
            "disturbed"
        )
        assert 0 < r["kernels_per_step"] <= r["ops_per_step"]
        assert r["busy_per_step_s"] > 0 and r["profiled_wall_s"] > 0


def test_autograd_does_more_work_ops_than_manual_and_microbatches_multiply_them(records):
    by = {(r["method"], r["pattern"]): r for r in records}
    assert by["autograd", "full"]["kernels_per_step"] > by["manual", "full"]["kernels_per_step"]
    # four micro-batches: at least three times the ops of one batch, for either method
    for m in ("manual", "autograd"):
        assert by[m, "microbatch:4"]["kernels_per_step"] >= 3 * by[m, "full"]["kernels_per_step"]


def test_floor_fraction_is_achieved_over_the_read_probe(records):
    read = gpu.read_floor_gbps("cpu")
    for r in records:
        assert r["floor_fraction"] == pytest.approx(r["achieved_gbps"] / read)


def test_a_disturbed_profile_is_tried_again_and_gives_no_bound_if_it_stays_so():
    from harness.profiling import PROFILE_TRIES, profile_records

    calls = []

    def step():
        calls.append(1)
        time.sleep(0.002)  # 2 ms a step against a "timed median" of 0.1 ms: disturbed every time

    record = {"time_median_s": 1e-4, "floor_fraction": None, "profile_note": None, "bound": None}
    cls = type("M", (), {"unprofiled": classmethod(lambda cls, device: None)})
    profile_records({"m": step}, {"m": lambda: None}, {"m": cls}, torch.device("cpu"), {"m": record})
    assert record["bound"] is None and record["profile_note"].startswith("disturbed: ")
    assert len(calls) == PROFILE_TRIES * record["profile_steps"]
    assert record["profiled_wall_s"] >= 0.002


@pytest.mark.parametrize(
    ("case", "busy", "profiled", "median", "floor", "expected"),
    [  # profiles of an H200 run (torch 2.11): per step, in us
        ("fused n=1e7 fp32", 670, 1349, 682, 1.02, "memory"),  # held against its profiled wall: "launch"
        ("manual n=1e7 fp32", 2132, 3302, 2148, 0.32, "compute"),  # X^T r in cuBLAS, 0.32 of the floor
        ("manual n=1e4 fp32", 14, 467, 138, 0.005, "launch"),  # the GPU idles 90% of the step
        ("graphed n=1e4 fp32", 23, 238, 24, 0.03, "compute"),  # one replay: busy all along; not disturbed
        ("kernels slower than timed", 300, 400, 100, 0.5, None),  # the GPU was shared: no bound
    ],
)
def test_on_cuda_busy_time_is_held_against_the_timed_step(case, busy, profiled, median, floor, expected):
    # CUPTI slows the host by tens of us per kernel, not the kernels: a profiled wall would call a
    # one-kernel step at the read floor launch-bound
    from harness.profiling import StepProfile, bound, disturbed, step_wall_s

    p = StepProfile(steps=1, ops=10, kernels=7, busy_s=busy * 1e-6, wall_s=profiled * 1e-6)
    if expected is None:
        assert disturbed(p, median * 1e-6, "cuda")
        return
    assert not disturbed(p, median * 1e-6, "cuda")
    assert bound(p.busy_s, step_wall_s(p, median * 1e-6, "cuda"), floor) == expected
    # on the CPU busy and wall come from the same profiled steps
    assert step_wall_s(p, median * 1e-6, "cpu") == p.wall_s


def test_profile_can_be_turned_off():
    cells = [Cell("linear", m, n=64, d=4) for m in ("manual", "autograd")]
    timing = TimingOptions(min_run_time_s=0.01, rounds=3, warmup=1, profile=False)
    for r in run_family(cells, threads=1, timing=timing):
        assert r["bound"] is None and r["ops_per_step"] is None


# -- the read probe -------------------------------------------------------------------------------


def test_read_probe_beside_the_copy_probe_in_the_manifest():
    probe = gpu.bandwidth_probe("cpu", nbytes=8 * 2**20)
    assert probe["read_probe_kind"] == "cpu sum of a host buffer"
    assert probe["read_probe_bytes"] == 8 * 2**20
    assert 0.1 < probe["read_probe_gbps"] < 10_000
    _, ticket = LocalBackend("cpu", 1, ("cpu",)).start(0)  # each worker's row of the manifest
    worker = ticket.outcome.value
    assert worker["read_probe_gbps"] > 0 and worker["bandwidth_probe_gbps"] > 0


def test_read_floor_is_measured_once_per_process_and_device():
    first = gpu.read_floor_gbps("cpu")
    assert gpu.read_floor_gbps(torch.device("cpu")) == first  # cached, not measured again


# -- graphed --------------------------------------------------------------------------------------


def test_graphed_is_skipped_on_the_cpu_with_its_reason(tmp_path):
    assert Cell("linear", "graphed", n=8, d=2).skip_reason() == "graphed runs on CUDA GPUs only"
    cfg = tmp_path / "g.yaml"
    cfg.write_text("name: g\nproblems:\n  linear: {n: [8], d: [2]}\nmethods: [manual, graphed]\n")
    grid = expand(load_config(cfg), ("cpu",), "cpu")
    assert {c.method for c in grid.cells} == {"manual"}
    assert any("graphed runs on CUDA GPUs only" in str(s) for s in grid.skipped)


def test_graphed_declares_itself():
    g = get_method("graphed")
    assert g.devices == ("cuda",) and issubclass(g, Autograd) and g.compiles
    assert g.declared()["order"] == 35 and g.declared()["color"]


def test_graphed_on_cpu_tensors_is_plain_autograd():
    # the float64 formula check runs on the CPU: there the step is not captured
    problem = get_problem("linear")(n=16, d=3)
    params, data = problem.make(torch.Generator().manual_seed(0))
    from harness.patterns import parse_pattern

    grads = {}
    for name in ("autograd", "graphed"):
        s = get_method(name)(problem, params, data)
        parse_pattern("full").bind(s)()
        grads[name] = s.grads()
    for k in grads["autograd"]:
        assert torch.equal(grads["graphed"][k], grads["autograd"][k])


@pytest.mark.gpu
def test_graphed_replays_autograd_on_cuda_and_reads_fresh_inputs():
    cells = [Cell("linear", m, device="cuda", n=4096, d=16) for m in ("manual", "autograd", "graphed")]
    recs = {r["method"]: r for r in run_family(cells, "cuda", timing=QUICK)}
    assert recs["graphed"]["status"] == "ok", recs["graphed"]["error"]
    assert recs["graphed"]["agree"] is True and recs["graphed"]["compile_s"] > 0
    assert recs["graphed"]["bound"] in BOUNDS and recs["graphed"]["kernels_per_step"] >= 1
    # static inputs: a replay after the parameters change in place gives the new gradient
    from harness.patterns import parse_pattern

    problem = get_problem("linear")(n=512, d=4)
    params, data = problem.make(torch.Generator().manual_seed(1))
    params = {k: v.cuda() for k, v in params.items()}
    data = {k: v.cuda() for k, v in data.items()}
    g, a = get_method("graphed")(problem, params, data), get_method("autograd")(problem, params, data)
    step_g, step_a = parse_pattern("microbatch:4").bind(g), parse_pattern("microbatch:4").bind(a)
    for _ in range(2):
        step_g(), step_a()
        for k in a.grads():
            torch.testing.assert_close(g.grads()[k], a.grads()[k])
        g.sgd(0.1), a.sgd(0.1)


@pytest.mark.gpu
def test_cuda_profile_counts_kernels_and_busy_time():
    cells = [Cell("linear", m, device="cuda", n=100_000, d=64) for m in ("manual", "autograd", "fused")]
    for r in run_family(cells, "cuda", timing=QUICK):
        # kernel times are the GPU's clock aligned to the host's by the profiler: a little slack
        assert r["kernels_per_step"] >= 1 and 0 < r["busy_per_step_s"] <= 1.1 * r["profiled_wall_s"]
        assert r["bound"] in BOUNDS and r["floor_fraction"] > 0


# -- the crossover --------------------------------------------------------------------------------


def fake(overhead_s: float, spread: float = 0.02, per_row_s: float = 1e-8):
    """Autograd's ratio to manual when it costs a fixed overhead more: 1 + overhead / (n per_row)."""
    calls = []

    def measure(n, rounds):
        calls.append((n, rounds))
        r = 1 + overhead_s / (n * per_row_s)
        return r, r - spread, r + spread

    return measure, calls


def test_crossover_brackets_the_n_where_the_overhead_falls_under_ten_percent():
    measure, calls = fake(1e-4, spread=1e-4)  # 1 + 1e4 / n: exactly 1.10 at n = 1e5
    result = X.search(measure, 1_000, 5_000_000, max_steps=20, resolution=1.1)
    assert result.outcome == "found"
    lo, hi = result.interval
    assert lo < 100_000 < hi and hi / lo <= 1.1
    assert lo == result.above.n and result.above.ratio > 1.1 > result.below.ratio
    assert len(calls) <= 20
    assert "between n = " in result.sentence()


def test_crossover_says_when_there_is_none_in_the_range():
    measure, _ = fake(1e-2)  # 1.10 only at n = 1e7
    result = X.search(measure, 1_000, 1_000_000)
    assert result.outcome == "none in range" and result.n is None
    assert "no crossover up to n = 1,000,000" in result.sentence()
    assert "at n = 1,000, " in result.sentence() and result.sentence().endswith("at n = 1,000,000)")
    assert len(result.points) == 2  # the two ends, measured once each


def test_crossover_below_the_range():
    measure, _ = fake(1e-9)
    assert X.search(measure, 1_000, 1_000_000).outcome == "below range"


def test_a_straddling_step_is_refined_with_more_rounds_then_reported():
    def measure(n, rounds):  # wide interval around 1.10 from n = 1e4 on
        return (1.5, 1.4, 1.6) if n < 10_000 else (1.1, 1.0, 1.2)

    result = X.search(measure, 1_000, 1_000_000, rounds=11, refine=1)
    assert result.outcome == "straddles" and result.near.n == 1_000_000
    assert [p.rounds for p in result.points] == [11, 11, 22]  # n_max measured again, twice the rounds
    assert "indistinguishable" in result.sentence()


def test_crossover_keeps_n_a_multiple_of_the_quantum():
    measure, calls = fake(1e-4)
    X.search(measure, 1_000, 10_000_000, quantum=4)
    assert all(n % 4 == 0 for n, _ in calls[2:])


def test_crossover_real_run_on_tiny_sizes():
    measure = X.family_measure("linear", 4, "float32", ("manual", "autograd"), "cpu", min_run_time_s=0.01)
    result = X.search(measure, 16, 256, rounds=3, max_steps=3)
    assert 2 <= len(result.points) <= 4
    assert all(p.lo <= p.ratio <= p.hi and 16 <= p.n <= 256 for p in result.points)
    assert result.outcome in ("found", "none in range", "below range", "straddles")


def test_crossover_command_rejects_bad_input(capsys):
    from harness.cli import main

    assert main(["crossover", "--methods", "manual"]) == 2
    assert main(["crossover", "--methods", "manual,nope", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("gradbench: error:") == 2 and "--methods" in err


# -- the report's words ---------------------------------------------------------------------------


def _row(method, vs, kernels, busy, wall, b, device="cpu", n=10_000):
    return {
        "problem": "linear", "mode": "gradient", "dtype": "float32", "pattern": "full", "data": "random",
        "device": device, "n": n, "d": 64, "h": None, "seed": 0, "method": method, "vs_manual": vs,
        "vs_manual_lo": vs, "vs_manual_hi": vs, "kernels_per_step": kernels, "busy_per_step_s": busy,
        "profiled_wall_s": wall, "bound": b, "floor_fraction": 0.05, "ops_per_step": kernels * 3,
        "time_median_s": wall, "profile_note": None,
    }  # fmt: skip


def test_report_explains_the_largest_overhead_in_words():
    df = pd.DataFrame(
        [
            _row("manual", 1.0, 7, 14e-6, 50e-6, "launch", "cuda"),
            _row("autograd", 4.8, 14, 18e-6, 287e-6, "launch", "cuda"),
        ]
    )
    words = explain.sentences(df)
    assert words[0] == "manual: of its 1 profiled cell, launch-bound 1."
    text = words[1]
    cell = "linear n=10000 d=64 float32 full"
    assert text.startswith(f"autograd at {cell}, 4.80x manual (its largest overhead): ")
    assert "14 kernels, GPU busy 18 µs of 287 µs: launch-bound" in text
    assert "(manual: 7 kernels, GPU busy 14 µs of 50 µs, likewise)" in text  # its bound said once
    assert text.endswith("; of its 1 profiled cell, launch-bound 1.")
    assert len(explain.profile_table(df)) == 2


def test_report_words_on_the_cpu_name_host_overhead():
    df = pd.DataFrame(
        [_row("manual", 1.0, 6, 20e-6, 40e-6, "compute"), _row("autograd", 3.0, 13, 30e-6, 300e-6, "launch")]
    )
    text = explain.sentences(df)[1]
    assert (
        "13 ops doing work, busy 30 µs of 300 µs: overhead-bound (Python, dispatcher, autograd engine)"
        in text
    )
    assert "compute-bound (busy, at 5% of the read floor)" in text
    assert math.isfinite(df["vs_manual"].max())


def test_report_says_nothing_for_runs_without_profiles():
    df = pd.DataFrame([{**_row("autograd", 2.0, 1, 1, 1, None), "bound": None}])
    assert explain.sentences(df) == []


def test_crossover_parser_is_a_subcommand():
    from harness.cli import _parser, cmd_crossover

    args = _parser().parse_args(["crossover", "--n-min", "10", "--n-max", "20"])
    assert args.command is cmd_crossover and isinstance(args, argparse.Namespace)
