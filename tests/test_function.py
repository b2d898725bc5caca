"""A user's own torch.autograd.Function, the method `function`: checked and timed like the
built-in gradients. Correct Functions agree in every pattern and dtype; each planted bug is
flagged in words that name it; a Function without float64 has its twin skipped, with why."""

import pytest
import torch

from harness import Cell, run_family
from harness.plugins import load_plugin
from helpers import NO_TIMING, PLUGINS, TINY_TIMING

for plugin in sorted(PLUGINS.glob("function_*.py")):
    load_plugin(plugin)

PATTERNS = ["full", "zero", "microbatch:4", "uneven:3", "nozero:3", "retain:2"]
DTYPES = ["float64", "float32", "bfloat16", "float16"]
CORRECT = {
    "linear_function": {"n": 64, "d": 5},
    "linear_chunked_function": {"n": 2500, "d": 5},  # three chunks, the last one short
    "linear_context_function": {"n": 64, "d": 5},
    "mlp_functions": {"n": 64, "d": 5, "h": 7},
    "softmax": {"n": 600, "d": 5, "c": 7},  # the built-in chunked Function: blocks of 512 rows and 88
}
N = 64


def one(problem: str, pattern: str = "full", dtype: str = "float32", **sizes) -> dict:
    sizes = sizes or {"n": N, "d": 5}
    (r,) = run_family(
        [Cell(problem, "function", pattern=pattern, dtype=dtype, seed=3, **sizes)], timing=NO_TIMING
    )
    return r


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("problem", list(CORRECT))
def test_correct_functions_agree_in_every_pattern_and_dtype(problem, dtype):
    for seed, pattern in enumerate(PATTERNS):  # a seed of its own for each pattern: other data, as cheap
        cell = Cell(problem, "function", pattern=pattern, dtype=dtype, seed=seed, **CORRECT[problem])
        (function,) = run_family([cell], timing=NO_TIMING)
        assert function["status"] == "ok", (
            pattern,
            function["rel_err"],
            function["tol"],
            function["diagnosis"],
        )
        # the forward's loss is checked against the reference loss, and the backward takes grad_output
        assert function["loss_agree"] and function["loss_rel_err"] <= function["loss_tol"]
        assert function["grad_output_scale"] == pytest.approx(1, abs=function["tol"])
        assert function["f64_checked"] and function["f64_rel_err"] < 1e-10


def test_the_reference_is_the_plain_loss_never_the_function():
    # a Function that is wrong everywhere (its forward and its backward) cannot judge itself
    r = one("fn_wrong_forward")
    assert r["loss_reference"] == pytest.approx(r["loss_value"] / N, rel=1e-5)


def test_a_backward_that_ignores_grad_output_is_right_alone_and_named_under_accumulation():
    alone = one("fn_ignores_grad_output")
    assert alone["rel_err"] <= alone["tol"]  # loss.backward() hands it grad_output = 1
    assert alone["status"] == "mismatch" and alone["grad_output_scale"] == pytest.approx(4)
    assert alone["diagnosis"].startswith("the backward ignores its incoming gradient (grad_output)")
    assert "right under full only because grad_output is 1 there" in alone["diagnosis"]
    micro = one("fn_ignores_grad_output", "microbatch:4")
    assert micro["scale"] == pytest.approx(4, rel=1e-4)
    assert micro["diagnosis"].startswith(
        "4.000x the reference under microbatch:4: the backward ignores its incoming gradient (grad_output)"
    )
    assert "each of the 4 micro-batches' losses was scaled by 1/4 before backward()" in micro["diagnosis"]
    uneven = one("fn_ignores_grad_output", "uneven:3")
    assert (
        "the backward ignores its incoming gradient" in uneven["diagnosis"] and "n_i/N" in uneven["diagnosis"]
    )


def test_a_wrong_forward_is_a_mismatch_named_apart_from_the_gradient():
    r = one("fn_wrong_forward")
    assert r["status"] == "mismatch" and r["loss_agree"] is False
    assert r["rel_err"] <= r["tol"]  # its backward is the mean's, right
    assert r["diagnosis"] == (
        f"the forward is wrong: its loss is {N}.000x the reference loss: a sum where a mean over n={N} "
        "was meant?; the gradient agrees"
    )


def test_a_backward_wrong_in_one_parameter_is_named_there():
    r = one("fn_missing_two")
    assert r["status"] == "mismatch" and r["loss_agree"]
    assert r["diagnosis"].startswith(
        "w is 0.500x its reference: a missing factor 2 (d/dr r^2 = 2r)?; b agrees"
    )


