"""A cell of the grid, and `run_family`: the one function every executor calls.

A family is the cells that differ only by method. `run_family` builds the data and the float64
reference once (family.py), checks each method's gradient against it, then times the methods in
interleaved rounds on one device, so that each method's ratio to `manual` is paired.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from . import gpu
from .family import Family
from .layers import get_layer, is_layer
from .measure import TimingOptions, first_call_s, interleaved, peak_bytes
from .methods import METHODS, Method, get_method
from .patterns import parse_pattern
from .problems import get_problem
from .problems.base import Problem
from .profiling import profile_records
from .record import (
    PREVIEW,
    agreement_fields,
    fail,
    finish_family,
    flat_params,
    floor_fractions,
    identity,
    now,
    preview,
    timing_fields,
    where_columns,
)
from .reference import rows_of
from .schema import Record

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
MODES = ("gradient", "train")
DEVICES = ("cpu", "cuda")
# Fields added after runs were first stored, with the value every earlier cell implied: left out
# of the id while they hold it, so a cell measured before keeps its id (resume, compare).
LATER_FIELDS = {"device": "cpu", "c": None}


@dataclass(frozen=True)
class Cell:
    """One point of the grid. Its fields, and nothing else, make its id."""

    problem: str
    method: str
    pattern: str = "full"
    dtype: str = "float32"
    device: str = "cpu"  # the device type it runs on: cpu or cuda
    n: int | None = None
    d: int | None = None
    h: int | None = None
    c: int | None = None  # classes (softmax)
    mode: str = "gradient"
    seed: int = 0
    data: str = "random"
    steps: int | None = None  # train mode
    lr: float | None = None  # train mode

    @property
    def cell_id(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if LATER_FIELDS.get(k, k) != v}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def family(self) -> tuple:
        """Everything but the method: cells with the same family share data and reference."""
        return tuple(v for k, v in asdict(self).items() if k != "method")

    @property
    def k(self) -> int:
        return parse_pattern(self.pattern).k

    @property
    def kind(self) -> str:
        """`layer` when `problem` names a layer (harness.layers), else `problem`."""
        return "layer" if is_layer(self.problem) else "problem"

    def problem_instance(self) -> Problem:
        return get_problem(self.problem)(n=self.n, d=self.d, h=self.h, c=self.c, data=self.data)

    def skip_reason(self) -> str | None:
        """Why this cell cannot run on its device, or None. Unknown names raise ValueError."""
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; known: {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.kind == "layer":
            return self._layer_skip_reason()
        try:
            problem = self.problem_instance()
            method = get_method(self.method)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        pattern = parse_pattern(self.pattern)
        return method.skip_reason(type(problem), DTYPES[self.dtype], self.device) or pattern.skip_reason(
            problem, method
        )

    def _layer_skip_reason(self) -> str | None:
        from .layers.methods import layer_skip_reason

        if self.mode != "gradient":
            return f"a layer runs in the mode gradient only, not {self.mode}"
        try:
            layer = get_layer(self.problem)
            layer(n=self.n, d=self.d, h=self.h, c=self.c)
            return layer_skip_reason(layer, self.method, self.dtype, self.device, self.pattern)
        except KeyError as e:
            raise ValueError(e.args[0]) from None


def run_family(
    cells: Sequence[Cell],
    device: str | torch.device | None = None,
    threads: int | None = None,
    timing: TimingOptions | None = None,
    context: dict | None = None,
) -> list[dict]:
    """Run cells that differ only by method; one record per cell, in the order given.

    The cells' device type is where they run; `device` names which one of that type (a worker's
    "cuda:0"), and is ignored when its type is not the cells'. `context` is merged into every
    record (run_id, gpu_id, node, worker: the executor's business). Train-mode records carry
    `trajectory`, a list of per-step rows that the store writes to trajectories.parquet.
    Exceptions in a method become its record's status.
    """
    if not cells:
        return []
    family = cells[0].family
    if any(c.family != family for c in cells):
        raise ValueError("run_family takes cells that differ only by method")
    if len({c.method for c in cells}) != len(cells):
        raise ValueError("run_family got the same method twice")
    if cells[0].kind == "layer":  # a Function beside its reference: judged by its VJP
        from .layers.family import run_layer_family

        return run_layer_family(cells, device, threads, timing, context)
    timing = timing or TimingOptions()
    device = _device(cells[0].device, device)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    started, began = now(), time.perf_counter()
    base = where_columns(device, threads, context)
    where = {"device": device.type, "started_at": started, "status": "ok"}  # where it ran
    records = {c.method: {**Record.blank(), **base, **identity(c), **where} for c in cells}

    try:
        first = cells[0]
        functions = any(c.method in METHODS and get_method(c.method).custom_function for c in cells)
        problem, dtype, pattern = first.problem_instance(), DTYPES[first.dtype], parse_pattern(first.pattern)
        setup = Family.build(problem, dtype, pattern, first.seed, device, checks_loss=functions)
    except Exception as exc:  # data or reference failed: every cell shares the failure
        for r in records.values():
            fail(r, exc)
        return list(records.values())

    with torch.no_grad():  # the first rows' outputs: all that is previewed (n x c logits are large)
        output = preview(setup.problem.output(setup.params, rows_of(setup.problem, setup.data, 0, PREVIEW)))
    for r in records.values():
        r.update(
            tol=setup.truth.tol,
            condition=setup.truth.condition,
            output_preview=output,
            bytes_moved=setup.min_bytes(),
            flops=setup.problem.flops(),
            setup_s=setup.setup_s,
            items=setup.items(),
            batch_items=list(setup.drive.held) or None,
        )

    runner = _train if cells[0].mode == "train" else _gradient
    runner(cells, setup, records, threads, timing)
    return finish_family(records, cells, began)


def _device(kind: str, given: str | torch.device | None) -> torch.device:
    """Where cells of device type `kind` run in a worker holding `given`: there when it is of
    that type; on the worker's device when this process has no CUDA (a logical GPU of a test
    cluster), and the record says so; else on `kind`."""
    if given is not None:
        given = torch.device(given)
        if given.type == kind or (kind == "cuda" and not torch.cuda.is_available()):
            return given
    return torch.device(kind)


def _applicable(cell: Cell, setup: Family) -> type[Method]:
    reason = cell.skip_reason()
    if reason:
        raise ValueError(f"not applicable: {reason}")
    return get_method(cell.method)


def _baseline(cells) -> str | None:
    """The family's method that every other one is paired with (`vs_manual`), if it has one."""
    return next((c.method for c in cells if c.method in METHODS and get_method(c.method).baseline), None)


