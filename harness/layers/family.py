"""`run_layer_family`: a layer's cells that differ only by method, judged against one float64
truth and then timed; what `harness.cell.run_family` runs for a family whose name is a layer's.

Each method is held against the truth in every layout (layouts.py) and in float64 (its twin);
the record says per input what disagrees (diagnosis.py). Timing is `timing.time_layer`'s, on
the steps `LayerStep` gives; rounds=0 checks agreement only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch._functorch.config

from .. import gpu
from ..cell import DTYPES, _device
from ..measure import TimingOptions, first_call_s
from ..record import fail, finish_family, identity, now, preview, where_columns
from ..schema import Record
from .base import Layer, Outputs, get_layer
from .diagnosis import diagnose
from .layouts import LAYOUTS, outputs_of
from .methods import get_layer_method, layer_skip_reason
from .truth import LayerTruth
from .verdict import LayerVerdict, judge


@dataclass
class LayerStep:
    """One method on the family's inputs, for timing: `forward()` returns the outputs with their
    graph; `backward(outputs)` backpropagates grad_outputs through them, keeping the graph
    (retain_graph), the inputs' gradients set to None first; `full()` is both."""

    forward: Callable[[], Outputs]
    backward: Callable[[Outputs], None]
    full: Callable[[], None]


def layer_step(fn: Callable[..., Outputs], truth: LayerTruth) -> LayerStep:
    leaves = {k: (v.detach().requires_grad_(v.is_floating_point())) for k, v in truth.inputs.items()}
    grad_outputs = truth.grad_outputs

    def forward() -> Outputs:
        return fn(**leaves)

    def backward(outputs: Outputs) -> None:
        for v in leaves.values():
            v.grad = None
        torch.autograd.backward(outputs_of(outputs), grad_outputs, retain_graph=True)

    def full() -> None:
        for v in leaves.values():
            v.grad = None
        torch.autograd.backward(outputs_of(fn(**leaves)), grad_outputs)

    return LayerStep(forward, backward, full)


# A compiled backward donates its saved buffers unless told not to when it compiles, and then
# refuses retain_graph=True, which the backward timed alone needs (timing.py); the AOT autograd
# cache does not key on donation, so an entry compiled with it would come back
@torch._functorch.config.patch(donated_buffer=False, enable_autograd_cache=False)
def run_layer_family(
    cells: Sequence,
    device: str | torch.device | None = None,
    threads: int | None = None,
    timing: TimingOptions | None = None,
    context: dict | None = None,
    layer: type[Layer] | None = None,
    layouts: tuple[str, ...] = LAYOUTS,
) -> list[dict]:
    """One record per cell (harness.Cell, its `problem` a layer's name), in the order given.

    `layer` is the class when it is not registered (harness.check_layer's own); `layouts` the
    layouts besides the contiguous one that each method is also run in (layouts.LAYOUTS).
    Exceptions in a method become its record's status, naming its Function and layout."""
    if not cells:
        return []
    first = cells[0]
    if any(c.family != first.family for c in cells):
        raise ValueError("run_layer_family takes cells that differ only by method")
    timing = timing or TimingOptions()
    device = _device(first.device, device)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    began = time.perf_counter()
    base = where_columns(device, threads, context)
    start = {"started_at": now(), "status": "ok", "kind": "layer"}
    records = {
        c.method: {**Record.blank(), **base, **identity(c), **start, "device": device.type} for c in cells
    }
    cls = layer or get_layer(first.problem)
    try:
        instance = cls(n=first.n, d=first.d, h=first.h, c=first.c)
        gen = torch.Generator(device).manual_seed(first.seed)
        truth = LayerTruth.of(instance, instance.make(gen), DTYPES[first.dtype], gen)
    except Exception as exc:  # inputs or truth failed: every cell shares the failure
        for r in records.values():
            fail(r, exc)
        return [records[c.method] for c in cells]
    setup_s = time.perf_counter() - began
    itemsize = torch.empty((), dtype=DTYPES[first.dtype]).element_size()
    for r in records.values():
        r.update(
            tol=truth.grad_tol,
            condition=truth.condition,
            output_preview=preview(next(iter(truth.outputs.values()))),
            bytes_moved=instance.min_bytes(itemsize),
            setup_s=setup_s,
        )

    gpu.warm_up(device, {DTYPES[first.dtype], torch.float32})
    steps: dict[str, LayerStep] = {}
    for cell in cells:
        record = records[cell.method]
        try:
            reason = layer_skip_reason(cls, cell.method, cell.dtype, device.type, cell.pattern)
            if reason:
                raise ValueError(f"not applicable: {reason}")
            method = get_layer_method(cell.method)
            fn = method.callable(instance)
            twin_skipped = method.twin_skip_reason(cls)
            twin_fn = None if twin_skipped or cell.dtype == "float64" else fn
            step = layer_step(fn, truth)
            # the first forward and backward, before anything else calls it: a compiled method
            # compiles here, and that time is kept apart from the step's (as a problem's cell does)
            try:
                first = first_call_s(step.full, lambda: gpu.synchronize(device))
            except Exception:  # raised again where it is judged, naming the Function that raised
                first = None
            record.update(first_call_s=first, compile_s=first if method.compiles else None)
            verdict = judge(fn, truth, cls.rows, twin_fn, twin_skipped, layouts)
            record.update(agreement_fields(verdict, instance, cell.dtype))
            if verdict.raised is not None:
                fail(record, verdict.raised)
            steps[cell.method] = step
        except Exception as exc:
            fail(record, exc)

    if steps and timing.rounds != 0:  # rounds=0: agreement only
        from .timing import time_layer  # the layer timing: forward, backward, full, peak memory

        timed = time.perf_counter()
        try:
            time_layer(steps, records, device, threads, timing)
        except Exception as exc:
            for name in steps:
                fail(records[name], exc)
        for r in records.values():
            r["family_timed_s"] = time.perf_counter() - timed

    return finish_family(records, cells, began)


def agreement_fields(v: LayerVerdict, layer: Layer, dtype: str) -> dict:
    """The record's agreement columns: the gradients of all inputs at once (rel_err, scale,
    cosine against the all-at-once tolerance), the forward's value (loss_* columns hold the
    outputs' normwise error), the grad_output check, the twin, and per input the diagnosis."""
    sizes = {s: layer.size(s) for s in ("n", "d", "h", "c")}
    g = v.grads
    twin_rel = v.twin.rel_err if v.twin is not None else (g.rel_err if dtype == "float64" else None)
    return {
        "rel_err": g.rel_err,
        "max_abs_err": g.max_abs_err,
        "scale": g.scale,
        "cosine": g.cosine,
        "tol": g.tol,
        "agree": v.agree,
        "diagnosis": diagnose(v, sizes, dtype),
        "f64_rel_err": twin_rel,
        "f64_checked": twin_rel is not None,
        "f64_note": v.twin_skipped,
        "loss_rel_err": v.output.rel_err,
        "loss_tol": v.output.tol,
        "loss_agree": v.output.within_tol and all(p.agree for p in v.output.per_param.values()),
        "grad_output_scale": v.grad_output.scale,
        "grad_preview": v.preview,
    }
