"""Reports from real run directories: records made by run_family on tiny cells, written through
the run store as the run command writes them, so these tests depend on the core and the store,
not on the executors' timing."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from harness import Cell, TimingOptions, run_family
from harness.report import plotting, write_report
from harness.report.data import read_run
from harness.report.plots_numerics import agreement, worst_per_size
from harness.report.plots_speed import time_vs_size
from harness.report.summary import agreement_table, size_axes, times
from harness.report.tables import markdown_table
from harness.report.verdict import verdict
from helpers import write_run

FAST = TimingOptions(min_run_time_s=0.005, rounds=3, warmup=1)
PNG = b"\x89PNG\r\n\x1a\n"


def family(problem: str, methods=("manual", "autograd", "func"), context=None, **cell) -> list[dict]:
    return run_family([Cell(problem, m, **cell) for m in methods], timing=FAST, context=context)


def quick_records() -> list[dict]:
    """quick.yaml in miniature: linear over three sizes, three patterns, two dtypes, on two workers
    (logical GPUs 0 and 1); logistic at two sizes."""
    records, i = [], 0
    for n, d in ((64, 4), (1024, 4), (1024, 16)):
        for pattern in ("full", "microbatch:4", "nozero:3"):
            for dtype in ("float32", "float64"):
                where = {"worker": i % 2, "gpu_id": str(i % 2), "node": "node-a"}  # as Ray records them
                records += family("linear", n=n, d=d, pattern=pattern, dtype=dtype, context=where)
                i += 1
    for n in (256, 2048):
        records += family("logistic", n=n, d=8, context={"worker": 0, "gpu_id": "0", "node": "node-a"})
    return records


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    manifest = {
        "python": "3.11",
        "config_name": "quick",
        "bandwidth_probe_gbps": 27.9,
        "versions": {"torch": "x"},
    }
    return write_run(tmp_path_factory.mktemp("runs"), quick_records(), manifest=manifest)


@pytest.fixture(scope="module")
def quick_report(quick_run) -> list[Path]:
    return write_report(quick_run)


# -- the report of a quick-like run ---------------------------------------------------------------


def test_quick_run_writes_markdown_html_and_its_plots(quick_run, quick_report):
    md, page, *plots = quick_report
    assert md == quick_run / "report.md" and page == quick_run / "report.html"
    names = {p.stem for p in plots}
    assert len(plots) >= 5, names
    assert {"time_vs_size", "overhead_vs_manual", "cost_ratio", "agreement", "accumulation"} <= names
    assert "workers" in names  # two workers recorded
    for p in plots:
        data = p.read_bytes()
        assert data.startswith(PNG) and 10_000 < len(data) < 600_000, (p, len(data))
    text = md.read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[0] == "Verdict", headings  # the verdict comes first
    assert headings.index("Tables") < headings.index("Plots") < headings.index("Environment")
    assert "Seed replay" not in headings
    assert "| problem | dtype | sizes | manual time | autograd vs manual | func vs manual |" in text
    for p in plots:
        assert f"](plots/{p.name})" in text
    # train mode is absent here: said, not drawn, never a failure
    assert "Train mode: loss against step, per method: no train-mode trajectories" in text
    assert "failed:" not in text


def test_html_is_self_contained(quick_run, quick_report):
    page = quick_report[1]
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('src="data:image/png;base64,') == len(list((quick_run / "plots").glob("*.png")))
    # no scripts, stylesheets, fonts or images from anywhere else
    assert not re.search(r"<script|<link|@import|url\(|src=\"(?!data:)", html)
    assert "https://" not in html and "http://" not in html
    assert html.index('id="verdict"') < html.index('id="tables"') < html.index('id="plots"')


def test_verdict_gives_a_line_per_method_with_its_model_worst_cell_and_agreement(quick_run):
    df = read_run(quick_run).records
    v = verdict(df)
    assert len(v.mismatches) == 0 and len(v.failed) == 0
    lines = {line.split("**")[1]: line for line in v.lines if line.startswith("**")}
    assert set(lines) == {"manual", "autograd", "func"}
    assert "per step +" in lines["manual"] and "per byte" in lines["manual"]
    for method in ("autograd", "func"):
        top = df[df["method"] == method]["vs_manual"].max()
        assert f", {times(top)}x (" in lines[method], lines[method]  # its worst cell
        assert "per step and" in lines[method] and "manual's time per byte" in lines[method]
        assert f"All {(df['method'] == method).sum()} cells agree." in lines[method]
    assert any(line.startswith("Cost model: ") for line in v.lines)


def test_size_axis_is_n_with_a_family_per_d_where_d_varies_too(quick_run):
    df = read_run(quick_run).records
    axes = size_axes(df)
    assert (
        axes["linear"].along == "n"
        and axes["linear"].family == ("d",)
        and axes["linear"].label == "n (samples)"
    )
    assert axes["logistic"].along == "n" and axes["logistic"].family == () and axes["logistic"].fixed == "d=8"


# -- runs that went wrong, and runs too small to plot ---------------------------------------------


def failed_records() -> list[dict]:
    """Real failures (an unknown method, numpy asked for bfloat16), and the records an executor
    writes for a cell that ran out of memory or past its time limit: identity, status, error,
    every measurement None."""
    ok = family("linear", n=256, d=4)
    errors = family("linear", ("manual", "no_such_method"), n=512, d=4)
    not_applicable = family("linear", ("manual", "numpy"), n=512, d=4, dtype="bfloat16")
    measured = ("rel_err", "time_median_s", "time_iqr_s", "vs_manual", "cost_ratio", "agree", "stable", "tol")
    oom = {
        **ok[1],
        "cell_id": "oom0000000000000",
        "n": 10**9,
        "status": "oom",
        "error": "OutOfMemoryError: CUDA",
    }
    timeout = {**ok[2], "cell_id": "timeout000000000", "n": 10**9, "status": "timeout", "error": "past 600 s"}
    for r in (oom, timeout):
        r.update(dict.fromkeys(measured))
    return ok + errors + not_applicable + [oom, timeout]


def test_failed_cells_are_reported_not_crashed_on(tmp_path):
    run = write_run(tmp_path, failed_records())
    paths = write_report(run)
    text = paths[0].read_text()
    assert "### Failed cells" in text
    for fragment in ("no_such_method", "not applicable", "oom", "OutOfMemoryError", "timeout", "past 600 s"):
        assert fragment in text, fragment
    assert re.search(r"\*\*4 cells failed\*\*", text)
    assert "failed:" not in text  # every plot either drew or said why not


def test_a_run_of_one_cell_reports_and_skips_what_it_cannot_draw(tmp_path):
    run = write_run(tmp_path, family("linear", ("manual",), n=128, d=4))
    paths = write_report(run)
    text = paths[0].read_text()
    assert paths[1].exists() and "1 cell: 1 ok." in text
    title = "Time per gradient against size, with the cost model"
    assert f"{title}: needs one method measured at two sizes" in text
    assert "failed:" not in text


def test_a_run_still_going_reads_from_jsonl_alone(tmp_path):
    records = family("linear", n=128, d=4) + family("linear", n=1024, d=4)
    run = write_run(tmp_path, records, cells=12, state="unfinished")
    assert not (run / "records.parquet").exists()
    paths = write_report(run)
    assert "**6 of 12 cells: not finished (still running, or stopped without finishing)**; 6 ok." in (
        paths[0].read_text()
    )
    assert len(paths) >= 4


def test_a_run_dir_without_its_manifest_still_reports(tmp_path):
    run = write_run(tmp_path, family("linear", n=128, d=4) + family("linear", n=1024, d=4))
    (run / "manifest.json").unlink()  # a run directory copied in part
    text = write_report(run)[0].read_text()
    assert "No manifest.json" in text and "6 cells: 6 ok." in text


def test_markdown_table_escapes_pipes_and_blanks_missing_values():
    df = pd.DataFrame({"a": ["x|y", None], "b": [1.5, float("nan")]})
    assert markdown_table(df).splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 1.5 |", "|  |  |"]


def test_the_bandwidth_peak_comes_from_the_workers_probes():
    from harness.report.plots_speed import measured_peak

    workers = [{"bandwidth_probe_gbps": 40.0}, {"bandwidth_probe_gbps": 43.0}, {"worker": 2}]
    assert measured_peak({"executor": {"workers": workers}}) == 43.0
    assert measured_peak({"bandwidth_probe_gbps": 12.0}) == 12.0
    assert measured_peak({}) is None


# -- the plots drawn as the figures say -----------------------------------------------------------


@pytest.fixture
def figures(monkeypatch) -> dict:
    """The figure each plot function hands to plotting.finish, by file name, still open."""
    drawn = {}
    real = plotting.finish

    def keep(fig, axes, path, title, extra=None):
        drawn[path.name] = (fig, axes, title)
        return real(fig, axes, path, title, extra)

    monkeypatch.setattr(plotting, "finish", keep)
    monkeypatch.setattr(plotting.plt, "close", lambda fig: None)
    return drawn


def panel(axes, title: str):
    return next(ax for ax in axes.flat if ax.get_visible() and ax.get_title().startswith(title))


def test_agreement_draws_the_worst_over_patterns_as_the_table_does(quick_run, figures, tmp_path):
    run = read_run(quick_run)
    worst = worst_per_size(run)
    table = agreement_table(run.records)
    for _, row in table.iterrows():
        cells = worst[(worst["problem"] == row["problem"]) & (worst["dtype"] == row["dtype"])]
        cells = cells[cells["method"] == row["method"]]
        top = cells.loc[(cells["rel_err"] / cells["tol"]).idxmax()]
        assert f"{top['rel_err']:.3g}" == row["worst rel_err"], (row.to_dict(), top.to_dict())
    # every pattern counts, not `full` alone: microbatch:4 and nozero:3 sum in other orders
    assert set(worst["pattern"]) - {"full"}, worst[["problem", "dtype", "method", "pattern"]]
    agreement(run, tmp_path)
    fig, axes, title = figures["agreement.png"]
    assert "worst over patterns" in title
    for ax in axes.flat:
        if ax.get_visible():  # a tolerance line in every panel
            assert "tolerance (tol)" in [c.get_label() for c in ax.get_children()], ax.get_title()


def test_a_panel_of_one_size_is_categorical_with_its_tolerance(tmp_path, figures):
    records = family("logistic", ("manual", "autograd"), n=300, d=4)
    records += family("logistic", ("manual", "autograd"), n=300, d=4, pattern="microbatch:4")
    records += family("linear", ("manual", "autograd"), n=64, d=2) + family("linear", ("manual",), n=512, d=2)
    run = read_run(write_run(tmp_path, records))
    agreement(run, tmp_path)
    fig, axes, _ = figures["agreement.png"]
    one = panel(axes, "logistic · float32")
    assert [t.get_text() for t in one.get_xticklabels()] == ["manual", "autograd"]
    assert one.get_xlabel() == "method, at n=300" and one.get_xscale() == "linear"
    tol = [c for c in one.get_children() if c.get_label() == "tolerance (tol)"]
    assert len(tol) == 1
    # each method's point is its worst over the two patterns
    points = {
        one.get_xticklabels()[int(line.get_xdata()[0])].get_text(): line.get_ydata()[0]
        for line in one.get_lines()
        if line.get_marker() not in ("x", "None", None) and len(line.get_xdata()) == 1
    }
    logistic = run.records[run.records["problem"] == "logistic"]
    for method, y in points.items():
        assert y == pytest.approx(max(logistic[logistic["method"] == method]["rel_err"].max(), 1e-17))
    assert panel(axes, "linear · float32").get_xscale() == "log"


def test_time_against_size_draws_one_line_per_shape_never_across_shapes(quick_run, figures, tmp_path):
    time_vs_size(read_run(quick_run), tmp_path)
    fig, axes, _ = figures["time_vs_size.png"]
    ax = panel(axes, "linear · float32")
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) and line.get_linestyle() != "None"]
    # quick_records' linear: d=4 at n = 64 and 1024 (the cost model's line between them), d=16 at
    # n = 1024 only (a point, no line); three methods
    ends = sorted((line.get_xdata()[0], line.get_xdata()[-1]) for line in lines)
    assert ends == [(64, 1024)] * 3 + [(1024, 1024)] * 3, ends
    styles = {(line.get_xdata()[0], line.get_xdata()[-1]): line.get_linestyle() for line in lines}
    assert styles[(64, 1024)] == "-" and styles[(1024, 1024)] == "--"
    assert ax.get_xlabel() == "n (samples)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["d=4", "d=16"]
