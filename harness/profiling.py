"""Where a step's time goes: one profiled step (torch.profiler), kept apart from the timing.

Per step it counts the operators dispatched and the kernels that do the work, the time the device
spends in them, and the step's wall time under the profiler; `bound` names what limits the step.

On CUDA, kernels are the device's (CUPTI activity) and busy time is the union of their intervals.
On the CPU there is no device to idle: a "kernel" is an aten op that does the work itself (not
one that only dispatches to others, nor a view or an allocation), and busy time is the time spent
inside those ops, their intra-op threads included. The rest of a CPU step is Python, the
dispatcher, the autograd engine and the allocator: host overhead, the CPU's counterpart of a GPU
waiting on kernel launches, and labelled `launch` the same way.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.autograd import DeviceType
from torch.autograd.profiler import profile

# Cap on the profiler's cost: one step, or as many as fill PROFILE_TARGET_S (at most
# MAX_PROFILED_STEPS) where a step is so short that one would be all profiler noise.
PROFILE_TARGET_S = 1e-3
MAX_PROFILED_STEPS = 5
# A profiled step taking more than DISTURBED times the timed median was interrupted: by other load,
# or, on a CPU with more threads than free cores, by an op waiting at its barrier for a descheduled
# thread, which would count as busy and call a stalled step compute-bound. The profiler's own cost
# is 1 to 2 us per op (autograd at n = 64 on the CPU: 276 us profiled, 269 us timed; manual 103
# and 51 us), well under this. Such a profile is tried again, PROFILE_TRIES in all, and the least
# disturbed kept; if it is still disturbed the record gets no `bound`, and says why.
DISTURBED = 5.0
PROFILE_TRIES = 3
# On CUDA the profiler slows the host, not the kernels: their durations come from the device's
# clock, while the step's wall under CUPTI grows by tens of us per kernel (an H200, fused at
# n = 1e7: kernels busy 670 us, timed step 682 us, profiled step 1.35 ms; a CUDA-graph replay of
# 24 us profiled at 231 us). So on CUDA busy time is held against the timed median, and a profile is
# disturbed when its kernels ran much longer than the timed step (the GPU was shared or throttled).
DISTURBED_BUSY = 1.5

# A step whose device is busy less than this share of its wall time is `launch`-bound: the device
# idles most of the step while the host issues work (Python, dispatcher, autograd engine, launch
# latency), so a faster kernel would hardly change it; issuing fewer kernels (fusion, CUDA graphs)
# would. On an H200 autograd at n = 1e4 kept the GPU busy 22 us of 260+ us (8%); manual at n = 1e6
# bf16 86 of 100 to 150 us (60 to 85%): half separates the two kinds of step.
LAUNCH_BUSY_FRACTION = 0.5
# A busy step reaching this share of the read probe's bandwidth is `memory`-bound. `floor_fraction`
# counts one read of the inputs, and eager code (manual, autograd) reads X twice: 0.5 is its
# ceiling, so 0.4 is an eager step within 80% of what its traffic allows, and a one-pass kernel at
# 0.4 or more is limited by bytes as well. Below it, a busy device is `compute`-bound: its time goes
# to arithmetic or to access patterns the kernels use poorly (cuBLAS on a tall-skinny X^T r), not
# to bytes. Without a byte floor (problems that declare none) a busy step is `other`.
MEMORY_FLOOR_FRACTION = 0.4
BOUNDS = ("launch", "memory", "compute", "other")

# aten ops that only alias, reshape, allocate or query: they dispatch no work of their own
# fmt: off
_NO_WORK_NAMES = (
    "as_strided", "view", "_reshape_alias", "reshape", "_unsafe_view", "alias", "t", "transpose",
    "permute", "expand", "expand_as", "unsqueeze", "squeeze", "select", "slice", "split",
    "split_with_sizes", "narrow", "unbind", "detach", "detach_", "lift_fresh", "empty",
    "empty_like", "empty_strided", "resize_", "result_type", "to", "resolve_conj", "resolve_neg",
    "contiguous", "numpy_T", "_has_compatible_shallow_copy_type", "is_nonzero", "item",
    "_local_scalar_dense", "set_", "size", "stride",
)
# fmt: on
NO_WORK = frozenset(f"aten::{name}" for name in _NO_WORK_NAMES)


@dataclass(frozen=True)
class StepProfile:
    """Per-step averages over `steps` profiled steps."""

    steps: int
    ops: float  # aten ops dispatched, nested ones included
    kernels: float  # CUDA kernels; on the CPU, aten ops that do work
    busy_s: float  # device busy time; on the CPU, time inside the ops that do work
    wall_s: float  # the step's wall time under the profiler (inflated by its per-op cost)

    def fields(self) -> dict:
        return {
            "profile_steps": self.steps,
            "ops_per_step": self.ops,
            "kernels_per_step": self.kernels,
            "busy_per_step_s": self.busy_s,
            "profiled_wall_s": self.wall_s,
        }


def steps_to_profile(expected_s: float | None) -> int:
    if not expected_s or not math.isfinite(expected_s) or expected_s <= 0:
        return 1
    return max(1, min(MAX_PROFILED_STEPS, math.ceil(PROFILE_TARGET_S / expected_s)))


def profile_step(
    step: Callable[[], None],
    sync: Callable[[], None],
    device: torch.device,
    expected_s: float | None = None,
) -> StepProfile:
    """Profile `steps_to_profile(expected_s)` calls of an already warmed step."""
    device = torch.device(device)
    steps = steps_to_profile(expected_s)
    sync()
    # torch.autograd.profiler.profile is what torch.profiler.profile wraps: the same Kineto events
    # (CPU ops; with use_device="cuda", CUDA kernels), without the wrapper's first-use import of
    # torch._inductor (3 s per process here, paid by every worker's first profiled family)
    prof = profile(use_kineto=True, use_device="cuda" if device.type == "cuda" else None)
    with kineto_lines_dropped():
        prof.__enter__()
    try:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        wall = time.perf_counter() - start
    finally:
        with kineto_lines_dropped():
            prof.__exit__(None, None, None)
    if device.type == "cuda":
        events = list(prof.function_events)
        n_ops = sum(e.device_type == DeviceType.CPU and e.name.startswith("aten::") for e in events)
        device_events = [e for e in events if e.device_type == DeviceType.CUDA]
        kernels = [e for e in device_events if not e.name.startswith(("Memcpy", "Memset"))]
        busy_us = union_us([(e.time_range.start, e.time_range.end) for e in device_events])
        n_kernels = len(kernels)
    else:
        ops = cpu_ops(prof)
        work = [(start, end) for _, start, end, works in ops if works]
        n_ops, n_kernels = len(ops), len(work)
        busy_us = sum(end - start for start, end in work) * 1e-3  # work ops never nest
    return StepProfile(
        steps=steps,
        ops=n_ops / steps,
        kernels=n_kernels / steps,
        busy_s=busy_us * 1e-6 / steps,
        wall_s=wall / steps,
    )


KINETO_LINE = b"USDT:"  # "USDT:<time> <pid>:<tid> SyncActivityProfilerHandler.cpp:52] profiler_start"


@contextmanager
def kineto_lines_dropped() -> Iterator[None]:
    """Kineto writes a `USDT: ... profiler_start` and `... profiler_stop` line to the process's
    stderr (C++, file descriptor 2) at every start and stop, at a level KINETO_LOG_LEVEL does not
    filter (torch 2.13). Around the start or the stop alone, fd 2 goes to a temporary file; then
    it is restored and every other line written meanwhile (another thread's, a warning) is written
    back, so only those lines are lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                held.seek(0)
                kept = [line for line in held.read().splitlines(True) if not line.startswith(KINETO_LINE)]
                if kept:
                    os.write(2, b"".join(kept))
    finally:
        os.close(saved)


def cpu_ops(prof) -> list[tuple[str, int, int, bool]]:
    """(name, start ns, end ns, does work) of each aten op on the CPU, from Kineto's events as
    they came, nested and deduplicated as the profiler's own event tree does it (building that
    tree took 25 ms a profile, ten times this). An op does the work itself when it is not in
    NO_WORK and no such op is nested anywhere inside it: `aten::mv` only dispatches to
    `aten::addmv_`, which is the one counted."""
    events = [
        (e.name(), e.start_ns(), e.start_ns() + e.duration_ns(), e.start_thread_id())
        for e in prof.kineto_results.events()
        if e.device_type() == DeviceType.CPU and not e.is_async()
    ]
    parent, children = _tree(events)
    gone = _merge_repeats(events, parent, children)
    work_below: set[int] = set()
    for i, (name, *_rest) in enumerate(events):
        if i in gone or not _works(name):
            continue
        up = parent[i]
        while up is not None and up not in work_below:
            work_below.add(up)
            up = parent[up]
    return [
        (name, start, end, _works(name) and i not in work_below)
        for i, (name, start, end, _) in enumerate(events)
        if i not in gone and name.startswith("aten::")
    ]


def _works(name: str) -> bool:
    return name.startswith("aten::") and name not in NO_WORK


def _tree(events: list) -> tuple[list, dict]:
    """Parent of each event and children of each: one contains another in time on its thread
    (sorted by start, the longer first; a partial overlap is no nesting)."""
    parent: list[int | None] = [None] * len(events)
    children: dict[int, list[int]] = {}
    stack: list[int] = []
    for i in sorted(range(len(events)), key=lambda i: (events[i][3], events[i][1], -events[i][2])):
        _, start, end, thread = events[i]
        while stack:
            _, _, top_end, top_thread = events[stack[-1]]
            if top_thread != thread or start >= top_end or end > top_end:
                stack.pop()
            else:
                parent[i] = stack[-1]
                children.setdefault(stack[-1], []).append(i)
                break
        stack.append(i)
    return parent, children


def _merge_repeats(events: list, parent: list, children: dict) -> set[int]:
    """An op recorded again inside itself (a dispatch layer: functorch's transforms record each
    op once per layer) is one op, the outer: the inner one goes, its children move up."""
    gone: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i in range(len(events)):
            up = parent[i]
            if i in gone or up is None or events[up][0] != events[i][0] or len(children.get(up, ())) != 1:
                continue
            children[up] = children.pop(i, [])
            for c in children[up]:
                parent[c] = up
            gone.add(i)
            changed = True
    return gone


def union_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals: kernels on several streams overlap."""
    total, end = 0.0, -math.inf
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def bound(busy_s: float | None, wall_s: float | None, floor_fraction: float | None) -> str | None:
    """`launch`, `memory`, `compute` or `other` (see the thresholds above); None when unprofiled."""
    if busy_s is None or not wall_s or wall_s <= 0:
        return None
    if busy_s / wall_s < LAUNCH_BUSY_FRACTION:
        return "launch"
    if floor_fraction is None or not math.isfinite(floor_fraction):
        return "other"
    return "memory" if floor_fraction >= MEMORY_FLOOR_FRACTION else "compute"


def profile_records(steps: dict, syncs: dict, methods: dict, device: torch.device, records: dict) -> None:
    """After the timing, out of its samples: each method's profile columns and `bound` in its record,
    or in `profile_note` why it has none."""
    for name, step in steps.items():
        record = records[name]
        reason = methods[name].unprofiled(device.type)
        if reason:
            record["profile_note"] = reason
            continue
        median = record["time_median_s"]
        try:
            p = profile_step(step, syncs[name], device, median)
            for _ in range(
                PROFILE_TRIES - 1
            ):  # a disturbed profile is tried again; the least disturbed stays
                if not disturbed(p, median, device.type):
                    break
                again = profile_step(step, syncs[name], device, median)
                p = min(p, again, key=lambda q: q.busy_s if device.type == "cuda" else q.wall_s)
        except Exception as exc:  # the timing stands without its explanation, which says why
            record["profile_note"] = f"profiler failed: {type(exc).__name__}: {exc}"
            continue
        record.update(p.fields())
        if disturbed(p, median, device.type):
            record["profile_note"] = disturbed_note(p, median, device.type)
            continue
        record["bound"] = bound(p.busy_s, step_wall_s(p, median, device.type), record["floor_fraction"])


def step_wall_s(p: StepProfile, median_s: float | None, device_type: str) -> float:
    """The wall time busy time is held against. CUDA: the timed median (see DISTURBED_BUSY). CPU:
    the profiled steps' own wall, as busy there is host time inside ops, slowed by the profiler's
    per-op cost like the rest of the step; the two from the same steps, a load spike between the
    timing and the profile cannot mix two moments (that cost leans short steps towards launch)."""
    return median_s if device_type == "cuda" and median_s else p.wall_s


def disturbed(p: StepProfile, median_s: float | None, device_type: str = "cpu") -> bool:
    if not median_s:
        return False
    if device_type == "cuda":
        return p.busy_s > DISTURBED_BUSY * median_s
    return p.wall_s > DISTURBED * median_s


def disturbed_note(p: StepProfile, median_s: float, device_type: str) -> str:
    if device_type == "cuda":
        return (
            f"disturbed: the profiled step's kernels ran {p.busy_s / median_s:.1f}x the timed median "
            "(the GPU was shared or throttled): no bound given"
        )
    return (
        f"disturbed: the profiled step took {p.wall_s / median_s:.0f}x the timed median "
        "(the machine was busy, or threads were descheduled inside ops): no bound given"
    )
