"""The `fused` method: one pass over X, and the same gradient as every other method."""

import os
import subprocess
import sys

import pytest
import torch

import harness
from harness import Cell, run_family
from harness.methods import get_method, method_names
from harness.methods.fused import LINKS, SKIP_REASON, blocked_grad, triton_available
from harness.problems import get_problem
from helpers import NO_TIMING


def _inputs(problem, n, d, dtype=torch.float64, seed=0):
    params, data = get_problem(problem)(n=n, d=d).make(torch.Generator().manual_seed(seed))
    return [t.to(dtype) for t in (data["X"], data["y"], params["w"], params["b"])]


def test_registered_on_import():
    assert "fused" in method_names()
    assert get_method("fused").hand_written
    assert harness.methods.fused.LINKS.keys() == {"linear", "logistic"}


@pytest.mark.parametrize("rows", [None, 1, 2])
def test_linear_by_hand(rows):
    # z = X w + b = [1, 3, 5]; g = 2/3 (z - y) = [2/3, 2, 10/3]
    # dJ/dw = X^T g = [2/3 + 6 + 50/3, 4/3 + 8 + 20] = [70/3, 88/3];  dJ/db = sum g = 6
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
    y, w, b = torch.zeros(3, dtype=torch.float64), torch.tensor([1.0, 0.0]).double(), torch.zeros(1).double()
    g = blocked_grad(X, y, w, b, LINKS["linear"], rows=rows)
    torch.testing.assert_close(g["w"], torch.tensor([70 / 3, 88 / 3], dtype=torch.float64))
    torch.testing.assert_close(g["b"], torch.tensor([6.0], dtype=torch.float64))


