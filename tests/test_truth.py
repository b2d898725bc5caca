"""The verdict uses all the evidence: the float64 twin decides too, tolerances follow the
reference's condition (no false alarm on correct gradients written unusually or at an optimum),
diagnoses name the parameter and the scale, and records keep their raw timing samples."""

import itertools
import statistics

import pytest

from harness import Cell, run_family
from harness.plugins import load_plugin
from helpers import NO_TIMING, PLUGINS, TINY_TIMING

load_plugin(PLUGINS / "correct_unusual.py")
load_plugin(PLUGINS / "planted_scale_bugs.py")

EAGER = ["manual", "autograd", "autograd_grad", "func", "numpy"]
PATTERNS = ["full", "zero", "microbatch:4", "uneven:3", "nozero:3", "retain:2"]
DTYPES = ["float64", "float32", "bfloat16", "float16"]
UNUSUAL = {
    "linear_einsum": {"n": 64, "d": 5},
    "linear_reversed": {"n": 2500, "d": 5},  # three blocks, the last one short
    "mlp_einsum": {"n": 64, "d": 5, "h": 7},
    "linear_optimum": {"n": 64, "d": 5},
    "linear1d_optimum": {"n": 64},
    "logistic_optimum": {"n": 512, "d": 4},
    "mlp_optimum": {"n": 64, "d": 5, "h": 7},
}


