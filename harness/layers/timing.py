"""Timing a layer's methods as the field times layers (Liger-Kernel's benchmark tables): the
forward, the backward alone from a retained graph, and both (the "full" step), every method's
three taking turns in the same interleaved rounds (measure.interleaved), so that methods and
steps are paired round by round; and the peak memory of one full step per method.

Fills each record's forward_median_s, backward_median_s, time_median_s (the full step: its
statistics and samples, as a problem's gradient step fills them), vs_manual (the full step's
ratio to autograd's, paired round by round: a layer's baseline is its reference differentiated),
and peak_bytes.
"""

from __future__ import annotations

import torch

from ..measure import TimingOptions, interleaved, paired_ratio, peak_bytes, summarize
from ..record import fail
from .methods import get_layer_method

STEPS = ("forward", "backward", "full")
BASELINE = "autograd"  # the reference differentiated: what a Function's time is held against


def time_layer(
    steps: dict, records: dict[str, dict], device: torch.device, threads: int, timing: TimingOptions
) -> None:
    """Time each method's `LayerStep` (harness.layers.family) and fill its record (by method name)."""
    fns = {}
    for name, step in steps.items():
        try:
            fns.update(_prepared(name, step, records[name], device, timing))
        except Exception as exc:  # this method's steps fail; the others are still timed
            fail(records[name], exc)
    if not fns:
        return
    timed = list(dict.fromkeys(name for name, _ in fns))
    keys = {f"{name}\0{part}": fn for (name, part), fn in fns.items()}
    samples, blocks = interleaved(keys, threads, timing, device=device)
    by = {tuple(k.split("\0")): v for k, v in samples.items()}
    base = by.get((BASELINE, "full"))
    for name in timed:
        full = by[(name, "full")]
        stats = summarize(full)
        ratio = paired_ratio(full, base) if base is not None else (None, None, None)
        forward_s = summarize(by[(name, "forward")])["time_median_s"]
        records[name].update(
            stats,
            time_samples_s=[float(x) for x in full],
            forward_samples_s=[float(x) for x in by[(name, "forward")]],
            forward_median_s=forward_s,
            backward_median_s=summarize(by[(name, "backward")])["time_median_s"],
            vs_manual=ratio[0],
            vs_manual_lo=ratio[1],
            vs_manual_hi=ratio[2],
            cost_ratio=stats["time_median_s"] / forward_s if forward_s else None,
            inner=blocks[f"{name}\0full"],
        )
        floor = records[name].get("bytes_moved")
        t = stats["time_median_s"]
        records[name]["achieved_gbps"] = floor / t / 1e9 if floor and t > 0 else None


def _prepared(name: str, step, record: dict, device: torch.device, timing: TimingOptions) -> dict:
    """The method's three timed calls, warmed (a compiled method compiled while it was judged,
    before any of this); the peak memory of its full step recorded."""
    sync = _sync(device)
    for _ in range(max(1, timing.warmup)):
        step.full()
    outputs = step.forward()  # the graph every timed backward runs through again
    step.backward(outputs)
    sync()
    if get_layer_method(name).compiles and device.type != "cuda":
        # the dispatcher's count runs a compiled step as eager code: not the compiled one's memory
        record["peak_bytes"], record["peak_bytes_kind"] = None, "unmeasured"
    else:
        record["peak_bytes"], record["peak_bytes_kind"] = peak_bytes(step.full, device)
    return {
        (name, "forward"): step.forward,
        (name, "backward"): _backward_of(step, outputs),
        (name, "full"): step.full,
    }


def _backward_of(step, outputs):
    def backward() -> None:
        step.backward(outputs)

    return backward


def _sync(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
