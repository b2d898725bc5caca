"""The Ray executor on a CPU machine with four logical GPUs: pinning, faults, time limits, Ctrl-C.

One Ray instance serves the module (a start costs seconds); the four-GPU tests share one executor,
whose actors are killed when the class ends so that later tests find the resources free. Faults come
from a plugin file written here, which the driver loads and the executor's actors load in turn.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections import Counter

import pytest
import ray
import torch

from harness.cell import Cell
from harness.measure import TimingOptions
from harness.methods import METHODS
from harness.plugins import forget_plugin, load_plugin
from harness.runs.local import LocalExecutor
from harness.runs.ray_executor import RayExecutor
from harness.runs.ray_worker import Plan, plan_workers

pytestmark = pytest.mark.slow

TINY = TimingOptions(min_run_time_s=0.002, rounds=3)

# methods that misbehave on purpose; each is the manual gradient of the problem otherwise
PLUGIN = """
import os, time
from harness.methods import Manual, register_method


@register_method
class Dies(Manual):
    name = "raytest_dies"

    def grads_of(self, batch):
        # what a segfault or the OOM killer looks like from outside, a moment into the family
        # (an exit within a millisecond of the previous family's end can lose that one's reply)
        time.sleep(0.2)
        os._exit(1)


@register_method
class Hangs(Manual):
    name = "raytest_hangs"

    def grads_of(self, batch):
        time.sleep(3600)


@register_method
class Slow(Manual):
    name = "raytest_slow"

    def grads_of(self, batch):
        time.sleep(0.03)
        return super().grads_of(batch)

