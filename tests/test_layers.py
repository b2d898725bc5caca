"""A layer's Function on its own (harness.check_layer, harness.layers): correct Functions agree in
every dtype and layout, written plainly or unusually; each planted bug is flagged in words that
name the input that is wrong, and passes where it cannot show."""

import pytest
import torch

import harness
from harness import Cell, run_family
from harness.layers.layouts import column_major, fold_of
from harness.plugins import load_plugin
from harness.runs.check_layer import WastedWork
from helpers import NO_TIMING, PLUGINS

for plugin in sorted(PLUGINS.glob("layer_*.py")):
    load_plugin(plugin)

DTYPES = ["float64", "float32", "bfloat16", "float16"]
SIZES = {
    "rmsnorm": {"n": 12, "d": 16},
    "swiglu": {"n": 12, "d": 8, "h": 16},
    "layer_layernorm": {"n": 12, "d": 16},
    "layer_rmsnorm_float64_inside": {"n": 12, "d": 16},  # float64 inside a bf16 call, dx column-major
    "layer_swiglu_split": {"n": 12, "d": 8, "h": 16},  # one weight [W1 W3], cut in two inside
    "layer_rotary": {"n": 12, "d": 16},  # constant tables given to the Function; no rows to fold
}


@pytest.mark.parametrize("layer", list(SIZES))
def test_correct_functions_agree_in_every_dtype_and_layout(layer):
    for seed in range(2):
        result = harness.check_layer(
            layer, dtypes=DTYPES, methods=["function", "autograd"], seed=seed, **SIZES[layer]
        )
        assert result.ok, result.lines()
        r = result.records
        assert sorted(set(r["dtype"])) == sorted(DTYPES) and len(r) == 2 * len(DTYPES)
        assert (r["kind"] == "layer").all()
        # the backward scales by grad_output, the forward's value agrees, the formula is right in float64
        assert (r["grad_output_scale"] - 1).abs().max() <= r["tol"].max()
        assert r["loss_agree"].all()
        assert r["f64_checked"].all() and (r["f64_rel_err"] < 1e-5).all()


@pytest.mark.parametrize("n", [1, 7, 300])  # no fold (one row), a prime (no fold), foldable
def test_correct_rmsnorm_agrees_at_awkward_sizes(n):
    for d in (1, 2, 64):  # d = 1: x / |x|, whose dx is nearly nothing: all cancellation
        harness.check_layer("rmsnorm", n=n, d=d, dtypes=["float64", "float32", "bfloat16"]).assert_ok()


def user_make(gen, n, d):
    return {
        "x": torch.randn(n, d, generator=gen, device=gen.device),
        "g": 1 + 0.5 * torch.randn(d, generator=gen, device=gen.device),
    }


