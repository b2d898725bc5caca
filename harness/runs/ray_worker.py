"""A Ray worker: one process holding one device (a GPU, or CPU threads), running whole families.

`plan_workers` decides how many, and what each reserves; the queue (queue.py) starts them
through ray_backend.py, feeds them families and replaces the ones that die.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import ray

from ..cell import Cell, run_family
from ..measure import TimingOptions
from ..plugins import load_plugin

WARMUP = TimingOptions(min_run_time_s=1e-3, rounds=1, warmup=1)
RESOURCE_STEP = 1e-4  # Ray's granularity for fractional resources


# --- the actor ---------------------------------------------------------------------------------


class Worker:
    """One process, one device: runs families there. Ray makes it an actor (see `actor_class`)."""

    def __init__(
        self, index: int, threads: int, use_gpu: bool, plugins: Sequence[str], logical_gpus: bool = False
    ):
        import torch

        self.index = index
        self.threads = threads
        # Ray sets OMP_NUM_THREADS to the actor's CPUs (1 when fractional): say what is meant
        torch.set_num_threads(threads)
        for path in plugins:
            load_plugin(path)
        gpu_ids = ray.get_gpu_ids() if use_gpu else []
        # since Ray 2.60 a CPU actor inherits the node's CUDA_VISIBLE_DEVICES: only a GPU actor
        # may touch CUDA. Logical GPUs (declared, as tests do) run on the CPU, all of them: on a
        # machine with one real GPU, the actor pinned to "0" would otherwise take it alone
        self.device = "cuda:0" if gpu_ids and not logical_gpus and torch.cuda.is_available() else "cpu"
        self.where = {
            "gpu_id": str(gpu_ids[0]) if gpu_ids else None,  # ints, or strings: normalise
            "node": ray.get_runtime_context().get_node_id(),
            "worker": index,
        }

    def start(self) -> dict:
        """Warm up, then say where this worker is. The first family in a fresh process pays about
        a second of lazy imports (and on a GPU the CUDA context): not something to time or to
        charge to its time limit."""
        import torch

        from ..env import cuda_info, device_name
        from ..gpu import bandwidth_probe

        tiny = [Cell("linear", m, n=8, d=2) for m in ("manual", "autograd")]
        run_family(tiny, self.device, self.threads, WARMUP)
        return {
            **self.where,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node_ip": ray.util.get_node_ip_address(),
            "device": torch.device(self.device).type,
            # the kinds of cell it runs: a GPU worker runs a GPU run's CPU cells on its CPU; one
            # pinned to a logical GPU takes cuda cells as a real one would, computing on the CPU
            "runs": "cuda,cpu" if self.where["gpu_id"] is not None else "cpu",
            "device_name": device_name(torch.device(self.device)),
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            # scalars only: the row is one line of the manifest's table of workers
            **{k: v for k, v in cuda_info().items() if k != "cuda_devices" and self.device != "cpu"},
            # the peak that achieved_gbps is set against, measured on this worker's device
            **bandwidth_probe(self.device),
        }

    def run(
        self, cells: list[Cell], timing: TimingOptions, context: dict, plugins: Sequence[str]
    ) -> tuple[list[dict], float]:
        """The family's records, and the seconds run_family took here (the harness's overhead is
        the driver's wall time beyond that)."""
        for path in plugins:  # a no-op once loaded; a plugin loaded after this actor started
            load_plugin(path)
        started = time.perf_counter()
        records = run_family(cells, self.device, self.threads, timing, {**context, **self.where})
        return records, time.perf_counter() - started


def actor_class(plan: Plan):
    return ray.remote(Worker).options(
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
        max_restarts=0,  # a dead actor stays dead: the queue replaces it and counts attempts
        max_task_retries=0,
    )


# --- how many actors, with what ---------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    workers: int
    num_gpus: int  # per actor: 1, or 0 for CPU actors
    num_cpus: float  # per actor, reserved with Ray
    threads: int  # torch threads per actor
    logical_gpus: bool = False  # GPUs declared to Ray, not devices: their actors compute on the CPU


def _floor_resource(x: float) -> float:
    return math.floor(x / RESOURCE_STEP + 1e-9) * RESOURCE_STEP


def plan_workers(
    nodes: Sequence[dict],
    workers: int | None = None,
    threads: int | None = None,
    use_gpus: bool | None = None,
) -> Plan:
    """Actors for a cluster whose alive nodes have these resources ({"CPU": 16, "GPU": 8, ...}).

    With GPUs: one actor per GPU (at most `workers`), each reserving its node's CPUs per GPU, so
    that every GPU's actor fits (`num_gpus=1` alone reserves a whole CPU: on 2 CPUs and 4 GPUs
    only two actors would start). Without: `workers` CPU actors (default one per CPU), each with
    `threads` torch threads (default the CPUs divided among them).
    """
    cpus = sum(n.get("CPU", 0) for n in nodes)
    gpus = int(sum(n.get("GPU", 0) for n in nodes))
    if use_gpus is None:
        use_gpus = gpus > 0
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if use_gpus:
        if gpus == 0:
            raise ValueError("asked for GPU workers, but the Ray cluster has no GPU")
        share = min(n.get("CPU", 0) / n["GPU"] for n in nodes if n.get("GPU", 0) >= 1)
        return Plan(
            workers=min(workers or gpus, gpus),
            num_gpus=1,
            num_cpus=_floor_resource(share),
            threads=threads or max(1, int(share)),
        )
    count = workers or max(1, int(cpus))
    share = cpus / count
    threads = threads or max(1, int(share))
    return Plan(workers=count, num_gpus=0, num_cpus=_floor_resource(min(threads, share)), threads=threads)
