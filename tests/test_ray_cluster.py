"""Two Ray nodes of two logical GPUs each (and a head without): one loses its node mid-run.

A node that goes away takes its actors, and the families in flight on them, with it: the queue
requeues those, the other node's actors run them, and every cell lands exactly once.
"""

from __future__ import annotations

from collections import Counter

import pytest
import ray
from ray.cluster_utils import Cluster

from harness.cell import Cell
from harness.measure import TimingOptions
from harness.runs.ray_executor import RayExecutor

pytestmark = pytest.mark.slow

SMALL = 100 * 2**20
TIMED = TimingOptions(min_run_time_s=0.02, rounds=3)  # a family takes a moment, so some are in flight


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": SMALL,
        },
    )
    nodes = [cluster.add_node(num_cpus=1, num_gpus=2, object_store_memory=SMALL) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def test_a_node_lost_mid_run_loses_no_cell_and_runs_none_twice(cluster):
    cluster, nodes = cluster
    families = [[Cell("linear", m, n=256 + i, d=8) for m in ("manual", "autograd")] for i in range(24)]
    got: list[dict] = []
    removed = []

    def lose_a_node(records):
        got.extend(records)
        if len(got) >= 4 and not removed:
            # the node of the worker that just finished: it holds its next family in flight
            (node,) = [n for n in nodes if n.node_id == records[0]["node"]]
            removed.append(node.node_id)
            cluster.remove_node(node, allow_graceful=False)

    # the nodes' GPUs are declared (logical): their actors compute on the CPU on any machine
    with RayExecutor(address="auto", cell_timeout_s=60.0, working_dir=None, logical_gpus=True) as ex:
        rows = ex.start(patience_s=None)
        assert ex.plan.workers == 4 and len({r["node"] for r in rows}) == 2
        # plain rows: no Ray internals such as a head node's resource names
        assert all(isinstance(v, (str, int, float, bool, type(None))) for r in rows for v in r.values())
        ex.run(families, lose_a_node, TIMED, {"run_id": "cluster"})
        deaths = ex.stats.deaths

    assert removed and deaths >= 1
    assert Counter(r["cell_id"] for r in got) == Counter(c.cell_id for f in families for c in f)
    assert {r["status"] for r in got} == {"ok"}
    (survivor,) = [n.node_id for n in nodes if n.node_id not in removed]
    again = [r for r in got if r["attempts"] == 2]
    # what was in flight on the lost node ran again, on the other
    assert again and {r["node"] for r in again} == {survivor}