def user_reference(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * g


def test_check_layer_takes_a_function_its_reference_and_make():
    from harness.layers.rmsnorm import RMSNormFunction

    result = harness.check_layer(RMSNormFunction.apply, user_reference, user_make, n=[6, 12], d=8).assert_ok()
    assert set(result.records["problem"]) == {"RMSNormFunction"}  # named after the Function
    assert sorted(set(result.records["n"])) == [6, 12]
    assert set(result.records["dtype"]) == {"float64", "float32", "bfloat16"}


def test_check_layer_names_a_wrong_input_of_a_users_function():
    rstd_constant = load_plugin(PLUGINS / "layer_rmsnorm_rstd_constant.py")
    import sys

    fn = sys.modules[rstd_constant].RMSNormRstdConstant.apply
    result = harness.check_layer(fn, user_reference, user_make, n=12, d=16, dtypes=["float32"])
    assert not result.ok
    (line,) = result.lines()
    assert "disagrees in x (" in line and "agrees in g" in line


def one(layer: str, dtype: str, **kw) -> dict:
    (r,) = harness.check_layer(layer, dtypes=[dtype], **SIZES.get(layer, {}), **kw).records.to_dict("records")
    return r


RSTD = {"n": 12, "d": 16}


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsnorm_with_rstd_taken_as_constant_disagrees_in_x_alone(dtype):
    r = one("layer_rmsnorm_rstd_constant", dtype, **RSTD)
    assert r["status"] == "mismatch"
    assert r["diagnosis"].startswith("disagrees in x (") and "agrees in g" in r["diagnosis"]
    if dtype != "float64":  # the twin tells a wrong formula from rounding
        assert "wrong in float64 too (rel_err of x" in r["diagnosis"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_backward_using_ones_for_grad_output_is_named(dtype):
    r = one("layer_ones_grad_output", dtype, **RSTD)
    assert r["status"] == "mismatch"
    assert r["diagnosis"].startswith("the backward ignores grad_output")
    assert "disagrees in x (" in r["diagnosis"] and ", g (" in r["diagnosis"]
    assert r["grad_output_scale"] == pytest.approx(1 / 4, rel=1e-2)  # 4 x grad_output, the same gradient


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_view_on_a_noncontiguous_grad_output_is_named_with_its_layout(dtype):
    r = one("layer_view_grad_output", dtype, **RSTD)
    assert r["status"] == "error"
    assert r["error"].startswith("FunctionError: with the rows folded as (B, T, ...), non-contiguous")
    assert "RMSNormView.backward raised RuntimeError: view size is not compatible" in r["error"]
    assert "layer_view_grad_output.py:" in r["error"]  # the line to fix
    assert r["agree"]  # contiguous, its values are right
    # where it cannot show: contiguous inputs, folded or not, and a 2-d grad_output whatever its strides
    ok = harness.check_layer(
        "layer_view_grad_output", dtypes=[dtype], layouts=["noncontiguous", "folded", "no-grad"], **RSTD
    )
    assert ok.ok, ok.lines()


@pytest.mark.parametrize("dtype", DTYPES)
def test_swiglu_with_silu_derivative_taken_as_sigmoid_disagrees_in_x_and_w1(dtype):
    r = one("layer_swiglu_silu_sigmoid", dtype, n=12, d=8, h=16)
    assert r["status"] == "mismatch"
    assert r["diagnosis"].startswith("disagrees in x (") and ", W1 (" in r["diagnosis"]
    assert "agrees in W3" in r["diagnosis"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_gradient_computed_for_an_input_that_needs_none_is_noted_not_flagged(dtype):
    # autograd drops a gradient a backward returns for a tensor that needs none (checked below):
    # the result is right, so the method agrees; the wasted work is noted, and warned in a check
    with pytest.warns(WastedWork):
        r = one("layer_stray_gradient", dtype, n=12, d=8, h=16)
    assert r["status"] == "ok" and r["agree"] and r["rel_err"] <= r["tol"]
    assert r["diagnosis"].startswith("wasted work: a gradient computed for an input that needs none")
    for name in ("x", "W1", "W3"):
        assert f"{name} by SwiGLUStray.backward" in r["diagnosis"]
    assert "autograd drops it, so the result is right" in r["diagnosis"]
    with pytest.warns(WastedWork, match="SwiGLUStray.backward") as warned:
        result = harness.check_layer("layer_stray_gradient", dtypes=[dtype], n=12, d=8, h=16)
    assert result.ok and len(warned) == 1 and len(result.notes()) == len(result.noted) >= 1
    # where it cannot show (every input requires a gradient) nothing is noted
    ok = harness.check_layer(
        "layer_stray_gradient", dtypes=[dtype], layouts=["noncontiguous", "folded"], n=12, d=8, h=16
    )
    assert ok.ok and ok.noted.empty, ok.lines()


def test_autograd_drops_a_gradient_returned_for_a_tensor_that_needs_none():
    class Stray(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x * w

        @staticmethod
        def backward(ctx, dy):
            x, w = ctx.saved_tensors
            return dy * w, dy * x  # a gradient for w whether it needs one or not

    x, w = torch.randn(5, requires_grad=True), torch.randn(5)
    Stray.apply(x, w).sum().backward()
    assert w.grad is None and torch.equal(x.grad, w)


def test_an_input_not_requiring_a_gradient_gets_none_and_the_rest_still_agree():
    from harness.layers.layouts import run
    from harness.layers.rmsnorm import RMSNormFunction

    x, g = torch.randn(6, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    dy = torch.randn(6, 4, dtype=torch.float64)
    frozen = run(lambda x, g: RMSNormFunction.apply(x, g), {"x": x, "g": g}, [dy], rows=("x",), frozen="g")
    whole = run(lambda x, g: RMSNormFunction.apply(x, g), {"x": x, "g": g}, [dy], rows=("x",))
    assert frozen.grads["g"] is None and not frozen.stray
    torch.testing.assert_close(frozen.grads["x"], whole.grads["x"], rtol=0, atol=0)


def test_layouts_keep_the_values_and_break_the_strides():
    t = torch.arange(24.0).reshape(2, 3, 4)
    c = column_major(t)
    assert torch.equal(c, t) and not c.is_contiguous() and c.stride() == (1, 2, 6)
    with pytest.raises(RuntimeError):
        c.view(-1, 4)  # what a kernel's .view(-1, d) meets
    v = column_major(torch.arange(5.0))
    assert torch.equal(v, torch.arange(5.0)) and v.stride() == (2,)
    assert (fold_of(12), fold_of(7), fold_of(1), fold_of(9)) == (2, None, None, 3)


def test_an_exception_in_a_forward_names_the_function_in_one_line():
    class Broken(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, g):
            raise ValueError("shapes\nwith a hint on the next line")

        @staticmethod
        def backward(ctx, dy):
            return dy, None

    result = harness.check_layer(Broken.apply, user_reference, user_make, n=4, d=3, dtypes=["float32"])
    (error,) = result.records["error"]
    assert error.startswith("FunctionError: test_an_exception_in_a_forward_names_the_function_in_one_line")
    assert ".Broken.forward raised ValueError: shapes with a hint on the next line (test_layers.py:" in error
    assert "\n" not in error


def test_a_layer_cell_runs_through_run_family_and_a_problem_keeps_its_kind():
    cells = [Cell("rmsnorm", m, dtype="bfloat16", n=8, d=4) for m in ("function", "autograd")]
    records = run_family(cells, timing=NO_TIMING)
    assert [r["method"] for r in records] == ["function", "autograd"]
    assert all(r["kind"] == "layer" and r["status"] == "ok" and r["pattern"] == "full" for r in records)
    (problem,) = run_family([Cell("linear", "manual", n=8, d=2)], timing=NO_TIMING)
    assert problem["kind"] == "problem"


def test_a_layer_cell_says_what_cannot_run():
    assert "pattern full only" in Cell("rmsnorm", "function", pattern="microbatch:2", n=8, d=4).skip_reason()
    assert Cell("rmsnorm", "compiled", n=8, d=4).skip_reason() is None
    with pytest.raises(ValueError, match="unknown method 'manual' for a layer"):
        Cell("rmsnorm", "manual", n=8, d=4).skip_reason()
    with pytest.raises(ValueError, match="needs h >= 1"):
        Cell("swiglu", "function", n=8, d=4).skip_reason()


def test_problems_and_layers_share_one_namespace():
    from harness.registry import RegistryClash

    with pytest.raises(RegistryClash, match="share one namespace"):

        @harness.register_layer
        class Linear(harness.Layer):
            name = "linear"

    with pytest.raises(RegistryClash, match="share one namespace"):

        @harness.register_problem
        class RMS(harness.Problem):
            name = "rmsnorm"


def test_bad_grid_keys_are_one_line_errors():
    with pytest.raises(ValueError, match=r"harness.check_layer\('rmsnorm'\): dtypes: unknown float8"):
        harness.check_layer("rmsnorm", n=4, d=2, dtypes=["float8"])
    with pytest.raises(ValueError, match="sizes: give d"):
        harness.check_layer("rmsnorm", n=4)
    with pytest.raises(ValueError, match="unknown key t"):
        harness.check_layer(lambda x: x, lambda x: x, lambda gen, n: {}, n=4, t=3)


def test_a_function_computing_in_float32_inside_a_float64_call_is_told_so():
    from harness.layers.rmsnorm import EPS

    class Float32Inside(torch.autograd.Function):  # as a kernel with no float64 path
        @staticmethod
        def forward(ctx, x, g):
            xf = x.float()
            rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)
            ctx.save_for_backward(xf, g, rstd)
            return (xf * rstd * g.float()).to(x.dtype)

        @staticmethod
        def backward(ctx, dy):
            xf, g, rstd = ctx.saved_tensors
            xhat, gdy = xf * rstd, dy.float() * g.float()
            dx = rstd * (gdy - xhat * (gdy * xhat).mean(-1, keepdim=True))
            dg = (dy.float() * xhat).sum(0).to(g.dtype) if ctx.needs_input_grad[1] else None
            return (dx.to(dy.dtype) if ctx.needs_input_grad[0] else None), dg

    result = harness.check_layer(Float32Inside.apply, user_reference, user_make, n=12, d=16, dtypes=DTYPES)
    by_dtype = result.records.set_index("dtype")
    # in float32 and below it agrees, its float64 twin too: to float32's rounding, a right formula
    assert by_dtype.loc[["float32", "bfloat16", "float16"], "status"].eq("ok").all()
    float64 = by_dtype.loc["float64"]
    assert float64["status"] == "mismatch"
    assert "computed in float32 inside a float64 call?" in float64["diagnosis"]


def test_a_layer_record_is_complete():
    (r,) = run_family([Cell("swiglu", "function", dtype="float32", n=6, d=4, h=8)], timing=NO_TIMING)
    for column in (
        "cell_id", "kind", "status", "agree", "rel_err", "max_abs_err", "scale", "cosine", "tol", "condition",
        "f64_rel_err", "f64_checked", "loss_rel_err", "loss_tol", "loss_agree", "grad_output_scale",
        "grad_preview", "output_preview", "bytes_moved", "setup_s", "family_wall_s", "device_name", "threads",
        "started_at", "finished_at",
    ):  # fmt: skip
        assert r[column] is not None, column
    assert r["diagnosis"] is None and r["error"] is None
    assert r["bytes_moved"] == (2 * 6 * 4 + 4 * 4 * 8 + 2 * 6 * 8 + 2 * 4 * 8 + 6 * 4) * 4
    assert len(r["grad_preview"]) == 8 and len(r["output_preview"]) == 8


@harness.register_layer
class RMSNormWithoutFloat64(harness.layers.rmsnorm.RMSNorm):
    name = "test_rmsnorm_without_float64"
    function_dtypes = ("float32", "bfloat16")  # a kernel with no float64 path


def test_a_function_without_float64_has_its_twin_skipped_and_says_so():
    result = harness.check_layer(RMSNormWithoutFloat64, n=6, d=4, dtypes=DTYPES, devices=["cpu", "cuda"])
    assert result.ok, result.lines()
    r = result.records
    assert sorted(r["dtype"]) == ["bfloat16", "float32"]
    assert not r["f64_checked"].any() and r["f64_note"].str.contains("the Function has no float64").all()
    skipped = dict(result.skipped)
    assert "function_dtypes" in skipped["test_rmsnorm_without_float64 float64 function on cpu"]
    if not torch.cuda.is_available():
        assert skipped["test_rmsnorm_without_float64 float32 function on cuda"] == "no cuda device here"


def test_a_backward_assuming_row_major_strides_is_named_with_its_layout():
    from harness.layers.rmsnorm import RMSNormFunction

    class RowMajorAssumed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, g):
            y = RMSNormFunction.forward(ctx, x, g)
            return y

        @staticmethod
        def backward(ctx, dy):
            n, d = dy.reshape(-1, dy.shape[-1]).shape
            # the storage read as if grad_output were row-major (a kernel indexing i * d + j)
            flat = dy.as_strided((n, d), (d, 1)).reshape(dy.shape)
            return RMSNormFunction.backward(ctx, flat)[:2]

    result = harness.check_layer(
        RowMajorAssumed.apply,
        user_reference,
        user_make,
        n=12,
        d=16,
        dtypes=["float32"],
        layouts=["noncontiguous"],
    )
    (diagnosis,) = result.records["diagnosis"]
    assert diagnosis.startswith(
        "with non-contiguous inputs and grad_output (column-major copies), it disagrees in x"
    )
    assert "g (" in diagnosis  # both gradients read the scrambled grad_output
    contiguous = harness.check_layer(
        RowMajorAssumed.apply, user_reference, user_make, n=12, d=16, dtypes=["float32"], layouts=["folded"]
    )
    assert contiguous.ok, contiguous.lines()
