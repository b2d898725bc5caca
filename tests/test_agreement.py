"""Correct gradients agree with the float64 reference for every problem x method x pattern."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import Cell, run_family
from harness.agreement import Agreement, compare
from harness.diagnosis import diagnose
from harness.methods import method_names
from harness.patterns import parse_pattern
from harness.problems import problem_names
from harness.tolerance import TOL_FACTOR, tolerance
from helpers import NO_TIMING

BUILTIN = ["chain", "vjp", "scalar", "weightsum", "linear1d", "linear", "logistic", "mlp", "softmax"]
# `function` runs where a problem has a function_loss (softmax's chunked Function)
EAGER = ["manual", "autograd", "autograd_grad", "func", "numpy", "function"]
PATTERNS = ["full", "zero", "microbatch:4", "uneven:3", "nozero:3", "retain:2"]
SMALL = {
    "chain": {"n": 12},
    "vjp": {"n": 12},
    "scalar": {},
    "weightsum": {"n": 12},
    "linear1d": {"n": 12},
    "linear": {"n": 12, "d": 5},
    "logistic": {"n": 12, "d": 5},
    "mlp": {"n": 12, "d": 5, "h": 6},
    "softmax": {"n": 12, "d": 5, "c": 7},
}


def runnable(cells):
    return [c for c in cells if c.skip_reason() is None]


def test_builtins_are_registered():
    assert set(BUILTIN) <= set(problem_names())
    assert set(EAGER) | {"compiled"} <= set(method_names())


@pytest.mark.parametrize("problem", BUILTIN)
def test_float64_every_method_and_pattern_agrees_to_1e_10(problem):
    seen = 0
    for pattern, seed in itertools.product(PATTERNS, range(3)):
        cells = runnable(
            [Cell(problem, m, pattern=pattern, dtype="float64", seed=seed, **SMALL[problem]) for m in EAGER]
        )
        for r in run_family(cells, timing=NO_TIMING):
            assert r["status"] == "ok", (r["method"], pattern, r["error"], r["diagnosis"])
            assert r["rel_err"] < 1e-10 and r["f64_rel_err"] < 1e-10
            seen += 1
    assert seen >= len(PATTERNS)  # a skip that swallowed everything would pass vacuously


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("problem", BUILTIN)
def test_low_precision_never_fails_a_correct_gradient(problem, dtype):
    for pattern, seed in itertools.product(PATTERNS, range(2)):
        cells = runnable(
            [Cell(problem, m, pattern=pattern, dtype=dtype, seed=seed, **SMALL[problem]) for m in EAGER]
        )
        for r in run_family(cells, timing=NO_TIMING):
            assert r["status"] == "ok", (r["method"], pattern, r["rel_err"], r["tol"], r["error"])


@pytest.mark.parametrize("data", ["padded", "weighted"])
def test_the_lm_head_with_padding_and_weights_agrees_in_every_method_dtype_and_pattern(data):
    """softmax's data sets: labels ignore_index on padding and prompt rows (a mean over the valid
    targets), and a per-row weight (its Function one loss per row, reduction='none')."""
    for dtype, pattern in itertools.product(["float64", "float32", "bfloat16", "float16"], PATTERNS):
        cells = [Cell("softmax", m, pattern=pattern, dtype=dtype, data=data, n=1000, d=5, c=7) for m in EAGER]
        records = run_family(runnable(cells), timing=NO_TIMING)
        assert {r["method"] for r in records} >= {"autograd", "function"}
        for r in records:
            assert r["status"] == "ok", (data, dtype, pattern, r["method"], r["rel_err"], r["diagnosis"])
        if data == "padded" and pattern == "microbatch:4":  # its last micro-batch: padding alone
            assert all(r["batch_items"][-1] == 0 and r["items"] < 750 for r in records)


LARGE = [
    ("linear", {"n": 1_000_000, "d": 8}),
    ("logistic", {"n": 1_000_000, "d": 8}),
    ("mlp", {"n": 1_000_000, "d": 4, "h": 8}),
    ("linear1d", {"n": 1_000_000}),
    ("chain", {"n": 1_000_000}),
]


@pytest.mark.parametrize("data", ["random", "padded"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pattern", ["full", "microbatch:4"])
def test_large_n_softmax_never_fails_a_correct_gradient(dtype, pattern, data):
    cells = [Cell("softmax", m, pattern=pattern, dtype=dtype, n=100_000, d=4, c=16, data=data) for m in EAGER]
    for r in run_family(runnable(cells), timing=NO_TIMING):
        assert r["status"] == "ok", (r["method"], r["rel_err"], r["tol"], r["diagnosis"])


def test_float16_cross_entropy_underflows_at_large_n_and_is_named():
    # F.cross_entropy's backward on the CPU in float16 writes (p - y) / n with subnormals flushed:
    # at n = 65536 (1/n = 1.5e-5, below float16's smallest normal 6.1e-5) autograd's gradient is
    # all zeros. The manual gradient, dividing P - Y by n in eager float16, keeps its subnormals.
    cells = [Cell("softmax", m, dtype="float16", n=65_536, d=4, c=16) for m in ("manual", "autograd")]
    manual, autograd = run_family(cells, timing=NO_TIMING)
    assert manual["status"] == "ok"
    assert autograd["status"] == "mismatch" and autograd["diagnosis"].startswith("the gradient is zero")


@pytest.mark.parametrize(("problem", "sizes"), LARGE)
def test_large_n_never_fails_a_correct_gradient(problem, sizes):
    # rounding grows with the length of the sums: n = 1e6 in every dtype the CPU runs
    # (the mlp at 1e6 rows costs a minute on 2 cores per pattern: full only)
    patterns = ["full"] if problem == "mlp" else ["full", "microbatch:4"]
    for dtype, pattern in itertools.product(["float32", "bfloat16", "float16"], patterns):
        cells = runnable(
            [
                Cell(problem, m, pattern=pattern, dtype=dtype, **sizes)
                for m in ("manual", "autograd", "function")
            ]
        )
        for r in run_family(cells, timing=NO_TIMING):
            assert r["status"] == "ok", (r["method"], dtype, pattern, r["rel_err"], r["tol"])


def test_compiled_agrees_on_a_few_shapes():
    # torch.compile costs seconds per shape on a small CPU: two shapes, two dtypes
    for problem, sizes in [("linear", {"n": 64, "d": 8}), ("mlp", {"n": 64, "d": 4, "h": 8})]:
        cells = [Cell(problem, m, dtype="float32", **sizes) for m in ("manual", "compiled")]
        for r in run_family(cells, timing=NO_TIMING):
            assert r["status"] == "ok", (r["method"], r["error"], r["diagnosis"])
            # a float64 twin of `compiled` would be a second compile: the record says it has none
            assert r["f64_checked"] is (r["method"] != "compiled")
            assert (r["f64_rel_err"] is None) is (r["method"] == "compiled")
        assert r["compile_s"] > 0


def test_multiplier_per_pattern():
    assert [parse_pattern(p).multiplier for p in PATTERNS] == [1, 1, 1, 1, 3, 2]


def test_tolerance_grows_with_length_and_roundoff():
    assert tolerance(torch.float64, 1) < tolerance(torch.float32, 1) < tolerance(torch.float16, 1)
    # F (u + u sqrt(L)) in float32; float16 accumulates in float32, then 1/L turns subnormal
    f32, f16 = TOL_FACTOR[torch.float32], TOL_FACTOR[torch.float16]
    assert tolerance(torch.float32, 10_000) == pytest.approx(f32 * 2**-24 * (1 + 100))
    assert tolerance(torch.float16, 100) == pytest.approx(f16 * (2**-11 + 2**-24 * 10))
    assert tolerance(torch.float16, 10**5) > f16 * (2**-11 + 2**-24 * 10**2.5)
    assert tolerance(torch.bfloat16, 10**6) <= 0.05  # capped: a 0.5x or 2x bug always fails


def test_compare_counts_all_parameters_at_once():
    ref = {"w": torch.tensor([3.0, 4.0], dtype=torch.float64), "b": torch.tensor([0.0], dtype=torch.float64)}
    got = {"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.5])}
    a = compare(got, ref, multiplier=1, tol=1e-6)
    assert a.rel_err == pytest.approx(0.1)  # |(0, 0, 0.5)| / |(3, 4, 0)|
    assert a.max_abs_err == pytest.approx(0.5)
    assert a.per_param["w"].rel_err == 0.0 and a.per_param["w"].scale == 1.0
    assert a.per_param["b"].rel_err == pytest.approx(0.5 / torch.finfo(torch.float64).tiny)
    # per parameter: w on its line, b all off it; overall the direction is off by |(0, 0, .5)| / |g|
    assert a.per_param["w"].sine == 0.0 and a.sine == pytest.approx(0.5 / (25 + 0.25) ** 0.5)


def test_compare_rejects_a_gradient_of_the_wrong_shape():
    ref = {"w": torch.zeros(4, 1, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"gradient of w has shape \(4, 4\)"):
        compare({"w": torch.zeros(4, 4)}, ref, multiplier=1, tol=1e-6)  # (N,) vs (N,1) broadcast


def test_a_nan_gradient_never_agrees():
    ref = {"w": torch.ones(3, dtype=torch.float64)}
    a = compare({"w": torch.tensor([1.0, float("nan"), 1.0])}, ref, multiplier=1, tol=1.0)
    assert not a.agree
    assert diagnose(a, n=3, k=1).startswith("non-finite gradient")


@settings(max_examples=200, deadline=None)
@given(m=st.integers(2, 1000), n=st.integers(1, 10**6), k=st.integers(1, 64))
def test_diagnosis_names_any_integer_factor_and_its_inverse(m, n, k):
    times = diagnose(Agreement(rel_err=m - 1, max_abs_err=1, scale=m, cosine=1, tol=1e-6), n=n, k=k)
    assert times.startswith(f"{m}.000x the reference")
    assert ("a sum where a mean" in times) == (m == n)
    inverse = diagnose(Agreement(rel_err=1 - 1 / m, max_abs_err=1, scale=1 / m, cosine=1, tol=1e-6), n=n, k=k)
    assert inverse.startswith(f"{1 / m:.3f}x the reference")


def test_a_scale_off_an_integer_or_a_ratio_is_named_as_a_plain_constant():
    a = Agreement(rel_err=1.5, max_abs_err=1, scale=2.5, cosine=1, tol=1e-6)
    assert diagnose(a, n=4, k=1) == "2.500x the reference, direction right: a stray constant factor?"


@pytest.mark.parametrize(
    ("scale", "sizes", "named"),
    [
        (101 / 100, {"n": 101}, "1.010x the reference = 101/100: divided by n-1 where n was meant?"),
        (99 / 100, {"n": 100}, "0.990x the reference = 99/100: divided by n where n-1 was meant?"),
        (64 / 8, {"n": 64, "d": 8}, "8.000x the reference: a stray factor 8?"),  # integers first
        (60 / 7, {"n": 60, "d": 7}, "8.571x the reference = 60/7: divided by d where n was meant?"),
        (4 / 3, {"n": 10, "k": 4}, "1.333x the reference = 4/3: divided by k-1 where k was meant?"),
    ],
)
def test_structured_scales_are_named(scale, sizes, named):
    a = Agreement(rel_err=abs(scale - 1), max_abs_err=1, scale=scale, cosine=1, tol=1e-6)
    assert diagnose(a, **sizes) == named


def test_a_pure_scale_is_not_a_wrong_direction():
    # 1% too large everywhere: the direction is right to rounding, the sentence says so
    ref = {"w": torch.tensor([3.0, 4.0, 1.0], dtype=torch.float64)}
    a = compare({"w": 1.01 * ref["w"].float()}, ref, multiplier=1, tol=1e-6)
    assert a.sine < 1e-7 and not a.agree
    assert diagnose(a, n=3).startswith("1.010x the reference, direction right")