"""


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory):
    plugin = tmp_path_factory.mktemp("plugins") / "raytest_methods.py"
    plugin.write_text(PLUGIN)
    load_plugin(plugin)  # as `gradbench run` does with a config's plugins; actors follow
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=4,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        log_to_driver=False,
    )
    yield
    ray.shutdown()
    # tests that walk every registered method, or ship every loaded plugin, must not meet these
    for name in ("raytest_dies", "raytest_hangs", "raytest_slow"):
        METHODS.remove(name)
    forget_plugin(plugin)


def family(i: int, methods=("manual", "autograd"), problem="linear") -> list[Cell]:
    return [Cell(problem, m, n=16 + i, d=3) for m in methods]


def run(ex: RayExecutor, families, on_records=None) -> list[dict]:
    got: list[dict] = []

    def collect(records):
        got.extend(records)
        if on_records:
            on_records(records)

    ex.run(families, collect, TINY, {"run_id": "test"})
    return got


def assert_each_cell_once(records, families):
    want = Counter(c.cell_id for f in families for c in f)
    assert Counter(r["cell_id"] for r in records) == want


# --- pure: how many actors, with what -------------------------------------------------------


def test_plan_four_logical_gpus_on_two_cpus():
    # num_gpus=1 alone would reserve a CPU each: only two of the four actors would start
    assert plan_workers([{"CPU": 2, "GPU": 4}]) == Plan(workers=4, num_gpus=1, num_cpus=0.5, threads=1)


def test_plan_gpus_take_the_scarcest_nodes_share_of_cpus():
    nodes = [{"CPU": 16, "GPU": 8}, {"CPU": 8, "GPU": 8}, {"CPU": 4}]
    assert plan_workers(nodes) == Plan(workers=16, num_gpus=1, num_cpus=1.0, threads=1)
    assert plan_workers(nodes, workers=3).workers == 3


def test_plan_cpu_slots():
    assert plan_workers([{"CPU": 2}]) == Plan(workers=2, num_gpus=0, num_cpus=1.0, threads=1)
    assert plan_workers([{"CPU": 2}], workers=1) == Plan(workers=1, num_gpus=0, num_cpus=2.0, threads=2)
    assert plan_workers([{"CPU": 2}], workers=4) == Plan(workers=4, num_gpus=0, num_cpus=0.5, threads=1)
    assert plan_workers([{"CPU": 3, "GPU": 1}], workers=3, use_gpus=False).num_gpus == 0


def test_plan_refuses_gpus_that_are_not_there():
    with pytest.raises(ValueError, match="no GPU"):
        plan_workers([{"CPU": 2}], use_gpus=True)


def test_num_gpus_belongs_to_a_local_instance():
    with pytest.raises(ValueError, match="logical GPUs"):
        RayExecutor(address="auto", num_gpus=4)


# --- four logical GPUs ----------------------------------------------------------------------


class TestFourGpus:
    """One executor for the class, in this order: each fault leaves fresh actors starting, and the
    Ctrl-C test, which kills them all, comes last."""

    @pytest.fixture(scope="class")
    def ex(self, cluster):
        # a tiny family takes milliseconds; 3 s per cell still leaves room on a loaded machine.
        # The cluster's four GPUs are declared (logical): on a machine with one real GPU, every
        # actor still runs on the CPU, alike
        with RayExecutor(cell_timeout_s=3.0, logical_gpus=True) as ex:
            ex.start()
            yield ex

    def test_one_actor_per_gpu_each_record_says_which(self, ex):
        families = [family(i) for i in range(8)]
        records = run(ex, families)
        assert_each_cell_once(records, families)
        assert ex.plan == Plan(workers=4, num_gpus=1, num_cpus=0.5, threads=1, logical_gpus=True)
        assert {r["status"] for r in records} == {"ok"}
        assert {r["gpu_id"] for r in records} == {"0", "1", "2", "3"}
        assert {r["worker"] for r in records} == {0, 1, 2, 3}
        # logical GPUs: pinned and recorded, but the cells run on the CPU, with the threads said
        assert {(r["device"], r["threads"], r["attempts"], r["run_id"]) for r in records} == {
            ("cpu", 1, 1, "test")
        }
        assert all(r["node"] for r in records)
        # a family's methods ran side by side on one worker, so their ratio is paired
        for cells in families:
            assert len({r["worker"] for r in records if r["cell_id"] in {c.cell_id for c in cells}}) == 1

    def test_worker_killed_mid_run_loses_no_cell(self, ex):
        pids = {w["worker"]: w["pid"] for w in ex.pool.rows()}
        killed = []

        def kill_the_worker_that_just_finished(records):
            # it already holds its next family (two in flight per actor) and is running it now
            if not killed:
                killed.append(records[0]["worker"])
                os.kill(pids[records[0]["worker"]], signal.SIGKILL)

        families = [family(i, ("manual", "raytest_slow")) for i in range(12)]
        records = run(ex, families, kill_the_worker_that_just_finished)
        assert_each_cell_once(records, families)
        assert {r["status"] for r in records} == {"ok"}
        assert ex.stats.deaths == 1 and ex.stats.replaced == 1
        assert Counter(r["attempts"] for r in records)[2] == 2  # the one family it was running
        new_pid = {w["worker"]: w["pid"] for w in ex.pool.rows()}.get(killed[0])
        assert new_pid != pids[killed[0]]

    def test_hanging_family_times_out_and_the_run_goes_on(self, ex):
        hung = [Cell("linear", "raytest_hangs", n=8, d=2)]
        families = [hung] + [family(i) for i in range(4)]
        began = time.monotonic()
        records = run(ex, families)
        assert time.monotonic() - began < 30
        assert_each_cell_once(records, families)
        r = next(r for r in records if r["cell_id"] == hung[0].cell_id)
        assert (r["status"], r["attempts"]) == ("timeout", 1)
        assert "limit of 3 s" in r["error"]
        assert {r["status"] for r in records if r["cell_id"] != hung[0].cell_id} == {"ok"}
        assert ex.stats.timeouts == 1

    def test_cell_that_always_kills_its_worker_fails_after_three_attempts(self, ex):
        deadly = family(0, ("manual", "raytest_dies"))
        families = [deadly] + [family(i) for i in range(1, 6)]
        records = run(ex, families)
        assert_each_cell_once(records, families)
        by_id = {r["cell_id"]: r for r in records}
        for cell in deadly:
            r = by_id[cell.cell_id]
            assert (r["status"], r["attempts"]) == ("error", 3)
            assert "worker died 3 times" in r["error"] and "ActorDiedError" in r["error"]
        others = [by_id[c.cell_id] for f in families[1:] for c in f]
        assert {(r["status"], r["attempts"]) for r in others} == {("ok", 1)}
        assert ex.stats.deaths == 3

    def test_ctrl_c_hands_over_what_finished_then_stops(self, ex):
        ex.start()  # the faults above left fresh actors starting
        families = [family(i, ("manual", "raytest_slow")) for i in range(40)]
        timer = threading.Timer(1.5, _thread.interrupt_main)  # Ctrl-C, as the driver sees it
        got: list[dict] = []
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                ex.run(families, got.extend, TINY, {"run_id": "test"})
        finally:
            timer.cancel()
        assert 0 < len(got) < 80 and len(got) % 2 == 0  # whole families only
        assert ex.pool.rows() == []  # actors killed


def test_worker_that_cannot_start_fails_the_run_softly(cluster):
    bad = ["/nonexistent/plugin.py"]
    with RayExecutor(workers=1, use_gpus=False, plugins=bad, max_attempts=2) as ex:
        families = [family(0), family(1)]
        records = run(ex, families)
    assert_each_cell_once(records, families)
    assert {r["status"] for r in records} == {"error"}
    assert all("failed to start 2 times" in r["error"] and "plugin" in r["error"] for r in records)


# --- CPU slots, and the same numbers as the local executor -----------------------------------


def test_cpu_workers_agree_exactly_with_the_local_executor(cluster):
    families = [
        [Cell(problem, m, dtype=dtype, pattern=pattern, n=64, d=4) for m in ("manual", "autograd", "func")]
        for problem in ("linear", "logistic")
        for dtype in ("float32", "float64")
        for pattern in ("full", "microbatch:4")
    ]
    with RayExecutor(use_gpus=False, workers=2, threads=1) as ex:
        ex.start()
        remote = run(ex, families)
    assert ex.plan == Plan(workers=2, num_gpus=0, num_cpus=1.0, threads=1)
    threads = torch.get_num_threads()
    local: list[dict] = []
    try:
        LocalExecutor(device="cpu", threads=1).run(families, local.extend, TINY, {"run_id": "test"})
    finally:
        torch.set_num_threads(threads)
    assert_each_cell_once(remote, families)
    assert {(r["device"], r["gpu_id"], r["threads"]) for r in remote} == {("cpu", None, 1)}
    assert {r["worker"] for r in remote} == {0, 1}
    numbers = ("status", "rel_err", "max_abs_err", "scale", "cosine", "agree", "f64_rel_err", "grad_preview")
    by_id = {r["cell_id"]: r for r in local}
    for r in remote:
        assert {k: r[k] for k in numbers} == {k: by_id[r["cell_id"]][k] for k in numbers}