@pytest.mark.parametrize(
    ("problem", "sizes", "says"),
    [
        (
            "fn_inplace_saved",
            {"n": N, "d": 5, "h": 7},
            "FunctionError: TanhLayer.backward raised RuntimeError: one of the variables needed for "
            "gradient computation has been modified by an inplace operation",
        ),
        (
            "fn_wrong_count",
            {"n": N, "d": 5},
            "FunctionError: ThreeGradients.backward raised RuntimeError: function ThreeGradientsBackward "
            "returned an incorrect number of gradients (expected 4, got 3) (function_wrong_count.py:",
        ),
        (
            "fn_wrong_shape",
            {"n": N, "d": 5},
            "FunctionError: ColumnGradient.backward raised RuntimeError: Function ColumnGradientBackward "
            "returned an invalid gradient at index 1 - got [5, 1] but expected shape compatible with [5] "
            "(function_wrong_shape.py:",
        ),
    ],
)
def test_an_exception_from_backward_is_the_error_in_one_line_naming_the_function(problem, sizes, says):
    for pattern in ("full", "retain:2"):
        r = one(problem, pattern, **sizes)
        assert r["status"] == "error" and r["error"].startswith(says), r["error"]
        assert "\n" not in r["error"]


def test_the_inplace_error_points_at_the_users_backward():
    r = one("fn_inplace_saved", n=N, d=5, h=7)
    assert r["error"].endswith("(function_correct.py:" + r["error"].rsplit(":", 1)[1])


@pytest.mark.parametrize("problem", ["fn_declared_no_float64", "fn_raises_in_float64"])
def test_a_function_without_float64_has_its_twin_skipped_with_the_reason(problem):
    for dtype in ("float32", "bfloat16"):
        r = one(problem, "microbatch:4", dtype)
        assert r["status"] == "ok" and r["f64_checked"] is False
        assert r["f64_rel_err"] is None
    declared, raised = one("fn_declared_no_float64"), one("fn_raises_in_float64")
    assert declared["f64_note"].startswith("the Function has no float64 (function_dtypes: float32, bfloat16")
    assert raised["f64_note"] == (
        "the float64 twin raised FunctionError: Float32Kernel.forward raised TypeError: kernel compiled "
        "for float32, bfloat16 and float16 only"
    )
    # a dtype the Function declares it has not is skipped, with why; one it only fails in is an error
    reason = Cell("fn_declared_no_float64", "function", dtype="float64", n=N, d=5).skip_reason()
    declared = "float32, bfloat16, float16"
    assert reason == f"the Function of 'fn_declared_no_float64' runs in {declared} only (function_dtypes)"
    assert one("fn_raises_in_float64", dtype="float64")["status"] == "error"


def test_a_problem_without_function_loss_skips_the_method_with_the_reason():
    assert Cell("linear", "function", n=8, d=2).skip_reason() == "problem 'linear' has no function_loss"


def test_function_is_timed_profiled_and_measured_like_the_built_ins():
    cells = [
        Cell("softmax", m, n=256, d=8, c=16, pattern="microbatch:2")
        for m in ("manual", "autograd", "function")
    ]
    records = {r["method"]: r for r in run_family(cells, timing=TINY_TIMING)}
    f = records["function"]
    assert f["status"] == "ok" and f["time_median_s"] > 0 and f["samples"] == TINY_TIMING.rounds
    assert f["vs_manual"] > 0 and f["peak_bytes"] > 0 and f["peak_bytes_kind"] == "torch_live_tensors"
    assert f["kernels_per_step"] > 0
    assert f["bound"] is not None or f["profile_note"].startswith("disturbed")  # a busy machine says so
    assert f["bytes_moved"] == records["manual"]["bytes_moved"] == (256 * 8 + 8 * 16 + 16) * 4 + 8 * 256


def test_labels_stay_integers_in_every_dtype():
    from harness.family import Family
    from harness.patterns import parse_pattern
    from harness.problems import get_problem

    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        f = Family.build(
            get_problem("softmax")(n=32, d=4, c=5), dtype, parse_pattern("full"), 0, torch.device("cpu")
        )
        assert f.data["y"].dtype == torch.int64 and f.data["X"].dtype == dtype
        assert f.truth.twin[2]["y"].dtype == torch.int64


def test_chunks_summed_in_half_precision_are_named_as_rounding_not_the_formula():
    # 200 chunks of 500 rows: bfloat16's gradient off by 5%, float16's loss past 65504
    bf16 = one("fn_half_accumulator", dtype="bfloat16", n=100_000, d=8)
    assert bf16["status"] == "mismatch" and bf16["f64_rel_err"] < 1e-10
    said = bf16["diagnosis"]  # its forward's loss is off too, and said first
    assert "the float64 twin agrees (rel_err " in said
    assert "the formula is right, its rounding in bfloat16 is not (a long sum accumulated in bfloat16" in said
    fp16 = one("fn_half_accumulator", dtype="float16", n=100_000, d=8)
    assert fp16["diagnosis"] == (
        "the forward is wrong: it returned a non-finite loss (inf): overflow past float16's largest number, "
        "65504: a long sum accumulated in float16 rather than float32?; the gradient agrees"
    )
    # the same chunks summed in float32 agree
    assert one("fn_float32_accumulator", dtype="bfloat16", n=100_000, d=8)["status"] == "ok"
