"""The run directory: streamed records, torn lines, parquet at the end, load, resume bookkeeping."""

import json
import os
import time

import pytest

from harness import Cell, load, run_family
from harness.measure import TimingOptions
from harness.runs.executor import failed_records
from harness.runs.local import LocalExecutor
from harness.runs.store import RunStore, load_trajectories, read_jsonl

NO_TIMING = TimingOptions(rounds=0)


def make_store(tmp_path, name="t", config_hash="abcd1234"):
    return RunStore.create(tmp_path / "results", name, config_hash, {"name": name}, {"run": {}})


def record(cell_id, **fields):
    return {"cell_id": cell_id, "status": "ok", "problem": "chain", **fields}


def test_create_writes_config_manifest_and_points_latest(tmp_path):
    store = make_store(tmp_path)
    assert store.run_id.endswith("-t-abcd1234") and store.run_id[:8].isdigit()
    assert {p.name for p in store.dir.iterdir()} >= {"config.yaml", "manifest.json", "records.jsonl"}
    assert store.manifest()["run_id"] == store.run_id
    assert (tmp_path / "results/latest").resolve() == store.dir.resolve()
    second = make_store(tmp_path)  # the same second, the same config: another directory
    assert second.dir != store.dir
    assert os.readlink(tmp_path / "results/latest") == second.run_id  # relative, the newest


def test_records_stream_and_round_trip_through_parquet(tmp_path):
    store = make_store(tmp_path)
    traj = [{"cell_id": "a", "step": s, "loss": 1.0 / (s + 1), "params": [0.1 * s]} for s in range(3)]
    store.append([record("a", grad_preview=[6.0, 6.0, 6.0], trajectory=traj, n=3)])
    store.append([record("b", grad_preview=[1.5], n=None, status="mismatch")])
    # readable while running: from the jsonl, trajectories split off
    running = load(store.dir)
    assert list(running["cell_id"]) == ["a", "b"] and "trajectory" not in running.columns
    assert len(read_jsonl(store.dir / "trajectories.jsonl")) == 3
    store.finish()
    assert (store.dir / "records.parquet").exists() and (store.dir / "trajectories.parquet").exists()
    done = load(store.dir)
    assert done.loc[0, "grad_preview"] == [6.0, 6.0, 6.0]  # lists come back as lists
    assert list(done["status"]) == ["ok", "mismatch"]
    steps = load_trajectories(store.dir)
    assert steps["step"].tolist() == [0, 1, 2] and steps.loc[2, "params"] == pytest.approx([0.2])


def test_a_torn_last_line_is_skipped_when_read_and_cut_before_appending(tmp_path):
    store = make_store(tmp_path)
    store.append([record("a"), record("b")])
    store.close()
    path = store.dir / "records.jsonl"
    with open(path, "a") as f:
        f.write('{"cell_id": "c", "sta')  # a SIGKILL mid-write
    assert [r["cell_id"] for r in read_jsonl(path)] == ["a", "b"]
    assert set(load(store.dir)["cell_id"]) == {"a", "b"}
    reopened = RunStore.open(store.dir)
    assert reopened.done_ids() == {"a", "b"}
    reopened.append([record("c")])
    assert [r["cell_id"] for r in read_jsonl(path)] == ["a", "b", "c"]
    assert path.read_text().count("\n") == 3


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"cell_id": "a"}\nnot json\n{"cell_id": "b"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path)


def test_the_last_record_of_a_cell_wins_and_jsonl_newer_than_parquet_is_read(tmp_path):
    store = make_store(tmp_path)
    store.append([record("a", rel_err=1.0)])
    store.finish()
    time.sleep(0.01)
    resumed = RunStore.open(store.dir)  # a resumed run appends after the parquet was written
    resumed.append([record("b"), record("a", rel_err=2.0)])
    frame = load(store.dir)
    assert sorted(frame["cell_id"]) == ["a", "b"]
    assert frame.set_index("cell_id").loc["a", "rel_err"] == 2.0
    resumed.finish()
    assert len(load(store.dir)) == 2


def test_columns_of_mixed_types_still_write(tmp_path):
    store = make_store(tmp_path)
    store.append([record("a", gpu_id=0), record("b", gpu_id="1")])
    store.finish()
    assert sorted(load(store.dir)["gpu_id"].tolist()) == ["0", "1"]


def test_open_refuses_what_is_not_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        RunStore.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load(tmp_path)


def test_local_executor_streams_real_records_with_their_trajectories(tmp_path):
    cells = [
        Cell("weightsum", m, pattern="zero", n=4, mode="train", data="post", steps=3, lr=0.1)
        for m in ("manual", "autograd")
    ]
    store = make_store(tmp_path)
    seen = []
    LocalExecutor(device="cpu").run(
        [cells], lambda rs: (seen.append(len(rs)), store.append(rs)), NO_TIMING, {"run_id": store.run_id}
    )
    store.finish()
    frame = load(store.dir)
    assert seen == [2]
    assert set(frame["worker"]) == {"local"} and set(frame["run_id"]) == {store.run_id}
    assert frame["final_params"].tolist() == [pytest.approx([0.1] * 4)] * 2
    assert len(load_trajectories(store.dir)) == 6


def test_failed_records_carry_the_identity_of_their_cells():
    cell = Cell("linear", "manual", n=8, d=2, pattern="microbatch:2")
    (r,) = failed_records([cell], "timeout", "took over 600 s", {"run_id": "r", "worker": "w3"}, attempts=3)
    good = run_family([cell], timing=NO_TIMING)[0]
    assert set(r) == set(good) - {"trajectory"}  # the same columns as a record that ran
    assert (r["cell_id"], r["k"], r["status"], r["attempts"], r["worker"]) == (
        cell.cell_id,
        2,
        "timeout",
        3,
        "w3",
    )
    assert r["rel_err"] is None and json.dumps(r)