def _gradient(cells, setup: Family, records, threads, timing: TimingOptions) -> None:
    # the CUDA context and cuBLAS handles are made here, not inside a method's first call
    gpu.warm_up(setup.device, {setup.dtype, torch.float32})
    steps: dict[str, Callable[[], None]] = {}
    syncs: dict[str, Callable[[], None]] = {}
    methods: dict[str, type[Method]] = {}
    for cell in cells:
        record = records[cell.method]
        try:
            method = _applicable(cell, setup)
            sync = setup.sync(method)
            stepper = setup.stepper(method)
            step = setup.bind(stepper)
            first = first_call_s(step, sync)  # a method that compiles does it here
            for _ in range(max(1, timing.warmup - 1)):
                step()
            sync()
            # the gradient a step leaves after repeated calls: a step must not depend on what
            # an earlier call left behind (a forgotten zero shows here)
            record.update(agreement_fields(*setup.check(method, stepper)))
            record.update(first_call_s=first, compile_s=first if method.compiles else None)
            if method.traceable_memory:
                record["peak_bytes"], record["peak_bytes_kind"] = peak_bytes(step, setup.device)
            else:
                record["peak_bytes"], record["peak_bytes_kind"] = None, "unmeasured"
            steps[cell.method], syncs[cell.method], methods[cell.method] = step, sync, method
        except Exception as exc:
            fail(record, exc)

    if not steps or timing.rounds == 0:  # rounds=0: check agreement, time nothing
        return
    # the loss alone, under no_grad (the post's "stop tracking"): what a gradient is compared to
    forward_key = "\0forward"
    problem, params, data = setup.problem, setup.params, setup.data

    def forward():
        with torch.no_grad():
            problem.loss(params, data)

    try:
        # the forward's kernels are warmed like every step's (a kernel's first launch on CUDA
        # loads its module: milliseconds)
        for _ in range(max(1, timing.warmup)):
            forward()
        began = time.perf_counter()
        samples, blocks = interleaved({**steps, forward_key: forward}, threads, timing, syncs, setup.device)
        timed_s = time.perf_counter() - began
    except Exception as exc:
        for name in steps:
            fail(records[name], exc)
        return
    for r in records.values():
        r["family_timed_s"] = timed_s
    forward_samples = samples.pop(forward_key)
    timing_fields(records, samples, setup.min_bytes(), forward_samples, _baseline(cells))
    for name in samples:
        records[name]["inner"] = blocks[name]
    floor_fractions(records, lambda: gpu.read_floor_gbps(setup.device))
    if timing.profile:
        profile_records(steps, syncs, methods, setup.device, records)