def runnable(cells):
    return [c for c in cells if c.skip_reason() is None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("problem", list(UNUSUAL))
def test_correct_unusual_and_optimal_gradients_never_fail(problem, dtype):
    seen = 0
    for pattern, seed in itertools.product(PATTERNS, range(2)):
        cells = runnable(
            [Cell(problem, m, pattern=pattern, dtype=dtype, seed=seed, **UNUSUAL[problem]) for m in EAGER]
        )
        for r in run_family(cells, timing=NO_TIMING):
            assert r["status"] == "ok", (r["method"], pattern, r["rel_err"], r["tol"], r["diagnosis"])
            seen += 1
    assert seen >= len(PATTERNS)


def test_the_optimum_is_where_the_condition_is_large():
    # the tolerance grows at the optimum because the gradient is tiny and its terms are not,
    # and only there: the same data at the initial parameters keep a condition near 1
    (at_opt,) = run_family([Cell("linear_optimum", "manual", n=64, d=5)], timing=NO_TIMING)
    (start,) = run_family([Cell("linear", "manual", n=64, d=5)], timing=NO_TIMING)
    assert at_opt["condition"] > 1e4 and start["condition"] < 3
    assert at_opt["rel_err"] > 1e-2  # float32 cannot tell this gradient from zero ...
    assert at_opt["status"] == "ok"  # ... and is not blamed for it


LARGE = [
    ("linear_optimum", {"n": 1_000_000, "d": 8}),
    ("linear1d_optimum", {"n": 1_000_000}),
    ("linear_reversed", {"n": 1_000_000, "d": 8}),
]


@pytest.mark.parametrize(("problem", "sizes"), LARGE)
def test_large_n_unusual_and_optimal_gradients_never_fail(problem, sizes):
    for dtype in ["float32", "bfloat16", "float16"]:
        cells = runnable([Cell(problem, m, dtype=dtype, **sizes) for m in ("manual", "autograd")])
        for r in run_family(cells, timing=NO_TIMING):
            assert r["status"] == "ok", (r["method"], dtype, r["rel_err"], r["tol"], r["diagnosis"])


# -- planted bugs ----------------------------------------------------------------------------


def one(problem, dtype="float32", method="manual", **sizes) -> dict:
    (r,) = run_family([Cell(problem, method, dtype=dtype, seed=7, **sizes)], timing=NO_TIMING)
    return r


def test_a_formula_error_hidden_under_float32_is_flagged_by_its_float64_twin():
    r = one("bug_stray_decay", n=10_000, d=8)
    assert r["rel_err"] < r["tol"]  # float32's own tolerance would let it through ...
    assert r["f64_checked"] and r["f64_rel_err"] > 1e-6  # ... the float64 twin does not
    assert r["status"] == "mismatch" and r["agree"] is False
    assert r["diagnosis"].startswith("the formula is wrong: in float64 rel_err")
    # a sibling's error: w disagrees, b agrees, and nothing is said to be upstream of b
    assert "disagrees in w" in r["diagnosis"] and "agrees in b" in r["diagnosis"]
    assert "upstream" not in r["diagnosis"]
    # the correct method of the same cell is not touched
    assert one("bug_stray_decay", method="autograd", n=10_000, d=8)["status"] == "ok"


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_a_factor_on_one_parameter_is_named(dtype):
    r = one("bug_mlp_w2_doubled", dtype=dtype, n=64, d=5, h=7)
    assert r["status"] == "mismatch"
    assert r["diagnosis"].startswith("W2 is 2.000x its reference: ")
    assert "; W1, b1, b2 agree" in r["diagnosis"]
    assert "wrong direction" not in r["diagnosis"]


@pytest.mark.parametrize("n", [64, 101])
def test_divided_by_n_minus_one_is_named(n):
    r = one("bug_n_minus_one", n=n, d=5)
    assert r["status"] == "mismatch"
    assert r["diagnosis"].startswith(
        f"{n / (n - 1):.3f}x the reference = {n}/{n - 1}: divided by n-1 where n was meant?"
    )


def test_a_one_percent_scale_is_a_scale_not_a_wrong_direction():
    r = one("bug_one_percent", n=64, d=5)
    assert r["status"] == "mismatch"
    assert r["diagnosis"].startswith("1.010x the reference, direction right: a stray constant factor?")
    assert "wrong direction" not in r["diagnosis"]


def test_upstream_only_where_the_problem_declares_layers():
    # the mlp's tanh' bug: W1, b1 wrong, W2, b2 right; the mlp declares W1, b1 below W2, b2
    load_plugin(PLUGINS / "planted_bugs.py")
    r = one("bug_mlp_activation", n=64, d=5, h=7)
    assert "disagrees in W1, b1" in r["diagnosis"]
    assert "agrees in W2, b2: the error is upstream of those" in r["diagnosis"]
    assert "W1 rel_err" in r["diagnosis"] and "cosine" in r["diagnosis"]


# -- raw samples -------------------------------------------------------------------------------


def test_records_keep_their_raw_samples_and_derive_their_statistics_from_them():
    cells = [Cell("linear", m, n=256, d=4) for m in ("manual", "autograd")]
    for r in run_family(cells, timing=TINY_TIMING):
        samples = r["time_samples_s"]
        assert len(samples) == TINY_TIMING.rounds == r["samples"]
        assert r["time_median_s"] == pytest.approx(statistics.median(samples))
        assert r["time_min_s"] == min(samples)
        assert len(r["forward_samples_s"]) == TINY_TIMING.rounds
        assert r["forward_median_s"] == pytest.approx(statistics.median(r["forward_samples_s"]))


def test_softmax_term_spread_in_closed_form_is_the_per_sample_one():
    # sum_i |x_i r_i^T|^2 = sum_i |x_i|^2 |r_i|^2: one pass over the residuals gives what n
    # per-sample gradients of d x c numbers each give
    import math

    import torch

    from harness import reference as ref
    from harness.problems import get_problem

    p = get_problem("softmax")(n=40, d=3, c=5)
    params, data = p.make(torch.Generator().manual_seed(0))
    grad = ref.reference_grad(p, params, data)
    closed = ref.term_spread(p, params, data, grad)
    sumsq = {k: torch.zeros((), dtype=torch.float64) for k in grad}
    ref._per_sample_sumsq(p, ref.upcast(params, torch.float64), data, grad, sumsq, torch.device("cpu"))
    assert closed == pytest.approx({k: math.sqrt(v.item()) / 40 for k, v in sumsq.items()}, rel=1e-12)
