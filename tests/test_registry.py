"""Registries refuse a clash; a new method written in one plugin file runs, is checked, and shows
in every table and plot of the report with the order and colour it declares."""

import re

import matplotlib.colors as mcolors
import pytest

from harness import Method, Problem, register_method, register_problem
from harness.cli import main
from harness.methods import METHODS
from harness.plugins import PluginError, load_plugin
from harness.problems import get_problem
from harness.problems.base import PROBLEMS
from harness.registry import Registry, RegistryClash
from harness.report import plotting, write
from harness.runs.store import load
from helpers import ROOT

RIDGE = ROOT / "experiments" / "plugins" / "ridge.py"


def test_a_name_registered_twice_is_refused_naming_both_definitions():
    reg = Registry("widget")

    class A:
        name = "w"

    class B:
        name = "w"

    reg.add("w", A)
    with pytest.raises(RegistryClash) as err:
        reg.add("w", B)
    text = str(err.value)
    assert "widget 'w' is already registered by" in text
    assert "<locals>.A (" in text and "<locals>.B (" in text and "test_registry.py:" in text
    assert "replace=True" in text
    assert reg.get("w") is A  # the first one stands
    reg.add("w", B, replace=True)
    assert reg.get("w") is B


def test_the_same_definition_twice_is_not_a_clash():
    reg = Registry("widget")

    class A:
        name = "w"

    reg.add("w", A)
    reg.add("w", A)
    assert reg.names() == ["w"]


def test_a_plugin_problem_named_like_a_builtin_is_refused(tmp_path):
    # docs/plugins.md's ridge plugin, copied with `name = "linear"`: it must not replace linear
    clash = tmp_path / "ridge_as_linear.py"
    clash.write_text(RIDGE.read_text().replace('name = "ridge"', 'name = "linear"'))
    with pytest.raises(PluginError, match=r"problem 'linear' is already registered by harness\.problems"):
        load_plugin(clash)
    assert get_problem("linear").__module__ == "harness.problems.linear"


def test_a_bad_config_plugin_that_clashes_exits_2_with_one_line(tmp_path, capsys):
    clash = tmp_path / "ridge_as_linear.py"
    clash.write_text(RIDGE.read_text().replace('name = "ridge"', 'name = "linear"'))
    config = tmp_path / "c.yaml"
    config.write_text(f"plugins: [{clash.name}]\nproblems: {{linear: {{n: [8], d: [2]}}}}\n")
    assert main(["run", str(config), "--executor", "local", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "plugins[0]" in err and "already registered" in err


def test_replace_true_replaces_on_purpose():
    original = get_problem("chain")
    try:

        @register_problem(replace=True)
        class Chain(original):
            """The chain problem, replaced on purpose."""

            name = "chain"

        assert get_problem("chain") is Chain
    finally:
        PROBLEMS.add("chain", original, replace=True)


def test_methods_refuse_a_clash_too():
    with pytest.raises(RegistryClash, match="method 'manual' is already registered"):

        @register_method
        class Manual2(Method):
            name = "manual"

    with pytest.raises(TypeError, match="must subclass harness.Method"):
        register_method(Problem)


# -- a new method in one file ----------------------------------------------------------------------

EINSUM_PLUGIN = '''
"""The linear gradient written with einsum: a new correct method, in one file."""

import torch

from harness import Method, register_method


@register_method
class Einsum(Method):
    """dJ/dw = 2/N X^T r written as einsum."""

    name = "einsum"
    hand_written = True
    order, color, marker = 25, "#ff00ff", "*"

    @classmethod
    def skip_reason(cls, problem, dtype, device):
        return None if problem.name == "linear" else "einsum is written for linear"

    def grads_of(self, batch):
        X, w, b = batch["X"], self.params["w"], self.params["b"]
        r = (torch.einsum("nd,d->n", X, w) + b - batch["y"]) * (2 / X.shape[0])
        return {"w": torch.einsum("nd,n->d", X, r), "b": r.sum().reshape(1)}
'''


@pytest.fixture
def einsum_run(tmp_path):
    (tmp_path / "einsum.py").write_text(EINSUM_PLUGIN)
    config = tmp_path / "einsum.yaml"
    config.write_text(
        "plugins: [einsum.py]\n"
        "methods: [manual, autograd, einsum]\n"
        "patterns: [full, microbatch:2]\n"
        "timing: {min_run_time_s: 0.005, rounds: 3}\n"
        "problems: {linear: {n: [64, 512], d: [4]}}\n"
    )
    out = tmp_path / "results"
    try:
        assert main(["run", str(config), "--executor", "local", "--out", str(out)]) == 0
        yield (out / "latest").resolve()
    finally:
        METHODS.remove("einsum")


def test_a_plugin_method_runs_is_checked_and_reports_in_its_order_and_colour(einsum_run, monkeypatch):
    records = load(einsum_run)
    mine = records[records["method"] == "einsum"]
    assert len(mine) == 4 and (mine["status"] == "ok").all() and mine["agree"].all()
    assert (mine["f64_rel_err"] < 1e-10).all()  # its float64 twin checked the formula

    # every plot that draws methods draws einsum, in its declared colour
    colours: dict[str, dict[str, str]] = {}
    finish = plotting.finish

    def colour_of(handle) -> str:
        if hasattr(handle, "lines"):  # an errorbar: its data line
            handle = handle.lines[0]
        elif hasattr(handle, "patches"):  # bars
            handle = handle.patches[0]
        get = getattr(handle, "get_color", None) or handle.get_facecolor
        colour = get()
        return mcolors.to_hex(colour[0] if getattr(colour, "ndim", 1) == 2 else colour)

    def spy(fig, axes, path, title, extra=None):
        seen = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(label, colour_of(handle))
        colours[path.stem] = seen
        return finish(fig, axes, path, title, extra)

    monkeypatch.setattr(plotting, "finish", spy)
    write.write_report(einsum_run)
    drawn = {name: seen for name, seen in colours.items() if "manual" in seen or "autograd" in seen}
    assert {"time_vs_size", "overhead_vs_manual", "agreement"} <= set(drawn)
    for name, seen in drawn.items():
        assert seen.get("einsum") == "#ff00ff", (name, seen)

    # every table: its own column in the overhead table, placed by its order (25: after manual
    # and fused's 20, before autograd's 30), and rows in the agreement and per-cell tables
    report = (einsum_run / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("|") and "manual time" in line)
    assert re.search(r"einsum vs manual .*autograd vs manual", header)
    assert re.search(r"\| linear \| float32 \| einsum \| 4/4 \|", report)
    assert report.count("| einsum |") >= 4