def _train(cells, setup: Family, records, threads, timing: TimingOptions) -> None:
    """SGD for `steps` steps, the methods taking turns step by step; the loss logged at each
    step is the one at the parameters before that step's update, as the post prints it."""
    runs: dict[str, tuple[Method, Callable[[], None]]] = {}
    for cell in cells:
        record = records[cell.method]
        try:
            method = _applicable(cell, setup)
            if not cell.steps or cell.lr is None:
                raise ValueError("train mode needs steps >= 1 and lr")
            # agreement: the gradient at the initial parameters, on a stepper of its own
            probe = setup.stepper(method)
            probe_step = setup.bind(probe)
            probe_step()
            probe_step()
            record.update(agreement_fields(*setup.check(method, probe)))
            stepper = setup.stepper(method)
            runs[cell.method] = (stepper, setup.bind(stepper))
            record.update(trajectory=[], lr=cell.lr, steps=cell.steps)
        except Exception as exc:
            fail(record, exc)

    times: dict[str, list[float]] = {name: [] for name in runs}
    lr, n_steps = cells[0].lr, cells[0].steps or 0
    for t in range(n_steps):
        for name, (stepper, step) in list(runs.items()):
            record = records[name]
            try:
                with torch.no_grad():
                    loss = float(setup.problem.loss(stepper.current_params(), setup.data))
                stepper.synchronize(setup.device)
                start = time.perf_counter()
                step()
                stepper.sgd(lr)
                stepper.synchronize(setup.device)
                times[name].append(time.perf_counter() - start)
                record["trajectory"].append(
                    {
                        "cell_id": record["cell_id"],
                        "step": t,
                        "loss": loss,
                        "params": flat_params(stepper.current_params()),
                    }
                )
            except Exception as exc:
                fail(record, exc)
                del runs[name]
    for name in runs:
        record = records[name]
        last = record["trajectory"][-1] if record["trajectory"] else None
        record.update(
            final_loss=last["loss"] if last else None, final_params=last["params"] if last else None
        )
        if not math.isfinite(record["final_loss"] or 0.0):
            record["diagnosis"] = (record.get("diagnosis") or "") + " training diverged (non-finite loss)"
    times = {k: v for k, v in times.items() if k in runs}
    timing_fields(records, times, setup.min_bytes(), None, _baseline(cells))
    floor_fractions(records, lambda: gpu.read_floor_gbps(setup.device))
