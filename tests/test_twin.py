"""The float64 twin tells a wrong formula from a formula computed in a lower precision: a
`.float()` inside a Function or a float32 accumulator is float64's loss alone, said as such; a
formula off by a relative 1e-5, as small as float32's rounding here, stays a wrong formula in
every dtype."""

import math

import pytest
import torch

from harness import Cell, run_family
from harness import twin as tw
from harness.agreement import Agreement, Part
from harness.plugins import load_plugin
from helpers import NO_TIMING, PLUGINS

load_plugin(PLUGINS / "function_lower_precision.py")

DTYPES = ["float64", "float32", "bfloat16"]
FLOAT32 = "in float64 it computes in float32 somewhere: a `.float()` or a float32 accumulator? (rel_err "


def cells(problem: str, n: int) -> dict[str, dict]:
    out = {}
    for dtype in DTYPES:
        (r,) = run_family([Cell(problem, "function", dtype=dtype, n=n, d=8, seed=3)], timing=NO_TIMING)
        out[dtype] = r
    return out


@pytest.mark.parametrize(
    "problem, n",
    [("fn_upcast", 4096), ("fn_float32_chunks", 20_000)],  # 20 chunks of 1000 rows summed in float32
)
def test_a_formula_computing_in_float32_is_a_float64_mismatch_only(problem, n):
    r = cells(problem, n)
    f64 = r["float64"]
    assert f64["status"] == "mismatch"
    assert 1e-10 < f64["f64_rel_err"] < 1e-6  # float32's rounding, not a formula's error
    said = f64["diagnosis"]
    assert FLOAT32 in said and "formula" not in said
    assert "a move of the inputs below float32's resolution is lost" in said
    # the loss is made in float32 too: a float64 user loses it as well, said first
    assert said.startswith("the forward's loss is off by rel_err ")
    for dtype in ("float32", "bfloat16"):
        assert r[dtype]["status"] == "ok", (dtype, r[dtype]["diagnosis"])
        assert r[dtype]["diagnosis"] is None
        assert r[dtype]["rel_err"] <= r[dtype]["tol"]
        assert r[dtype]["f64_checked"] and r[dtype]["f64_rel_err"] > 1e-10  # the twin did see it


def test_a_formula_off_by_1e_5_is_wrong_in_every_dtype():
    r = cells("fn_decayed", 4096)
    # as small as float32's rounding of a sum of 4096 terms: its size alone cannot tell
    assert r["float32"]["f64_rel_err"] < r["float32"]["tol"]
    assert r["float64"]["status"] == "mismatch"
    assert r["float64"]["diagnosis"].endswith(
        "; wrong in float64 too (rel_err 7.7e-06): the formula, not rounding"
    )
    for dtype in ("float32", "bfloat16"):
        assert r[dtype]["status"] == "mismatch", dtype
        assert r[dtype]["rel_err"] <= r[dtype]["tol"]  # hidden by rounding in the cell's own dtype
        said = r[dtype]["diagnosis"]
        assert said.startswith("the formula is wrong: in float64 rel_err 7.7e-06 over 1.0e-10, hidden here")
        assert "disagrees in w" in said and "agrees in b" in said
    assert not any("somewhere" in r[d]["diagnosis"] for d in DTYPES)


def test_a_move_below_half_a_float32_ulp_leaves_float32_copies_unmoved():
    x32 = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    x = {"X": x32.double(), "y": torch.arange(3)}
    m = tw.moved(x)
    assert torch.equal(m["y"], x["y"])  # labels are indices
    assert (m["X"] != x["X"]).all()  # every float64 number moved ...
    assert torch.equal(m["X"].float(), x32)  # ... and rounds back to the same float32
    assert ((m["X"] / x["X"] - 1).abs() == tw.MOVE).all()


def agreement(rel_err: float, parts: dict[str, float]) -> Agreement:
    per = {k: Part(e, 1.0, 1.0, 0.0, 1e-10) for k, e in parts.items()}
    return Agreement(rel_err, rel_err, 1.0, 1.0, 1e-10, per_param=per)


TOLS = {"float32": 1.5e-5, "half precision": 2.3e-2}


def test_the_judge_names_the_finest_precision_that_holds_the_error_only_when_the_move_is_lost():
    def never(keys):
        raise AssertionError("an error past every rounding needs no move")

    far = tw.judge(agreement(0.5, {"w": 0.5, "b": 0.0}), TOLS, never)
    assert far.level is None and not far.binds(torch.float64)

    twin = agreement(1e-6, {"w": 1e-6, "b": 0.0})
    asked = []

    def lost(keys):
        asked.append(keys)
        return dict.fromkeys(keys, 1.0)

    p = tw.judge(twin, TOLS, lost)
    assert asked == [["w"]]  # only the parameters the twin gets wrong are moved
    assert (p.level, p.tol) == ("float32", 1.5e-5)
    assert p.binds(torch.float64) and not p.binds(torch.float32) and not p.binds(torch.bfloat16)
    half = tw.judge(agreement(1e-3, {"w": 1e-3, "b": 0.0}), TOLS, lost)
    assert half.level == "half precision" and half.binds(torch.float32) and not half.binds(torch.float16)
    # one wrong parameter that follows the move is computed in float64: a formula
    both = agreement(1e-6, {"w": 1e-6, "b": 1e-6})
    assert tw.judge(both, TOLS, lambda keys: {"w": 1.0, "b": 1e-5}).level is None
    # no move at all on either side tells nothing: a formula, as before the move
    assert tw.judge(twin, TOLS, lambda keys: dict.fromkeys(keys, math.nan)).level is None
