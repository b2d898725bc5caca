"""The harness's own cost, on this machine: a markdown table.

    .venv/bin/python benchmarks/harness_overhead.py [--families 100] [--sweep 12] [--reps 3]
                                                    [--memory 1000 10000 30000]

1. Overhead per tiny cell: a run's wall time beyond the time run_family itself took (inside the
   worker for Ray, in-process for local), divided by its cells. Ray with one worker, its actor
   started beforehand: startup is a fixed cost, shown on its own line.
2. Sweep wall time with 1 and 2 CPU workers, one torch thread each, best of `--reps` taking
   turns: a fixed-work sweep (agreement only, rounds=0: the data, the float64 reference and each
   method's gradient) and a timed one. Occupancy, the share of the workers' time spent inside
   run_family, says whether the queue kept them busy; the speed-up also needs the cores to be
   free, which on a shared machine they may not be (the load average is printed).
3. The driver's memory over sweeps of tiny cells (agreement only), each size in a fresh process,
   the families read from a generator: Python allocations during `run` (tracemalloc peak) and
   resident memory growth during it.

Targets: under 10 ms per tiny cell on Ray; 2 workers at least 1.6x faster than 1;
driver memory that does not grow with the number of cells. Not part of `make test`: it takes a
few minutes and wants a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor

import ray
import torch

import harness.runs.local as local_executor
from harness.cell import Cell, run_family
from harness.measure import TimingOptions
from harness.runs.local import LocalExecutor
from harness.runs.ray_executor import RayExecutor

TINY = TimingOptions(min_run_time_s=0.002, rounds=3)  # as the tests time a cell
AGREEMENT_ONLY = TimingOptions(rounds=0)
TIMED = TimingOptions(min_run_time_s=0.05, rounds=5)


def tiny_family(i: int) -> list[Cell]:
    # two methods a family, as small as a cell gets; seeds make every cell distinct
    return [Cell("linear", m, n=64, d=4, seed=i) for m in ("manual", "autograd")]


def tiny_families(cells: int) -> list[list[Cell]]:
    return [tiny_family(i) for i in range(cells // 2)]


def sweep_families(count: int) -> list[list[Cell]]:
    # a small MLP: cache-resident, so two workers compete for cores, not for memory bandwidth
    return [
        [Cell("mlp", m, n=10_000, d=64, h=256, seed=i) for m in ("manual", "autograd", "func")]
        for i in range(count)
    ]


def start_ray(num_cpus: int = 2) -> float:
    began = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=num_cpus,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 2**20,
        logging_level="warning",
    )
    return time.perf_counter() - began


# --- 1. overhead per tiny cell -----------------------------------------------------------------


def local_overhead(families) -> dict:
    busy = [0.0]

    def timed_run_family(*args, **kwargs):
        began = time.perf_counter()
        try:
            return run_family(*args, **kwargs)
        finally:
            busy[0] += time.perf_counter() - began

    local_executor.run_family = timed_run_family  # the same call, with a stopwatch around it
    threads = torch.get_num_threads()
    try:
        ex = LocalExecutor(device="cpu", threads=1)
        ex.run(families[:2], lambda r: None, TINY, {})  # warm up: lazy imports of the first cell
        busy[0] = 0.0
        began = time.perf_counter()
        ex.run(families, lambda r: None, TINY, {"run_id": "bench"})
        wall = time.perf_counter() - began
    finally:
        local_executor.run_family = run_family
        torch.set_num_threads(threads)
    return {"wall_s": wall, "busy_s": busy[0]}


def ray_overhead(families, in_flight: int) -> dict:
    with RayExecutor(use_gpus=False, workers=1, threads=1, in_flight=in_flight) as ex:
        began = time.perf_counter()
        ex.start()
        started = time.perf_counter() - began
        ex.run(families, lambda r: None, TINY, {"run_id": "bench"})
        return {"wall_s": ex.stats.wall_s, "busy_s": ex.stats.busy_s, "start_s": started}


# --- 2. sweep with 1 and 2 workers -------------------------------------------------------------


def _plain_warm(_) -> int:
    torch.set_num_threads(1)
    run_family(tiny_family(0), "cpu", 1, TINY)
    return os.getpid()


def _plain_share(families, timing) -> None:
    for family in families:
        run_family(family, "cpu", 1, timing)


def sweeps(families, timing: TimingOptions, reps: int) -> dict[str, tuple[float, float | None]]:
    """(wall time, occupancy) of the fastest of `reps` sweeps on Ray with 1 worker and with 2,
    and, as a control, the same families split over 1 and 2 plain processes (no Ray, no queue):
    what this machine allows right now. All four take turns, so that a burst of load from
    elsewhere hits them alike; the best of several is the one least disturbed. Occupancy is the
    share of the Ray workers' time spent inside run_family."""
    one = RayExecutor(use_gpus=False, workers=1, threads=1)
    two = RayExecutor(use_gpus=False, workers=2, threads=1)
    one.start(), two.start()  # startup is not what is compared
    spawn = multiprocessing.get_context("spawn")
    best: dict[str, tuple[float, float | None]] = {}
    with ProcessPoolExecutor(1, mp_context=spawn) as p1, ProcessPoolExecutor(2, mp_context=spawn) as p2:
        list(p1.map(_plain_warm, [0])), list(p2.map(_plain_warm, [0, 1]))
        for _ in range(reps):
            for n, ex in ((1, one), (2, two)):
                ex.run(families, lambda r: None, timing, {"run_id": "bench"})
                run = (ex.stats.wall_s, ex.stats.busy_s / (n * ex.stats.wall_s))
                best[f"ray {n}"] = min(best.get(f"ray {n}", run), run)
            for n, pool in ((1, p1), (2, p2)):
                began = time.perf_counter()
                list(pool.map(_plain_share, [families[i::n] for i in range(n)], [timing] * n))
                run = (time.perf_counter() - began, None)
                best[f"plain {n}"] = min(best.get(f"plain {n}", run), run)
    one.close(), two.close()
    return best


