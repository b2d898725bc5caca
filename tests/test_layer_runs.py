"""Layers from a config: the layers section, its one-line errors, cells and ids, a local run
timed forward, backward and full with peak memory per method, and its report's Layers section."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cell import Cell, run_family
from harness.cli import main
from harness.report import read_run, write_report
from harness.runs.config import ConfigError, config_of, load_config
from harness.runs.grid import expand
from harness.runs.local import LocalExecutor
from helpers import PLUGINS, ROOT, TINY_TIMING, write_run

LAYERS = {
    "rmsnorm": {"n": [16], "d": [32]},
    "swiglu": {"n": 8, "d": 16, "h": 24},
}


def config(tmp_path: Path, **keys) -> Path:
    path = tmp_path / "layers.yaml"
    path.write_text(yaml.safe_dump({"name": "layers", "layers": LAYERS, **keys}))
    return path


@pytest.mark.parametrize(
    ("keys", "where", "words"),
    [
        ({"layers": {"rmsnorm": {"n": 8}}}, "layers.rmsnorm.d", "missing: layer 'rmsnorm' needs d"),
        ({"layers": {"rmsnorm": {"n": 8, "d": 4, "h": 2}}}, "layers.rmsnorm.h", "takes n, d"),
        ({"layers": {"nosuch": {"n": 8}}}, "layers.nosuch", "nosuch"),
        ({"layers": {"linear": {"n": 8, "d": 2}}}, "layers.linear", "linear"),
        ({"problems": {"rmsnorm": {"n": 8, "d": 2}}}, "problems.rmsnorm", "is a layer: name it under layers"),
        (
            {"layers": {"rmsnorm": {"n": 8, "d": 2, "methods": ["manual"]}}},
            "layers.rmsnorm.methods[0]",
            "manual",
        ),
        ({"layers": {"rmsnorm": {"n": 8, "d": 2, "patterns": ["full"]}}}, "layers.rmsnorm.patterns", "known"),
        ({"layers": {"rmsnorm": [{"n": 8, "d": 2}, {"n": 0, "d": 2}]}}, "layers.rmsnorm[1].n", ">= 1"),
    ],
)
def test_a_bad_layers_section_is_one_line_naming_file_and_field(tmp_path, keys, where, words):
    with pytest.raises(ConfigError) as err:
        config_of({"name": "bad", **keys}, tmp_path / "bad.yaml")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / 'bad.yaml'}: {where}: "), text
    assert words in text


def test_layers_expand_into_cells_beside_problems_and_problems_keep_their_ids(tmp_path):
    problems = {"linear": {"n": [64], "d": [4]}}
    alone = expand(config_of({"name": "c", "problems": problems}, tmp_path / "c.yaml"))
    both = config_of({"name": "c", "problems": problems, "layers": LAYERS}, tmp_path / "c.yaml")
    grid = expand(both)
    problem_ids = {c.cell_id for c in grid.cells if c.kind == "problem"}
    assert problem_ids == {c.cell_id for c in alone.cells}
    layer_cells = [c for c in grid.cells if c.kind == "layer"]
    # function and autograd unless an entry names its methods; pattern full, mode gradient
    assert {(c.problem, c.method) for c in layer_cells} == {
        (name, m) for name in LAYERS for m in ("function", "autograd")
    }
    assert {(c.pattern, c.mode, c.data) for c in layer_cells} == {("full", "gradient", "random")}
    assert grid.declared()["problems"]["rmsnorm"]["kind"] == "layer"
    # a config without layers is resolved (and hashed) as before layers existed
    plain = config_of({"name": "c", "problems": problems}, tmp_path / "c.yaml")
    assert "layers" not in plain.resolved()
    assert both.resolved()["layers"]["swiglu"] == {"n": [8], "d": [16], "h": [24]}


def test_dry_run_and_list_name_the_layers(tmp_path, capsys):
    assert main(["run", str(config(tmp_path)), "--dry-run", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "rmsnorm n=16 d=32 float32 full gradient: function autograd" in out
    assert "swiglu n=8 d=16 h=24 float32 full gradient: function autograd" in out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "layers (sizes" in listing and "rmsnorm" in listing and "layers.yaml" in listing
    shipped = expand(load_config(ROOT / "experiments" / "layers.yaml"))
    assert {c.problem for c in shipped.cells} == {"rmsnorm", "swiglu"}
    assert {c.method for c in shipped.cells} == {"function", "autograd", "compiled"}


def test_a_layer_family_is_timed_forward_backward_and_full(tmp_path):
    cells = [Cell("rmsnorm", m, n=16, d=32) for m in ("function", "autograd")]
    records = run_family(cells, timing=TINY_TIMING)
    for r in records:
        assert r["status"] == "ok" and r["kind"] == "layer"
        assert r["forward_median_s"] > 0 and r["backward_median_s"] > 0 and r["time_median_s"] > 0
        assert len(r["time_samples_s"]) == TINY_TIMING.rounds
        assert r["peak_bytes"] > 0 and r["peak_bytes_kind"] == "torch_live_tensors"
    by = {r["method"]: r for r in records}
    assert by["autograd"]["vs_manual"] == 1.0  # autograd is every layer method's pair
    assert by["function"]["vs_manual"] > 0


def test_a_plugin_layer_runs_locally_and_its_report_has_the_layers_tables(tmp_path):
    plugins = [str(PLUGINS / "layer_layernorm.py"), str(PLUGINS / "layer_rmsnorm_rstd_constant.py")]
    path = config(
        tmp_path,
        plugins=plugins,
        layers={
            **LAYERS,
            "layer_layernorm": {"n": 8, "d": 16},
            "layer_rmsnorm_rstd_constant": {"n": 8, "d": 16},
        },
    )
    grid = expand(load_config(path))
    records: list[dict] = []
    LocalExecutor(device="cpu", threads=1).run(grid.families, records.extend, TINY_TIMING, {"run_id": "t"})
    by = {(r["problem"], r["method"]): r for r in records}
    assert by[("layer_layernorm", "function")]["status"] == "ok"
    broken = by[("layer_rmsnorm_rstd_constant", "function")]
    assert broken["status"] == "mismatch" and "disagrees in x" in broken["diagnosis"]
    run_dir = write_run(tmp_path / "out", records, name="layers", plugins=plugins)
    write_report(run_dir)
    report = (run_dir / "report.md").read_text()
    section = report[report.index("## Layers") :]
    assert (
        "| layer | dtype | device | sizes | method | forward | backward | full | vs autograd | peak memory |"
        in section
    )
    for name in ("rmsnorm", "swiglu", "layer_layernorm"):
        assert f"| {name} | float32 | cpu |" in section
    assert "✗ disagrees: " in section and "disagrees in x" in section
    assert (
        "Layers (layer_layernorm, layer_rmsnorm_rstd_constant, rmsnorm, swiglu): 8 cells, **1 disagree"
        in report
    )
    # the verdict's lines per method and its cost model are the problems': a layer's are its section's
    head = report[: report.index("## Layers")]
    assert "**function**" not in head and "**autograd**" not in head
    html = (run_dir / "report.html").read_text()
    assert "peak memory" in html and "backward" in html
    assert len(read_run(run_dir).records) == len(records)


@pytest.mark.slow
def test_a_compiled_reference_is_timed_backward_alone_through_its_retained_graph():
    # a compiled backward donates its saved buffers unless compiled without, and then refuses
    # the retain_graph=True that timing the backward alone needs
    cells = [Cell("rmsnorm", m, n=8, d=16) for m in ("autograd", "compiled")]
    records = run_family(cells, timing=TINY_TIMING)
    compiled = records[1]
    assert compiled["status"] == "ok", compiled["error"]
    assert compiled["backward_median_s"] > 0 and compiled["forward_median_s"] > 0
    assert compiled["peak_bytes"] is None and compiled["peak_bytes_kind"] == "unmeasured"
    # its first call compiles: kept apart as compile_s, far longer than a timed step; autograd's
    # first call is only a first call
    assert compiled["compile_s"] == compiled["first_call_s"] > 10 * compiled["time_median_s"]
    assert records[0]["compile_s"] is None and records[0]["first_call_s"] > 0
