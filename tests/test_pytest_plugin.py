"""`pytest --gradbench-save DIR`: a test session's checks in one run directory that `gradbench
report` and `gradbench compare` read; nothing written without it; a crash keeps what ran."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from harness.cli import main
from harness.runs.check import LISTENERS
from harness.runs.store import load

pytestmark = pytest.mark.slow

TESTS = """
import os
import torch
import harness


class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = dy * w if ctx.needs_input_grad[0] else None
        dw = (dy * x).sum(0) if ctx.needs_input_grad[1] else None
        return dx, dw


def make(gen, n, d):
    return {"x": torch.randn(n, d, generator=gen), "w": torch.randn(d, generator=gen)}


def test_scale():
    harness.check_layer(Scale.apply, lambda x, w: x * w, make, n=8, d=4, dtypes=["float32"]).assert_ok()


def test_rmsnorm():
    harness.check_layer("rmsnorm", n=8, d=16, dtypes=["float32"], layouts=[]).assert_ok()


def test_linear():
    harness.check("linear", n=16, d=3, dtypes=["float32"], patterns=["full"]).assert_ok()


def test_crash():
    if os.environ.get("CRASH"):
        os._exit(3)  # what a segfault looks like from outside
"""


def pytest_args(*args: str) -> list[str]:
    """The plugin by its entry point where the package is installed, else by module."""
    installed = any(e.value == "harness.runs.pytest_plugin" for e in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "harness.runs.pytest_plugin"]
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, *args]


def session(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "test_mine.py").write_text(TESTS)
    import os

    return subprocess.run(
        pytest_args("test_mine.py", *args),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("saved")
    done = session(tmp, "--gradbench-save", "results")
    return done, (tmp / "results" / "latest").resolve()


def test_a_session_saved_is_a_run_that_report_reads(saved):
    done, run_dir = saved
    assert done.returncode == 0, done.stdout + done.stderr
    records = load(run_dir)
    assert f"gradbench: {len(records)} cells saved in results/{run_dir.name}" in done.stdout
    assert sorted(set(records["problem"])) == ["Scale", "linear", "rmsnorm"]
    assert set(records["status"]) == {"ok"}
    assert set(records["run_id"]) == {run_dir.name}
    assert len(records) == 2 + (records["problem"] == "linear").sum()
    assert dict(zip(records["problem"], records["test"])) == {
        "Scale": "test_mine.py::test_scale",
        "rmsnorm": "test_mine.py::test_rmsnorm",
        "linear": "test_mine.py::test_linear",
    }
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["run"]["cells"] == len(records) and manifest["segments"][-1]["finished_at"]
    assert {"Scale", "rmsnorm", "linear"} <= set(manifest["problems"])

    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert f"config `pytest`, {len(records)} cells" in report
    assert "| Scale | float32 | n=8 d=4 | function | ✓ agrees |" in report
    assert "Layers (Scale, rmsnorm): 2 cells, every method agrees" in report


def test_a_crash_mid_session_keeps_the_checks_that_ran_and_compare_reads_both(saved, tmp_path, capsys):
    done = session(tmp_path, "--gradbench-save", "results", env={"CRASH": "1"})
    assert done.returncode == 3
    run_dir = (tmp_path / "results" / "latest").resolve()
    records = load(run_dir)  # records.jsonl: no parquet was written
    assert not (run_dir / "records.parquet").exists()
    assert sorted(set(records["problem"])) == ["Scale", "linear", "rmsnorm"]
    assert main(["report", str(run_dir)]) == 0
    assert "Layers (Scale, rmsnorm)" in (run_dir / "report.md").read_text()
    capsys.readouterr()
    assert main(["compare", str(saved[1]), str(run_dir)]) in (0, 1)
    out = capsys.readouterr().out
    assert saved[1].name in out and run_dir.name in out


def test_without_the_option_nothing_is_written_and_no_one_listens(tmp_path):
    done = session(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(tmp_path.rglob("manifest.json")) and not (tmp_path / "results").exists()
    assert "gradbench" not in done.stdout
    assert LISTENERS == []  # this session's own checks tell no one either
