"""A config with layers on the Ray executor: the built-in layers and a plugin's, each cell once,
agreeing as the local run does, timed forward, backward and full, and reported."""

from __future__ import annotations

import pytest
import ray
import torch
import yaml

from harness.report import write_report
from harness.runs.config import load_config
from harness.runs.grid import expand
from harness.runs.local import LocalExecutor
from harness.runs.ray_executor import RayExecutor
from helpers import PLUGINS, TINY_TIMING, write_run

pytestmark = pytest.mark.slow

PLUGIN = str(PLUGINS / "layer_layernorm.py")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


def test_layers_config_runs_on_ray_as_locally_and_is_reported(tmp_path):
    path = tmp_path / "layers.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "layers",
                "plugins": [PLUGIN],
                "layers": {
                    "rmsnorm": {"n": 16, "d": 32},
                    "swiglu": {"n": 8, "d": 16, "h": 24},
                    "layer_layernorm": {"n": 8, "d": 16},
                },
            }
        )
    )
    grid = expand(load_config(path))
    remote: list[dict] = []
    with RayExecutor(use_gpus=False, workers=2, threads=1, plugins=[PLUGIN]) as ex:
        ex.start()
        ex.run(grid.families, remote.extend, TINY_TIMING, {"run_id": "ray"})
    assert sorted(r["cell_id"] for r in remote) == sorted(c.cell_id for c in grid.cells)
    assert {r["status"] for r in remote} == {"ok"}
    assert {r["worker"] for r in remote} <= {0, 1}
    for r in remote:
        assert r["kind"] == "layer"
        assert r["forward_median_s"] > 0 and r["backward_median_s"] > 0 and r["time_median_s"] > 0
        assert r["peak_bytes"] > 0

    threads = torch.get_num_threads()
    local: list[dict] = []
    try:
        LocalExecutor(device="cpu", threads=1).run(grid.families, local.extend, TINY_TIMING, {"run_id": "l"})
    finally:
        torch.set_num_threads(threads)
    numbers = ("status", "rel_err", "agree", "diagnosis", "f64_rel_err", "loss_rel_err")
    by_id = {r["cell_id"]: r for r in local}
    for r in remote:
        assert {k: r[k] for k in numbers} == {k: by_id[r["cell_id"]][k] for k in numbers}

    run_dir = write_run(tmp_path / "out", remote, name="layers", plugins=[PLUGIN])
    write_report(run_dir)
    section = (run_dir / "report.md").read_text().split("## Layers", 1)[1]
    assert "| forward | backward | full | vs autograd | peak memory |" in section
    for name in ("rmsnorm", "swiglu", "layer_layernorm"):
        for method in ("function", "autograd"):
            assert f"| {name} | float32 | cpu |" in section and f"| {method} |" in section
