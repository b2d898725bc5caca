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


def test_softmax_and_its_function_agree_on_logical_gpus(tmp_path):
    """The chunked linear cross-entropy Function in every pattern and the dtypes a CPU runs, as
    cuda cells on two logical GPUs (computed on the CPU), with every label valid, with padding and
    ignored targets, and weighted (one loss per row): every cell agrees; numpy stays a cpu cell."""
    config = tmp_path / "softmax.yaml"
    config.write_text(
        "name: softmax\nproblems:\n  softmax:\n    - {n: [96], d: [5], c: [7]}\n"
        "    - {n: [96], d: [5], c: [7], data: padded}\n"
        "    - {n: [96], d: [5], c: [7], data: weighted}\n"
        "methods: [manual, autograd, function, numpy]\n"
        "patterns: [full, zero, microbatch:4, uneven:3, nozero:3, retain:2]\n"
        "dtypes: [float64, float32, bfloat16, float16]\ntiming: {rounds: 0}\n"
    )
    out = tmp_path / "r"
    assert main(["run", str(config), "--num-gpus", "2", "--workers", "2", "--out", str(out)]) == 0
    records = load((out / "latest").resolve())
    assert set(records["status"]) == {"ok"}, records[records["status"] != "ok"][["method", "error"]]
    cells = {c.cell_id: c for c in expand(load_config(config), available=("cpu", "cuda")).cells}
    on = {(cells[i].method, cells[i].device) for i in records["cell_id"]}
    assert on == {("manual", "cuda"), ("autograd", "cuda"), ("function", "cuda"), ("numpy", "cpu")}
    function = records[records["method"] == "function"]
    assert len(function) == 3 * 6 * 4 and function["loss_agree"].all() and records["gpu_id"].notna().all()
    padded = records[(records["data"] == "padded") & (records["pattern"] == "microbatch:4")]
    assert (padded["batch_items"].map(lambda held: held[-1]) == 0).all()  # its last micro-batch: padding
