"""The device is part of a cell: in its id and record, chosen per method from the config's
`devices`; data and the float64 reference are made where the cell runs, the reference in chunks
of rows; the harness's own efficiency is measured."""

import hashlib
import json
from dataclasses import asdict

import pytest
import torch

from harness import Cell, run_family
from harness import reference as ref
from harness.cli import main
from harness.problems import get_problem
from harness.runs.config import load_config
from harness.runs.efficiency import sweep_efficiency
from harness.runs.grid import expand
from harness.runs.store import load
from helpers import NO_TIMING, ROOT, TINY_TIMING

SEED = ROOT / "experiments/seed.yaml"


def test_the_device_is_in_the_id_and_cpu_ids_are_those_of_before():
    cpu, cuda = Cell("linear", "manual", n=8, d=2), Cell("linear", "manual", n=8, d=2, device="cuda")
    assert cpu.cell_id != cuda.cell_id and cpu.family != cuda.family
    # a cell of a run stored before cells had a device (or a class count c) keeps its id: the
    # device left out at "cpu", c at None
    before = {k: v for k, v in asdict(cpu).items() if k not in ("device", "c")}
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert cpu.cell_id == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert (
        Cell("softmax", "manual", n=8, d=2, c=3).cell_id != Cell("softmax", "manual", n=8, d=2, c=4).cell_id
    )


def test_records_say_the_device_they_ran_on():
    (record,) = run_family([Cell("linear", "manual", n=8, d=2)], timing=NO_TIMING)
    assert record["device"] == "cpu" and record["status"] == "ok"


def test_auto_puts_each_method_on_the_best_device_it_runs_on():
    grid = expand(load_config(SEED), available=("cpu", "cuda"))
    devices = {(c.problem, c.method): c.device for c in grid.cells}
    assert devices["linear1d_post", "numpy"] == "cpu"  # numpy runs on the CPU only
    assert devices["linear1d_post", "manual"] == devices["linear1d_post", "autograd"] == "cuda"
    assert len(grid.cells) == 13 and not grid.skipped  # the seed replays all its cells anywhere
    # numpy is a family of its own, on the CPU: families never mix devices
    assert all(len({c.device for c in f}) == 1 for f in grid.families)
    cpu_only = expand(load_config(SEED), available=("cpu",))
    assert {c.device for c in cpu_only.cells} == {"cpu"} and len(cpu_only.cells) == 13


def test_an_explicit_device_skips_what_cannot_run_there():
    grid = expand(load_config(SEED), available=("cpu", "cuda"), device="cuda")
    reasons = {(c.problem, c.method): why for c, why in grid.skipped}
    assert reasons == {("linear1d_post", "numpy"): "numpy runs on the CPU only"}


def test_a_device_no_worker_has_is_skipped_with_the_reason(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("devices: [cpu, cuda]\nproblems: {linear: {n: [8], d: [2]}}\n")
    grid = expand(load_config(config), available=("cpu",))
    assert {c.device for c in grid.cells} == {"cpu"}
    assert {why for _, why in grid.skipped} == {"no worker has a cuda device here (workers: cpu)"}


@pytest.mark.parametrize(
    "problem, sizes",
    [
        ("linear", {"n": 10_000, "d": 8}),
        ("logistic", {"n": 7_001, "d": 5}),
        ("mlp", {"n": 3_000, "d": 4, "h": 6}),
    ],
)
@pytest.mark.parametrize("chunk_rows", [1_000, 2_999])
def test_the_chunked_reference_is_the_whole_batch_one(problem, sizes, chunk_rows):
    p = get_problem(problem)(**sizes)
    params, data = p.make(torch.Generator().manual_seed(3))
    whole = ref.reference_grad(p, params, data, chunk_rows=10**9)
    chunked = ref.reference_grad(p, params, data, chunk_rows=chunk_rows)
    for k in whole:
        err = ((chunked[k] - whole[k]).norm() / whole[k].norm()).item()
        assert err < 1e-12, (k, err)


def test_the_float64_twin_runs_on_a_subsample_of_large_data(monkeypatch):
    monkeypatch.setattr(ref, "TWIN_ROWS", 96)
    p = get_problem("linear")(n=1000, d=4)
    params, data = p.make(torch.Generator().manual_seed(0))
    twin, p64, d64 = ref.twin_inputs(p, params, data, multiple=5)
    assert twin.n == 95 and d64["X"].shape == (95, 4) and d64["X"].dtype == torch.float64
    assert ref.twin_inputs(p, params, {k: v[:50] for k, v in data.items()})[0] is p
    cells = [Cell("linear", m, "microbatch:5", n=1000, d=4) for m in ("manual", "autograd")]
    for r in run_family(cells, timing=NO_TIMING):
        assert r["status"] == "ok" and r["f64_rel_err"] < 1e-12


def test_the_sum_for_mean_bug_shows_in_the_subsampled_twin(monkeypatch):
    from harness.plugins import load_plugin

    load_plugin(ROOT / "experiments/plugins/post_numpy.py")
    monkeypatch.setattr(ref, "TWIN_ROWS", 16)
    (r,) = run_family([Cell("linear1d_post", "numpy", n=64)], timing=NO_TIMING)
    assert r["status"] == "mismatch" and r["f64_rel_err"] > 1  # 16x on the 16-row twin: still wrong


def test_setup_and_timed_seconds_give_the_sweep_efficiency(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "timing: {min_run_time_s: 0.02, rounds: 3}\nproblems: {linear: {n: [1000, 2000], d: [4]}}\n"
    )
    assert main(["run", str(config), "--executor", "local", "--out", str(tmp_path / "r")]) == 0
    records = load((tmp_path / "r/latest").resolve())
    assert (records["setup_s"] > 0).all() and (records["family_timed_s"] > 0).all()
    eff = sweep_efficiency(records)
    (worker,) = eff["workers"]
    assert worker["families"] == 2 and 0 < worker["efficiency"] <= 1
    assert worker["timed_s"] == pytest.approx(records.groupby("n")["family_timed_s"].first().sum(), abs=1e-3)
    manifest = json.loads(next((tmp_path / "r").glob("*/manifest.json")).read_text())
    assert manifest["efficiency"]["overall"] == eff["overall"]


@pytest.mark.gpu
def test_data_and_reference_are_made_on_the_gpu():
    (record,) = run_family([Cell("linear", "manual", n=4096, d=8, device="cuda")], timing=TINY_TIMING)
    assert record["device"] == "cuda" and record["status"] == "ok"
    p = get_problem("linear")(n=4096, d=8)
    params, data = p.make(torch.Generator("cuda").manual_seed(0))
    assert data["X"].is_cuda
    g = ref.reference_grad(p, params, data, chunk_rows=1000)
    assert g["w"].is_cuda and g["w"].dtype == torch.float64


@pytest.mark.slow
def test_gpu_check_runs_its_steps_and_prints_one_table(tmp_path):
    import subprocess
    import sys

    script = ROOT / "benchmarks/gpu_check.py"
    out = subprocess.run(
        [sys.executable, str(script), "--smoke", "--executor", "local", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "seed.yaml: 13 cells {'ok': 12, 'mismatch': 1}" in out.stdout  # the post's numpy bug
    assert "agreement: 6 of 6 cells agree" in out.stdout and "sweep efficiency: 0." in out.stdout
    assert "| problem | dtype | pattern | n | manual | autograd | fused | best GB/s |" in out.stdout
    assert (tmp_path / "summary.md").read_text().strip() == out.stdout.strip()
