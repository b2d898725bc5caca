"""A run on logical GPUs routes each cell by its device: the command, its own fresh local Ray."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.runs.config import load_config
from harness.runs.grid import expand
from harness.runs.store import load
from helpers import ROOT

pytestmark = pytest.mark.slow


def test_a_run_on_logical_gpus_puts_numpy_on_the_cpu_and_the_rest_on_cuda(tmp_path):
    """seed.yaml on two logical GPUs: its numpy cells are cpu cells (numpy runs on the CPU only),
    every other cell a cuda cell, each family of one device; all 13 run, the post's numpy
    gradient still 4x the reference."""
    seed = ROOT / "experiments/seed.yaml"
    out = tmp_path / "r"
    assert main(["run", str(seed), "--num-gpus", "2", "--workers", "2", "--out", str(out)]) == 0
    records = load((out / "latest").resolve())
    assert len(records) == 13 and set(records["status"]) == {"ok", "mismatch"}
    cells = {c.cell_id: c for c in expand(load_config(seed), available=("cpu", "cuda")).cells}
    assert set(records["cell_id"]) == set(cells)  # the ids of cuda cells, and of numpy's cpu ones
    on = {(cells[i].method, cells[i].device) for i in records["cell_id"]}
    assert ("numpy", "cpu") in on and {d for m, d in on if m != "numpy"} == {"cuda"}
    (numpy,) = records[records["method"] == "numpy"].itertuples()
    assert numpy.status == "mismatch" and numpy.diagnosis.startswith("4.000x the reference")
    assert records["gpu_id"].notna().all()  # pinned like real GPUs; computed on the CPU