# --- 3. driver memory --------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(cells: int) -> dict:
    """Runs in a fresh process: a store-like sink writes each record as a JSON line. The families
    come from a generator, so what is measured is the executor's own memory; a list of cells is
    the caller's, and grows with them (each Cell's __dict__, which Python 3.11 makes lazily,
    appears when Ray pickles it: about 64 bytes a cell, owned by the list)."""
    start_ray()
    families = (tiny_family(i) for i in range(cells // 2))
    with RayExecutor(use_gpus=False, workers=2, threads=1) as ex, tempfile.TemporaryFile("w") as sink:
        ex.start()
        ex.run(tiny_families(8), lambda r: None, AGREEMENT_ONLY, {})  # warm both workers' first call

        def store(records):
            for r in records:
                sink.write(json.dumps(r, default=str) + "\n")
            sink.flush()

        peak_rss, base_rss, stop = [0], rss_bytes(), threading.Event()

        def sample():
            while not stop.wait(0.02):
                peak_rss[0] = max(peak_rss[0], rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        tracemalloc.start()
        ex.run(families, store, AGREEMENT_ONLY, {"run_id": "bench"})
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stop.set()
        sampler.join()
        return {
            "cells": ex.stats.cells,
            "wall_s": ex.stats.wall_s,
            "traced_peak": peak,
            "rss_growth": max(peak_rss[0], rss_bytes()) - base_rss,
            "rss_base": base_rss,
        }


def memory(cells: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(cells)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def overhead_rows(families: int) -> list[tuple[str, str, str]]:
    tiny = tiny_families(2 * families)
    cells = 2 * len(tiny)
    loc = local_overhead(tiny)
    init_s = start_ray()
    r2 = ray_overhead(tiny, in_flight=2)
    r1 = ray_overhead(tiny, in_flight=1)
    ray.shutdown()
    per_cell = lambda m: (m["wall_s"] - m["busy_s"]) / cells * 1e3  # noqa: E731
    return [
        ("tiny cell: run_family time (local, 1 thread)", f"{loc['busy_s'] / cells * 1e3:.2f} ms", ""),
        ("overhead per tiny cell, local executor", f"{per_cell(loc):.3f} ms", ""),
        ("overhead per tiny cell, Ray, 1 worker, 2 in flight", f"{per_cell(r2):.2f} ms", "< 10 ms"),
        ("overhead per tiny cell, Ray, 1 worker, 1 in flight", f"{per_cell(r1):.2f} ms", "< 10 ms"),
        ("Ray startup: ray.init (local instance)", f"{init_s:.1f} s", "once per run"),
        ("Ray startup: one worker (import torch, warm-up)", f"{r2['start_s']:.1f} s", "once per run"),
    ]


def sweep_rows(count: int, reps: int) -> list[tuple[str, str, str]]:
    # three logical CPUs: the 1-worker and the 2-worker executor stay up side by side, taking turns
    start_ray(num_cpus=3)
    families = sweep_families(count)
    rows = []
    what = f"{count} families of mlp n=1e4 d=64 h=256 x 3 methods, best of {reps}"
    for name, timing in (("fixed-work sweep (agreement only)", AGREEMENT_ONLY), ("timed sweep", TIMED)):
        b = sweeps(families, timing, reps)
        (r1, o1), (r2, o2), (c1, _), (c2, _) = b["ray 1"], b["ray 2"], b["plain 1"], b["plain 2"]
        head = f"{name}, {what}" if timing is AGREEMENT_ONLY else f"{name} ({_timing(timing)}), same families"
        rows += [
            (f"{head}: 1 worker", f"{r1:.2f} s", ""),
            (f"{name}: 2 workers", f"{r2:.2f} s", ""),
            (f"{name}: speed-up, 2 workers over 1", f"{r1 / r2:.2f}x", ">= 1.6x"),
            (f"{name}: worker occupancy, 1 and 2 workers", f"{o1:.0%}, {o2:.0%}", ""),
            (f"{name}, control without Ray: 1 and 2 plain processes", f"{c1:.2f} s, {c2:.2f} s", ""),
            (f"{name}, control: speed-up this machine allowed", f"{c1 / c2:.2f}x", ""),
        ]
    ray.shutdown()
    return rows


def memory_rows(sizes: list[int]) -> list[tuple[str, str, str]]:
    rows = []
    for n in sizes:
        m = memory(n)
        rows += [
            (f"driver, {m['cells']} tiny cells on 2 workers: wall", f"{m['wall_s']:.1f} s", ""),
            (
                f"driver, {m['cells']} cells: Python peak during run (tracemalloc)",
                _mib(m["traced_peak"]),
                "flat",
            ),
            (f"driver, {m['cells']} cells: RSS growth during run", _mib(m["rss_growth"]), "flat"),
        ]
    return rows


# --- the table ---------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", type=int, default=100, help="tiny families for the overhead (2 cells each)")
    p.add_argument("--sweep", type=int, default=12, help="families in the 1-vs-2-worker sweeps")
    p.add_argument("--reps", type=int, default=3, help="sweeps per worker count; the best is kept")
    p.add_argument("--memory", type=int, nargs="+", default=[1000, 10000, 30000], help="cells, memory sweeps")
    p.add_argument("--parts", nargs="+", default=["overhead", "sweep", "memory"], help="what to measure")
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return

    rows: list[tuple[str, str, str]] = []
    load_before = os.getloadavg()[0]
    if "overhead" in args.parts:
        rows += overhead_rows(args.families)
    if "sweep" in args.parts:
        rows += sweep_rows(args.sweep, args.reps)
    if "memory" in args.parts:
        rows += memory_rows(args.memory)

    print(
        f"harness overhead: {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}, ", end=""
    )
    print(f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after\n")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | target |")
    print(f"|{'-' * (width + 2)}|------:|--------|")
    for name, value, target in rows:
        print(f"| {name:<{width}} | {value} | {target} |")


def _timing(t: TimingOptions) -> str:
    return f"min_run_time_s={t.min_run_time_s:g}, rounds={t.rounds}"


def _mib(b: int) -> str:
    return f"{b / 2**20:.2f} MiB"


if __name__ == "__main__":
    main()
