"""Timing and memory of a gradient step, with torch.utils.benchmark underneath.

Raw per-call times are kept; statistics are derived from them in one place (`summarize`).
Methods of a family take turns block by block (A B C, A B C, ...), so the ratio of two methods
is measured on the same device at the same moment, round by round (`paired_ratio`).
"""

from __future__ import annotations

import math
import time
import timeit
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark.utils.common import set_torch_threads
from torch.utils.benchmark.utils.timer import timer as benchmark_clock

from . import gpu

STABLE_IQR = 0.1  # IQR / median at most this: torch.utils.benchmark warns above it too


@dataclass(frozen=True)
class TimingOptions:
    min_run_time_s: float = 0.05  # time spent measuring each method of a family
    # blocks per method, interleaved: the samples; 0 checks agreement only. 41 makes a block of the
    # default budget about 1.2 ms, shorter than a scheduler's time slice, so that on a shared machine
    # some rounds run undisturbed: unchanged reruns on two busy cores differed by a tenth as often
    # at 41 rounds as at 11 (benchmarks/aa_compare.py, docs/compare.md)
    rounds: int = 41
    warmup: int = 3  # calls before anything is measured (lazy init, caches, allocator)
    # zero a 256 MB buffer before every timed call (gpu.l2_flusher, as triton's do_bench does), so
    # that no call reads what the one before left in L2: cold-cache times
    flush_l2: bool = False
    # after the timing, one profiled step per method: where its time goes (harness.profiling)
    profile: bool = True


FLUSHED_CALLS = 10  # calls per sample under flush_l2: each pays an untimed flush


class BlockTimer:
    """Blocks of calls of fn, timed as torch.utils.benchmark.Timer times them (its clock, which
    synchronizes the accelerator before each reading, and its thread count) but without the
    warm-up Timer.timeit runs before every block: max(number // 100, 2) untimed calls, so a
    block of one call cost three. The steps are warmed before any block, and each method's
    blocks follow its own earlier ones; on quick.yaml those warm-ups were 11 s of the workers'
    40 s inside timing, against 17.5 s of samples."""

    def __init__(self, fn: Callable[[], None], threads: int):
        self.timer = timeit.Timer(stmt="fn()", globals={"fn": fn}, timer=benchmark_clock)
        self.threads = threads  # Timer's default num_threads is 1, not the process's: say it

    def mean(self, number: int) -> float:
        """Seconds per call over one block of `number` calls."""
        with set_torch_threads(self.threads):
            # Timer's floor: even a C++ timer call takes about 50 ns
            return max(self.timer.timeit(number), 1e-9) / number


def make_timer(fn: Callable[[], None], threads: int) -> BlockTimer:
    return BlockTimer(fn, threads)


def block_size(timer: BlockTimer, target_s: float) -> int:
    """Calls per block so that a block lasts about target_s (timeit.autorange's 1-2-5 ladder)."""
    number = 1
    while True:
        t = timer.mean(number) * number
        if t >= target_s or number >= 10**7:
            return number
        number = max(number * 2, int(number * 1.2 * target_s / max(t, 1e-9)))


def interleaved(
    fns: dict[str, Callable[[], None]],
    threads: int,
    opts: TimingOptions,
    syncs: dict[str, Callable[[], None]] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per-call times of each fn, one sample per round, the fns taking turns within a round;
    and the calls per block of each. `syncs[name]` waits for what fn `name` queued (a method's
    own `synchronize`); the block timer's clock synchronizes the accelerator around each block."""
    syncs = syncs or {}
    timers = {name: make_timer(fn, threads) for name, fn in fns.items()}
    target = opts.min_run_time_s / opts.rounds
    blocks = {name: block_size(t, target) for name, t in timers.items()}
    flush = gpu.l2_flusher(device) if opts.flush_l2 else None
    if flush is not None:
        blocks = {name: min(b, FLUSHED_CALLS) for name, b in blocks.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(opts.rounds):
        for name, timer in timers.items():
            syncs.get(name, _nothing)()
            if flush is None:
                samples[name].append(timer.mean(blocks[name]))
            else:  # a block timer would time the flushes too: call by call, the flush left out
                times = gpu.flushed_call_times(fns[name], blocks[name], flush, device)
                samples[name].append(sum(times) / len(times))
    return samples, blocks


def _nothing() -> None:
    pass


def summarize(times: list[float]) -> dict:
    t = np.asarray(times, dtype=float)
    q1, median, q3 = np.percentile(t, [25, 50, 75])
    return {
        "time_median_s": float(median),
        "time_iqr_s": float(q3 - q1),
        "time_min_s": float(t.min()),
        "time_mean_s": float(t.mean()),
        "samples": int(t.size),
        "stable": bool((q3 - q1) <= STABLE_IQR * median),
    }


def paired_ratio(times: list[float], base: list[float]) -> tuple[float, float, float]:
    """Median of the per-round ratios times/base, with a distribution-free 95% interval.

    The interval is the pair of order statistics whose ranks bracket the median with
    probability 0.95 under Binomial(R, 1/2) (normal approximation): R = 11 rounds gives ranks
    2 and 10 of 11.
    """
    r = np.sort(np.asarray(times, dtype=float) / np.asarray(base, dtype=float))
    n = r.size
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return float(np.median(r)), float(r[lo]), float(r[hi])


def first_call_s(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


class _LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage alive at once, counted at the dispatcher: every tensor an op
    makes, in forward and backward, freed when its storage is collected."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self._seen or storage.nbytes() == 0:
            return
        self._seen.add(key)
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out  # a view or an in-place op: no new storage
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def peak_bytes(fn: Callable[[], None], device: torch.device) -> tuple[int | None, str]:
    """(bytes, what they are) for one call of fn, beyond what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base, "cuda_max_allocated"
    try:
        with _LiveBytes() as mode:
            fn()
        return mode.peak, "torch_live_tensors"
    except Exception:  # a step that cannot run under a dispatch mode (compiled, numpy)
        return None, "unmeasured"
