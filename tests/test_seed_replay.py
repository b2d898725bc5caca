"""The seed replay, a report section the seed's own plugin registers: the post's printed numbers
beside a seed run's, in that run's report and in no other."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_report import family

from harness.cli import main
from harness.plugins import load_plugin
from harness.report import write_report
from harness.report.data import read_run
from harness.report.sections import section_names
from helpers import ROOT, write_run

POST_NUMPY = ROOT / "experiments/plugins/post_numpy.py"
SEED_POST = ROOT / "experiments/plugins/seed_post.py"


@pytest.fixture(scope="module")
def seed_post():
    """The plugin's module, imported as a run's report imports it."""
    return sys.modules[load_plugin(SEED_POST)]


def seed_records() -> list[dict]:
    load_plugin(POST_NUMPY)  # the post's own numpy gradient, as seed.yaml loads it
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
    out = tmp_path_factory.mktemp("runs")
    return write_run(out, seed_records(), name="seed", plugins=[POST_NUMPY, SEED_POST])


def test_seed_run_replays_the_posts_numbers(seed_run, seed_post):
    table = seed_post.replay(read_run(seed_run))
    assert (table["match"] == "✓ matches").all(), table[table["match"] != "✓ matches"].to_string()
    numpy_rows = table[table["method"] == "numpy"]
    assert len(numpy_rows) == 4  # w, loss, f(5), the 4x gradient
    assert "4.000x the reference: a sum where a mean over n=4 was meant?" in numpy_rows.iloc[3]["this run"]
    text = write_report(seed_run)[0].read_text()
    assert "## Seed replay" in text and "Seed replay: 24 of 24 measured rows match the post." in text
    assert (seed_run / "plots" / "loss_curves.png").exists()


def test_seed_replay_shows_a_value_that_differs(seed_run, seed_post):
    run = read_run(seed_run)
    scalar = run.records[(run.records["problem"] == "scalar") & (run.records["method"] == "autograd")]
    rows = (run.trajectories["cell_id"] == scalar["cell_id"].iloc[0]) & (run.trajectories["step"] == 11)
    run.trajectories.loc[rows, "loss"] = 0.6413  # the post printed 0.6412
    table = seed_post.replay(run)
    bad = table[table["match"].str.startswith("✗")]
    assert len(bad) == 1 and bad.iloc[0]["match"] == "✗ differs in 1 of 10"
    assert "≠0.6413" in bad.iloc[0]["this run"]
    section = seed_post.seed_replay(run)
    assert section.verdict == ["Seed replay: 23 of 24 measured rows match the post, **1 differs**."]


def test_a_value_from_a_gpu_matches_to_its_dtypes_rounding_and_one_from_the_cpu_exactly(seed_run, seed_post):
    # seen on an H200: the post printed 1.16278565 at epoch 11; the GPU's float32 gave 1.16278577
    run = read_run(seed_run)
    cell = run.records[(run.records["problem"] == "linear1d") & (run.records["method"] == "autograd")]
    rows = (run.trajectories["cell_id"] == cell["cell_id"].iloc[0]) & (run.trajectories["step"] == 10)
    run.trajectories.loc[rows, "loss"] = 1.16278577

    def verdict(records):
        run.records = records
        table = seed_post.replay(run)
        (row,) = table[
            (table["method"] == "autograd") & table["quantity"].str.startswith("loss, epochs 1, 11")
        ]["match"]
        return row

    assert verdict(run.records) == "✗ differs in 1 of 5"  # on the CPU: exactly as printed
    on_gpu = run.records.copy()
    on_gpu.loc[on_gpu["cell_id"] == cell["cell_id"].iloc[0], "device"] = "cuda"
    assert verdict(on_gpu) == "✓ matches to float32 rounding on cuda"
    run.trajectories.loc[rows, "loss"] = 1.1628  # 3e-5 off is not rounding, on any device
    assert verdict(on_gpu) == "✗ differs in 1 of 5"
    # late in the descent the loss is a squared residual of 0.008 out of terms of 8: an ulp of
    # the terms moves the printed 0.00006770 in its last digit, which a GPU may do
    run.trajectories.loc[rows, "loss"] = 1.16278565
    late = (run.trajectories["cell_id"] == cell["cell_id"].iloc[0]) & (run.trajectories["step"] == 40)
    run.trajectories.loc[late, "loss"] = 0.00006772
    assert verdict(on_gpu) == "✓ matches to float32 rounding on cuda"
    assert verdict(on_gpu.assign(device="cpu")) == "✗ differs in 1 of 5"
    run.trajectories.loc[late, "loss"] = 0.0000680  # 3e-7 off: more than rounding
    assert verdict(on_gpu) == "✗ differs in 1 of 5"


def test_printed_precision(seed_post):
    half_unit, matches, as_printed = seed_post.half_unit, seed_post.matches, seed_post.as_printed
    assert half_unit("0.9604") == pytest.approx(5e-5)
    assert half_unit("2.0480e+02") == pytest.approx(5e-3)
    assert half_unit("6.") == 0.5
    assert matches("0.0850", 0.98**122)  # 0.08502..., printed 0.0850
    assert not matches("0.0850", 0.0851)
    assert matches("2.0480e-01", 0.2048) and as_printed(204.8, "2.0480e+02") == "2.0480e+02"
    assert not matches("1.200", float("nan"))


def test_runs_not_made_with_the_seed_plugin_get_no_seed_replay(seed_post, tmp_path):
    assert "seed_replay" in section_names()  # registered in this process: each run decides
    random = family("chain", ("manual", "autograd"), n=3) + family("vjp", ("manual", "autograd"), n=3)
    assert set(r["data"] for r in random) == {"random"}
    post = family("chain", ("manual", "autograd"), n=3, data="post")
    for records in (random, post):
        run = write_run(tmp_path, records, name="seed", plugins=[POST_NUMPY])
        assert seed_post.seed_replay(read_run(run)) is None
        text = write_report(run)[0].read_text()
        assert "Seed replay" not in text


def test_a_copy_of_the_plugin_counts_as_the_plugin(seed_run, seed_post, tmp_path):
    copy = tmp_path / "elsewhere" / "seed_post.py"
    copy.parent.mkdir()
    copy.write_bytes(SEED_POST.read_bytes())
    run = read_run(seed_run)
    run.config["plugins"] = [str(copy)]
    assert seed_post.seed_replay(run) is not None
    copy.write_text("# another file of that name\n")
    assert seed_post.seed_replay(run) is None


def test_seed_yaml_run_and_report_replay_the_post(tmp_path, capsys):
    """seed.yaml as a user runs it: its config lists the plugin, so its report has the section."""
    out = tmp_path / "results"
    assert main(["run", str(ROOT / "experiments/seed.yaml"), "--executor", "local", "--out", str(out)]) == 0
    assert main(["report", str(out / "latest")]) == 0
    text = (out / "latest" / "report.md").read_text()
    assert "Seed replay: 24 of 24 measured rows match the post." in text
    assert text.index("## Verdict") < text.index("## Seed replay") < text.index("## Tables")
