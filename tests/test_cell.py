"""Cells, families and what run_family does with failures."""

from importlib import metadata

import pytest

from harness import Cell, run_family
from harness.env import manifest
from harness.plugins import load_plugin
from harness.schema import COLUMNS
from helpers import NO_TIMING, PLUGINS, TINY_TIMING


def test_cell_id_is_stable_and_depends_on_every_field():
    a = Cell("linear", "manual", n=100, d=4)
    assert a.cell_id == Cell("linear", "manual", n=100, d=4).cell_id
    others = [
        Cell("linear", "autograd", n=100, d=4),
        Cell("linear", "manual", n=101, d=4),
        Cell("linear", "manual", n=100, d=4, dtype="float64"),
        Cell("linear", "manual", n=100, d=4, seed=1),
        Cell("linear", "manual", "microbatch:4", n=100, d=4),
    ]
    assert len({a.cell_id, *(c.cell_id for c in others)}) == 6
    assert a.family == Cell("linear", "func", n=100, d=4).family != others[1].family


def test_skip_reasons_name_what_cannot_run():
    assert "CPU only" in Cell("linear", "numpy", n=8, d=2, device="cuda").skip_reason()
    assert "no bfloat16" in Cell("linear", "numpy", n=8, d=2, dtype="bfloat16").skip_reason()
    assert "retained autograd graph" in Cell("linear", "func", "retain:2", n=8, d=2).skip_reason()
    assert "no sample axis" in Cell("chain", "manual", "microbatch:2", n=8).skip_reason()
    assert "k <= n" in Cell("linear", "manual", "uneven:9", n=8, d=2).skip_reason()
    assert "divisible" in Cell("linear", "manual", "microbatch:3", n=8, d=2).skip_reason()
    assert Cell("linear", "autograd", "retain:2", n=8, d=2).skip_reason() is None
    with pytest.raises(ValueError, match="unknown dtype"):
        Cell("linear", "manual", n=8, d=2, dtype="float8").skip_reason()
    with pytest.raises(ValueError, match="unknown method"):
        Cell("linear", "magic", n=8, d=2).skip_reason()


def test_records_have_every_column_in_order():
    for r in run_family([Cell("linear", m, n=32, d=3) for m in ("manual", "autograd")], timing=TINY_TIMING):
        assert list(r)[: len(COLUMNS)] == list(COLUMNS)
        assert r["status"] == "ok" and r["error"] is None
        assert r["started_at"] <= r["finished_at"]


def test_run_family_takes_one_family():
    with pytest.raises(ValueError, match="differ only by method"):
        run_family([Cell("linear", "manual", n=8, d=2), Cell("linear", "autograd", n=9, d=2)])


def test_data_depend_on_the_seed_not_on_the_method_or_dtype():
    def preview(cell):
        return run_family([cell], timing=NO_TIMING)[0]["output_preview"]

    base = preview(Cell("linear", "manual", n=16, d=3, dtype="float64"))
    assert preview(Cell("linear", "autograd", n=16, d=3, dtype="float64")) == base
    assert preview(Cell("linear", "manual", n=16, d=3)) == pytest.approx(base, rel=1e-6)
    assert preview(Cell("linear", "manual", n=16, d=3, dtype="float64", seed=1)) != base


def test_a_failing_method_is_recorded_and_its_siblings_still_run():
    load_plugin(PLUGINS / "planted_bugs.py")
    cells = [Cell("linear", m, "retain:2", n=16, d=3) for m in ("manual", "autograd")]
    manual, autograd = run_family(cells, timing=TINY_TIMING)
    assert manual["status"] == "error" and "not applicable" in manual["error"]
    assert autograd["status"] == "ok" and autograd["time_median_s"] > 0
    assert autograd["vs_manual"] is None  # nothing to pair with


def test_an_exception_inside_a_step_becomes_an_error_record(tmp_path):
    plugin = tmp_path / "raising.py"
    plugin.write_text(
        "from harness import register_problem\n"
        "from harness.problems.linear import Linear\n"
        "@register_problem\n"
        "class Raising(Linear):\n"
        "    name = 'raising'\n"
        "    def manual_grad(self, p, data):\n"
        "        raise ArithmeticError('the formula is not written yet')\n"
    )
    load_plugin(plugin)
    manual, autograd = run_family(
        [Cell("raising", m, n=8, d=2) for m in ("manual", "autograd")], timing=TINY_TIMING
    )
    assert manual["status"] == "error"
    # where it was raised: the plugin's file and line, not the harness's frame that called it
    assert manual["error"] == "ArithmeticError: the formula is not written yet (raising.py:7)"
    assert autograd["status"] == "ok"


def test_an_error_raised_inside_torch_names_the_plugin_line_that_called_it(tmp_path):
    plugin = tmp_path / "misshapen.py"
    plugin.write_text(
        "import torch\n"
        "from harness import register_problem\n"
        "from harness.problems.linear import Linear\n"
        "@register_problem\n"
        "class Misshapen(Linear):\n"
        "    name = 'misshapen'\n"
        "    def manual_grad(self, p, data):\n"
        "        w = data['X'].T @ torch.ones(3, dtype=data['X'].dtype)\n"
        "        return {'w': w, 'b': w.sum().reshape(1)}\n"
    )
    load_plugin(plugin)
    (manual,) = run_family([Cell("misshapen", "manual", n=8, d=2)], timing=NO_TIMING)
    assert manual["status"] == "error" and manual["error"].startswith("RuntimeError: ")
    assert manual["error"].endswith(" (misshapen.py:8)"), manual["error"]


def test_manifest_names_versions_cpu_and_threads():
    m = manifest()
    assert m["versions"]["torch"] == metadata.version("torch")
    assert m["cpu"] and m["driver_torch_threads"] >= 1
    assert "cuda_available" in m
