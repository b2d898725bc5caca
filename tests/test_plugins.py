"""The plugin API as docs/plugins.md documents it."""

import re

import pytest

from harness import Cell, run_family
from harness.plugins import PluginError, load_plugin
from harness.problems import get_problem
from helpers import NO_TIMING, ROOT

RIDGE = ROOT / "experiments" / "plugins" / "ridge.py"


def test_the_documented_example_is_the_shipped_plugin():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), flags=re.S)
    assert RIDGE.read_text() in blocks


@pytest.mark.parametrize("pattern", ["full", "microbatch:4", "uneven:3", "nozero:2"])
def test_the_readme_plugin_runs_and_agrees(pattern):
    load_plugin(RIDGE)
    cells = [Cell("ridge", m, pattern=pattern, n=64, d=4) for m in ("manual", "autograd", "func")]
    records = run_family(cells, timing=NO_TIMING)
    assert [r["status"] for r in records] == ["ok"] * 3
    assert records[0]["bytes_moved"] == (64 * 4 + 64) * 4


def test_loading_twice_registers_once():
    assert load_plugin(RIDGE) == load_plugin(RIDGE)
    assert get_problem("ridge").name == "ridge"


def test_a_missing_plugin_names_the_file(tmp_path):
    with pytest.raises(PluginError, match=r"nope\.py: plugin file does not exist"):
        load_plugin(tmp_path / "nope.py")


def test_a_plugin_that_fails_to_import_names_the_file_and_the_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import harness\nraise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match=r"bad\.py: plugin failed to import: RuntimeError: boom"):
        load_plugin(bad)
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    with pytest.raises(PluginError, match=r"broken\.py: plugin failed to import \(line 1\)"):
        load_plugin(broken)


def test_a_problem_without_a_name_is_refused():
    from harness import Problem, register_problem

    with pytest.raises(TypeError, match="needs a class attribute name"):

        @register_problem
        class Nameless(Problem):
            pass


def test_sizes_are_checked_against_what_the_problem_takes():
    with pytest.raises(ValueError, match="takes sizes"):
        Cell("chain", "manual", n=3, d=2).problem_instance()
    with pytest.raises(ValueError, match="needs n >= 1"):
        Cell("linear", "manual", n=0, d=2).problem_instance()
