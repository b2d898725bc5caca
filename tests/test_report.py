"""Reports from real run directories: records made by run_family on tiny cells, written in the
DESIGN layout (records.jsonl, records.parquet, trajectories.parquet, manifest.json, config.yaml),
so these tests depend on the core, not on the store's or the executors' timing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from harness import Cell, TimingOptions, run_family
from harness.plugins import load_plugin
from harness.report import write_report
from harness.report.data import read_run
from harness.report.seed_replay import as_printed, half_unit, matches, replay
from harness.report.summary import size_axes, verdict
from harness.report.tables import markdown_table

FAST = TimingOptions(min_run_time_s=0.005, rounds=3, warmup=1)
PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def write_run(path: Path, records: list[dict], name: str = "quick", manifest: dict | None = None) -> Path:
    """A run directory as the store lays it out, from records as run_family returns them."""
    path.mkdir(parents=True, exist_ok=True)
    records = [dict(r) for r in records]
    steps = [row for r in records for row in (r.pop("trajectory", None) or [])]
    for r in records:
        r["run_id"] = path.name
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pd.DataFrame(records).to_parquet(path / "records.parquet")
    if steps:
        pd.DataFrame(steps).to_parquet(path / "trajectories.parquet")
    (path / "config.yaml").write_text(f"name: {name}\n")
    (path / "manifest.json").write_text(json.dumps(manifest or {"python": "3", "config_name": name}))
    return path


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
    return write_run(tmp_path_factory.mktemp("runs") / "quick-run", quick_records(), manifest=manifest)


@pytest.fixture(scope="module")
def quick_report(quick_run) -> list[Path]:
    return write_report(quick_run)


def load_post_plugin() -> None:
    """The seed post's own numpy gradient (experiments/plugins), as seed.yaml loads it."""
    load_plugin(ROOT / "experiments/plugins/post_numpy.py")


def seed_records() -> list[dict]:
    load_post_plugin()
    post = {"data": "post"}
    train = {"data": "post", "mode": "train", "lr": 0.01}
    both = ("manual", "autograd")
    return [
        *family("chain", both, n=3, **post),
        *family("vjp", both, n=3, **post),
        *family("weightsum", both, n=4, pattern="zero", steps=3, **{**train, "lr": 0.1}),
        *family("scalar", both, steps=101, **train),
        *family("linear1d_post", ("numpy", "autograd"), n=4, steps=20, **train),
        *family("linear1d", both, n=4, steps=50, **train),
    ]


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "seed-run", seed_records(), name="seed")


# -- the report of a quick-like run ---------------------------------------------------------------


def test_quick_run_writes_markdown_html_and_six_plots(quick_run, quick_report):
    md, page, *plots = quick_report
    assert md == quick_run / "report.md" and page == quick_run / "report.html"
    names = {p.stem for p in plots}
    assert len(plots) >= 6, names
    assert {
        "time_vs_size",
        "overhead_vs_manual",
        "cost_ratio",
        "agreement",
        "accumulation",
        "bandwidth",
    } <= names
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


def test_verdict_names_overheads_and_ratios_from_records(quick_run):
    df = read_run(quick_run).records
    v = verdict(df)
    assert len(v.mismatches) == 0 and len(v.failed) == 0
    top = df[df["method"] != "manual"]["vs_manual"].max()
    assert v.overheads.iloc[0]["vs manual (95% CI)"].startswith(f"{top:.2f}"[:3])


def test_size_axis_is_n_where_only_n_varies_and_n_times_d_where_d_varies(quick_run):
    df = read_run(quick_run).records
    axes = size_axes(df)
    assert axes["linear"].sizes == ("n", "d") and "n·d" in axes["linear"].label
    assert axes["logistic"].sizes == ("n",) and axes["logistic"].fixed == "d=8"


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
    run = write_run(tmp_path / "failed-run", failed_records())
    paths = write_report(run)
    text = paths[0].read_text()
    assert "### Failed cells" in text
    for fragment in ("no_such_method", "not applicable", "oom", "OutOfMemoryError", "timeout", "past 600 s"):
        assert fragment in text, fragment
    assert re.search(r"\*\*4 cells failed\*\*", text)
    assert "failed:" not in text  # every plot either drew or said why not


def test_a_run_of_one_cell_reports_and_skips_what_it_cannot_draw(tmp_path):
    run = write_run(tmp_path / "one-cell", family("linear", ("manual",), n=128, d=4))
    paths = write_report(run)
    text = paths[0].read_text()
    assert paths[1].exists() and "1 cell: 1 ok." in text
    assert "Time per gradient against size: needs one method measured at two sizes or more" in text
    assert "failed:" not in text


def test_a_run_still_going_reads_from_jsonl_alone(tmp_path):
    run = write_run(tmp_path / "going", family("linear", n=128, d=4) + family("linear", n=1024, d=4))
    (run / "records.parquet").unlink()
    (run / "manifest.json").unlink()
    paths = write_report(run)
    assert "No manifest.json" in paths[0].read_text()
    assert len(paths) >= 4


# -- the seed replay --------------------------------------------------------------------------------


def test_seed_run_replays_the_posts_numbers(seed_run):
    table = replay(read_run(seed_run))
    assert (table["match"] == "✓ matches").all(), table[table["match"] != "✓ matches"].to_string()
    numpy_rows = table[table["method"] == "numpy"]
    assert len(numpy_rows) == 4  # w, loss, f(5), the 4x gradient
    assert "4.000x the reference: a sum where a mean over n=4 was meant?" in numpy_rows.iloc[3]["this run"]
    text = write_report(seed_run)[0].read_text()
    assert "## Seed replay" in text and "Seed replay: 24 of 24 measured rows match the post." in text
    assert (seed_run / "plots" / "loss_curves.png").exists()


def test_seed_replay_shows_a_value_that_differs(seed_run, tmp_path):
    run = read_run(seed_run)
    scalar = run.records[(run.records["problem"] == "scalar") & (run.records["method"] == "autograd")]
    rows = (run.trajectories["cell_id"] == scalar["cell_id"].iloc[0]) & (run.trajectories["step"] == 11)
    run.trajectories.loc[rows, "loss"] = 0.6413  # the post printed 0.6412
    table = replay(run)
    bad = table[table["match"].str.startswith("✗")]
    assert len(bad) == 1 and bad.iloc[0]["match"] == "✗ differs in 1 of 10"
    assert "≠0.6413" in bad.iloc[0]["this run"]


def test_printed_precision():
    assert half_unit("0.9604") == pytest.approx(5e-5)
    assert half_unit("2.0480e+02") == pytest.approx(5e-3)
    assert half_unit("6.") == 0.5
    assert matches("0.0850", 0.98**122)  # 0.08502..., printed 0.0850
    assert not matches("0.0850", 0.0851)
    assert matches("2.0480e-01", 0.2048) and as_printed(204.8, "2.0480e+02") == "2.0480e+02"
    assert not matches("1.200", float("nan"))


def test_markdown_table_escapes_pipes_and_blanks_missing_values():
    df = pd.DataFrame({"a": ["x|y", None], "b": [1.5, float("nan")]})
    assert markdown_table(df).splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 1.5 |", "|  |  |"]


def test_the_bandwidth_peak_comes_from_the_workers_probes():
    from harness.report.plots_speed import measured_peak

    workers = [{"bandwidth_probe_gbps": 40.0}, {"bandwidth_probe_gbps": 43.0}, {"worker": 2}]
    assert measured_peak({"executor": {"workers": workers}}) == 43.0
    assert measured_peak({"bandwidth_probe_gbps": 12.0}) == 12.0
    assert measured_peak({}) is None
