"""The seed post's printed numbers, computed through run_family (the post's experiments, exactly)."""

import pytest

from harness import Cell, run_family
from harness.plugins import load_plugin
from helpers import NO_TIMING, ROOT


def by_method(cells):
    return {r["method"]: r for r in run_family(cells, timing=NO_TIMING)}


def test_chain_at_ones_gives_six():
    # x = [1, 1, 1]; y = x + 2; z = 3 y^2; z.mean().backward() -> x.grad = [6, 6, 6]
    records = by_method([Cell("chain", m, n=3, data="post") for m in ("manual", "autograd", "numpy")])
    for r in records.values():
        assert r["grad_preview"] == [6.0, 6.0, 6.0]
        assert r["status"] == "ok"


def test_vjp_is_y_backward_v():
    # x = [1.1] * 3, y = x * 2^11 = 2252.8; y.backward(v) with v = [0.1, 1.0, 0.0001]
    records = by_method([Cell("vjp", m, n=3, data="post") for m in ("manual", "autograd", "func")])
    for r in records.values():
        assert r["output_preview"] == pytest.approx([2252.8] * 3, rel=1e-6)
        assert r["grad_preview"] == pytest.approx([204.8, 2048.0, 0.2048], rel=1e-6)
        assert r["status"] == "ok"


def test_weights_updated_three_times_with_zeroing():
    # model_output = (weights * 3).sum(); backward; weights -= 0.1 * grad; grad.zero_()
    cells = [
        Cell("weightsum", m, pattern="zero", n=4, data="post", mode="train", steps=3, lr=0.1)
        for m in ("autograd", "manual")
    ]
    for r in by_method(cells).values():
        assert r["final_params"] == pytest.approx([0.1] * 4, abs=1e-6)
        assert r["final_loss"] == pytest.approx(4.8, rel=1e-6)  # the last model_output printed
        assert [row["params"][0] for row in r["trajectory"]] == pytest.approx([0.7, 0.4, 0.1], abs=1e-6)


def test_scalar_backprop_loop():
    # x = 1, y = 2, w = 1, lr 0.01: loss 1.0, then 0.9604, then every 10 epochs of the loop
    printed = [0.9604, 0.6412, 0.4281, 0.2858, 0.1908, 0.1274, 0.0850, 0.0568, 0.0379, 0.0253]
    r = by_method([Cell("scalar", "autograd", data="post", mode="train", steps=102, lr=0.01)])["autograd"]
    losses = [row["loss"] for row in r["trajectory"]]
    assert losses[0] == 1.0
    assert round(losses[1], 4) == 0.9604
    # the post's loop first steps with the zeroed gradient, so its epoch e prints step 1 + e
    assert [round(losses[1 + e], 4) for e in range(0, 100, 10)] == printed


def test_post_numpy_gradient_descent_is_caught_as_n_times_too_large():
    load_plugin(ROOT / "experiments" / "plugins" / "post_numpy.py")
    cell = Cell("linear1d_post", "numpy", n=4, data="post", mode="train", steps=20, lr=0.01)
    r = by_method([cell])["numpy"]
    # the post prints w after the update at epochs 1, 3, ..., 11
    w = [row["params"][0] for row in r["trajectory"]]
    assert [f"{w[e]:.3f}" for e in range(0, 12, 2)] == ["1.200", "1.872", "1.980", "1.997", "1.999", "2.000"]
    assert r["status"] == "mismatch"
    assert r["scale"] == pytest.approx(4.0, rel=1e-6)
    assert r["diagnosis"].startswith("4.000x the reference: a sum where a mean over n=4 was meant?")
    assert r["f64_rel_err"] == pytest.approx(3.0)  # wrong in float64 too: the formula itself


def test_autograd_gradient_descent():
    printed_w = [0.300, 1.665, 1.934, 1.987, 1.997]
    printed_loss = [30.0, 1.16278565, 0.04506890, 0.00174685, 0.00006770]
    cells = [
        Cell("linear1d", m, n=4, data="post", mode="train", steps=50, lr=0.01)
        for m in ("autograd", "manual", "numpy")
    ]
    for r in by_method(cells).values():
        rows = [r["trajectory"][e] for e in range(0, 50, 10)]
        assert [round(row["params"][0], 3) for row in rows] == printed_w
        # the post prints float32 losses to 8 decimals
        assert [row["loss"] for row in rows] == pytest.approx(printed_loss, rel=1e-6, abs=5e-9)
        assert r["status"] == "ok"