@pytest.mark.parametrize("rows", [None, 1, 2])
def test_logistic_by_hand(rows):
    # z = 0 everywhere, sigmoid(0) = 1/2; y = [1, 0]: g = ([1/2, 1/2] - y) / 2 = [-1/4, 1/4]
    # dJ/dw = X^T g = [-1/4 + 3/4, -2/4 + 4/4] = [1/2, 1/2];  dJ/db = 0
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    y, w, b = torch.tensor([1.0, 0.0]).double(), torch.zeros(2).double(), torch.zeros(1).double()
    g = blocked_grad(X, y, w, b, LINKS["logistic"], rows=rows)
    torch.testing.assert_close(g["w"], torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(g["b"], torch.tensor([0.0], dtype=torch.float64))


@pytest.mark.parametrize("problem", ["linear", "logistic"])
@pytest.mark.parametrize(("n", "d", "rows"), [(1, 3, 256), (1000, 7, 256), (1000, 7, 333), (257, 64, 256)])
def test_blocks_equal_the_manual_gradient(problem, n, d, rows):
    # rows that divide n and rows that leave a short last block, in float64: equal to roundoff
    X, y, w, b = _inputs(problem, n, d)
    expected = get_problem(problem)(n=n, d=d).manual_grad({"w": w, "b": b}, {"X": X, "y": y})
    got = blocked_grad(X, y, w, b, LINKS[problem], rows=rows)
    for k in ("w", "b"):
        assert got[k].shape == expected[k].shape
        torch.testing.assert_close(got[k], expected[k], rtol=1e-12, atol=1e-14)


def test_low_precision_sums_blocks_in_float32():
    # bfloat16 through 40 blocks: the float32 sum of the blocks stays as close as eager's one gemv
    # (measured 1.35e-3 both); summing them in bfloat16 would triple the error (4.2e-3)
    X, y, w, b = _inputs("linear", 10_000, 16, torch.bfloat16)
    p = get_problem("linear")(n=10_000, d=16)
    exact = p.manual_grad(
        *[{k: v.double() for k, v in t.items()} for t in ({"w": w, "b": b}, {"X": X, "y": y})]
    )
    eager = p.manual_grad({"w": w, "b": b}, {"X": X, "y": y})
    got = blocked_grad(X, y, w, b, LINKS["linear"], rows=256)
    assert got["w"].dtype == torch.bfloat16
    err = lambda g: ((g["w"].double() - exact["w"]).norm() / exact["w"].norm()).item()
    assert err(got) <= 1.5 * err(eager)


# n = 12 and 16388 are divisible by 4 (microbatch:4); 16388 is two 8192-row blocks (d=64 fp32)
# and a short third
SWEEP = [
    (n, dtype, pattern)
    for n in (1, 12, 16388)
    for dtype in ("float32", "float64", "bfloat16", "float16")
    for pattern in ("full", "microbatch:4", "nozero:3")
]


@pytest.mark.parametrize(("n", "dtype", "pattern"), SWEEP)
def test_agrees_through_run_family(n, dtype, pattern):
    cells = [
        Cell(problem="linear", method=m, pattern=pattern, dtype=dtype, n=n, d=64) for m in ("manual", "fused")
    ]
    if cells[0].skip_reason():
        pytest.skip(cells[0].skip_reason())
    manual, fused = run_family(cells, timing=NO_TIMING)
    assert fused["status"] == "ok", fused["error"] or fused["diagnosis"]
    assert fused["agree"]
    assert manual["agree"]
    assert fused["f64_rel_err"] < 1e-12  # the float64 formula itself


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize(("problem", "n"), [("logistic", 16388), ("linear", 100_000)])
def test_agrees_at_large_n(problem, n, dtype):
    cells = [
        Cell(problem=problem, method=m, pattern="nozero:3", dtype=dtype, n=n, d=64)
        for m in ("manual", "fused")
    ]
    manual, fused = run_family(cells, timing=NO_TIMING)
    assert (fused["status"], fused["agree"]) == ("ok", True), fused["diagnosis"]
    assert manual["agree"]


def test_reads_less_than_it_allocates_eagerly():
    # per block temporaries: the fused step's live tensors are a block, not vectors of n
    cells = [Cell(problem="linear", method=m, n=100_000, d=64) for m in ("manual", "fused")]
    manual, fused = run_family(cells, timing=NO_TIMING)
    assert fused["peak_bytes_kind"] == "torch_live_tensors"
    assert fused["peak_bytes"] < manual["peak_bytes"] / 4


@pytest.mark.parametrize("problem", ["mlp", "linear1d", "scalar"])
def test_other_problems_are_skipped_with_a_reason(problem):
    assert get_method("fused").skip_reason(get_problem(problem), torch.float32, "cpu") == SKIP_REASON
    sizes = dict.fromkeys(get_problem(problem).sizes, 4)
    (record,) = run_family([Cell(problem=problem, method="fused", **sizes)], timing=NO_TIMING)
    assert record["status"] == "error"
    assert SKIP_REASON in record["error"]


INTERPRETED = """
import torch
import triton.runtime.interpreter as interpreter
# Triton's interpreter holds scalars as 1-element arrays and makes their __index__ int(array), which
# numpy 2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars", triton#9171);
# the fix its maintainers merged (triton#9172), for a Triton that predates it
patch = getattr(interpreter, "_patch_lang_tensor", None)
def patched(tensor, scope):
    patch(tensor, scope)
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))
if patch is not None:
    interpreter._patch_lang_tensor = patched
from harness.methods.fused import LINKS, blocked_grad, triton_grad
from harness.problems import get_problem
for problem in ("linear", "logistic"):
    params, data = get_problem(problem)(n=1000, d=13).make(torch.Generator().manual_seed(0))
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        args = [t.to(dtype) for t in (data["X"], data["y"], params["w"], params["b"])]
        expected = blocked_grad(*[a.double() for a in args], LINKS[problem])
        got = triton_grad(*args, LINKS[problem], programs=3)
        for k in ("w", "b"):
            assert got[k].dtype == dtype
            torch.testing.assert_close(got[k].double(), expected[k], rtol=tol, atol=tol)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
def test_triton_kernel_in_the_interpreter():
    # the CUDA kernel's arithmetic, run by Triton's CPU interpreter: 3 programs striding over
    # tiles, a short last tile, d not a power of two. In a fresh process: TRITON_INTERPRET must
    # be set before anything imports triton. CUDA is hidden from it: the interpreter runs the
    # kernel on CPU tensors; the real kernel has its own test on CUDA below
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize(("problem", "n"), [("linear", 1), ("linear", 100_003), ("logistic", 16388)])
def test_agrees_on_cuda(problem, n, dtype):
    methods = ("manual", "autograd", "fused")
    cells = [Cell(problem=problem, method=m, dtype=dtype, device="cuda", n=n, d=64) for m in methods]
    records = run_family(cells, timing=NO_TIMING)
    for r in records:
        assert (r["status"], r["agree"]) == ("ok", True), (r["method"], r["error"], r["diagnosis"])
