"""`harness.check`: a user's own gradient checked from their pytest, in two lines.

def test_my_gradient():
    harness.check("mine", n=1000, d=8).assert_ok()
"""

import pytest

import harness
from harness.plugins import load_plugin
from helpers import PLUGINS

load_plugin(PLUGINS / "function_correct.py")
load_plugin(PLUGINS / "function_ignores_grad_output.py")


def test_a_users_test_suite_checks_its_function_in_two_lines():
    harness.check("linear_function", n=300, d=4, dtypes=["float32", "bfloat16"]).assert_ok()


def test_a_broken_backward_fails_the_users_test_with_each_cell_and_its_diagnosis():
    result = harness.check("fn_ignores_grad_output", n=300, d=4)
    assert not result.ok
    with pytest.raises(AssertionError) as raised:
        result.assert_ok()
    text = str(raised.value)
    first, *cells = text.splitlines()
    # the hand-written manual gradient (from Linear) agrees; every `function` cell fails
    failing = result.failures
    assert set(failing["method"]) == {"function"} and len(failing) == len(cells) == 4
    assert first == f"harness.check('fn_ignores_grad_output'): 4 of {len(result.records)} cells failed"
    assert any(
        "float32 uneven:3 function on cpu: mismatch:" in line and "ignores its incoming gradient" in line
        for line in cells
    )


def test_the_default_grid_is_the_problems_own_gradients_whole_and_in_uneven_batches():
    r = harness.check("softmax", n=30, d=3, c=4).records
    assert set(r["method"]) == {"manual", "function", "numpy"}
    assert set(r["pattern"]) == {"full", "uneven:3"} and set(r["dtype"]) == {"float64", "float32"}
    assert r["time_median_s"].isna().all()  # agreement only, by default: seconds
    assert (r["status"] == "ok").all()


def test_timing_is_there_when_asked_for():
    r = harness.check(
        "linear",
        n=200,
        d=3,
        methods=["manual", "autograd"],
        patterns=["full"],
        timing={"rounds": 3, "min_run_time_s": 0.003, "profile": False},
    )
    assert r.ok and (r.records["time_median_s"] > 0).all() and r.records["vs_manual"].notna().all()


def test_a_problem_registered_by_an_imported_module_is_visible(tmp_path, monkeypatch):
    (tmp_path / "my_problems.py").write_text(
        "from harness import register_problem\n"
        "from harness.problems.linear import Linear\n\n"
        "@register_problem\n"
        "class MyLinear(Linear):\n"
        "    name = 'my_linear_for_check'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_problems

    assert harness.check(my_problems.MyLinear, n=50, d=2).ok
    assert harness.check("my_linear_for_check", n=50, d=2).ok


def test_a_mistake_is_one_line_naming_the_key():
    with pytest.raises(
        ValueError, match=r"^harness.check\('linear'\): d: missing: problem 'linear' needs d$"
    ):
        harness.check("linear", n=10)
    with pytest.raises(ValueError, match=r"^harness.check\('linear'\): methods\[0\]: unknown method 'nope'"):
        harness.check("linear", n=10, d=2, methods=["nope"])
    with pytest.raises(ValueError, match=r"'rmsnorm' is a layer: harness.check_layer\('rmsnorm', ...\)$"):
        harness.check("rmsnorm", n=10, d=2)
    with pytest.raises(ValueError, match=r"unknown problem 'nope'"):
        harness.check("nope", n=10)
