"""Planted bugs, written as plugins, are flagged as mismatches with the right diagnosis."""

import pytest

from harness import Cell, run_family
from harness.plugins import load_plugin
from helpers import NO_TIMING, PLUGINS

load_plugin(PLUGINS / "planted_bugs.py")

N, D, H, K = 64, 5, 7, 3  # n, k and 2 distinct, so each factor has one reading


def flagged(problem, method="manual", pattern="full", dtype="float32", **sizes):
    sizes = sizes or {"n": N, "d": D}
    (r,) = run_family(
        [Cell(problem, method, pattern=pattern, dtype=dtype, seed=7, **sizes)], timing=NO_TIMING
    )
    assert r["status"] == "mismatch", r
    assert r["agree"] is False
    return r


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sum_for_mean_is_n_times(dtype):
    r = flagged("bug_sum_for_mean", dtype=dtype)
    assert r["diagnosis"].startswith(f"{N}.000x the reference: a sum where a mean over n={N} was meant?")
    assert "wrong in float64 too" in r["diagnosis"]


def test_missing_two_is_half():
    r = flagged("bug_missing_two")
    assert r["diagnosis"].startswith("0.500x the reference: a missing factor 2")


def test_forgotten_zero_is_k_times():
    r = flagged("linear", method="autograd", pattern=f"forgotten_zero:{K}")
    assert r["diagnosis"].startswith(f"{K}.000x the reference: k={K} accumulations not zeroed")


def test_forgotten_zero_in_manual_buffers_is_k_times():
    r = flagged("linear", method="manual", pattern=f"forgotten_zero:{K}")
    assert r["diagnosis"].startswith(f"{K}.000x the reference: k={K} accumulations not zeroed")


def test_unscaled_microbatches_are_k_times():
    r = flagged("linear", method="autograd", pattern=f"unscaled_microbatch:{K}", n=63, d=D)
    assert r["diagnosis"].startswith(f"{K}.000x the reference: k={K} accumulations not zeroed or not scaled")


def test_double_backward_is_twice():
    r = flagged("linear", method="double_backward")
    assert r["diagnosis"].startswith("2.000x the reference: a second backward through a retained graph")


def test_wrong_sign():
    r = flagged("bug_wrong_sign")
    assert r["cosine"] == pytest.approx(-1.0)
    assert r["diagnosis"].startswith("opposite sign")


def test_mlp_activation_derivative_at_output():
    r = flagged("bug_mlp_activation", n=N, d=D, h=H)
    # the output layer's gradient is right; everything upstream of tanh' is wrong
    assert r["diagnosis"].startswith("wrong direction")
    assert "disagrees in W1, b1" in r["diagnosis"]
    assert "agrees in W2, b2" in r["diagnosis"]


@pytest.mark.parametrize("pattern", ["full", f"microbatch:{K - 1}", f"nozero:{K}"])
def test_the_correct_twins_agree(pattern):
    # the same sizes and seeds, the correct gradient: the flags above are the bugs, not noise
    for problem, sizes in [("linear", {"n": N, "d": D}), ("mlp", {"n": N, "d": D, "h": H})]:
        cells = [Cell(problem, m, pattern=pattern, seed=7, **sizes) for m in ("manual", "autograd")]
        for r in run_family(cells, timing=NO_TIMING):
            assert r["status"] == "ok", r["diagnosis"]
