"""The record: one typed definition of its columns, from which every list of them is derived.

A record is flat, JSON scalars and short lists, one per cell; records travel as plain dicts
(`Record.blank()` gives one with every column None). Columns may be added, never renamed: stored
runs are read back by name. Add one here, and the store, the reports' numeric and boolean
columns and the trajectory files know of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Union, get_args, get_origin, get_type_hints

GROUPS = ("identity", "where", "agreement", "timing", "cost", "profile", "train", "outcome", "harness")
# what a record's `status` may say, in the order summaries and the progress bar list them
STATUSES = ("ok", "mismatch", "error", "oom", "timeout")


def col(group: str, size: bool = False):
    """A column of `group`; `size` marks the problem sizes (n, d, h)."""
    assert group in GROUPS, group
    return field(default=None, metadata={"group": group, "size": size})


@dataclass
class Record:
    # identity: what the cell is (its fields make cell_id)
    run_id: str | None = col("identity")
    cell_id: str | None = col("identity")
    problem: str | None = col("identity")  # a problem's name, or a layer's
    kind: str | None = col("identity")  # "problem" or "layer": what `problem` names
    mode: str | None = col("identity")  # gradient or train
    method: str | None = col("identity")
    pattern: str | None = col("identity")
    k: int | None = col("identity")
    dtype: str | None = col("identity")
    n: int | None = col("identity", size=True)  # samples
    d: int | None = col("identity", size=True)  # features
    h: int | None = col("identity", size=True)  # hidden width
    c: int | None = col("identity", size=True)  # classes
    seed: int | None = col("identity")
    data: str | None = col("identity")  # random, or a problem's fixed data set ("post")
    steps: int | None = col("identity")  # train mode
    lr: float | None = col("identity")  # train mode
    # where it ran
    device: str | None = col("where")
    device_name: str | None = col("where")
    gpu_id: str | None = col("where")
    node: str | None = col("where")
    worker: int | str | None = col("where")
    threads: int | None = col("where")
    # agreement with the float64 reference
    rel_err: float | None = col("agreement")  # normwise, against multiplier x reference
    max_abs_err: float | None = col("agreement")
    scale: float | None = col("agreement")  # |g| / |g_ref|
    cosine: float | None = col("agreement")  # -1 is a sign error
    tol: float | None = col("agreement")
    agree: bool | None = col("agreement")
    diagnosis: str | None = col("agreement")
    f64_rel_err: float | None = col("agreement")  # the same method in float64: the formula alone
    f64_checked: bool | None = col("agreement")  # False: the method has no float64 twin
    condition: float | None = col("agreement")  # what cancellation multiplied the tolerance by
    f64_note: str | None = col("agreement")  # why the float64 twin was skipped, where it was
    # a user's Function: the loss its forward returned against the float64 reference loss, and
    # whether its backward scales by grad_output ((w * loss).backward() over w x the gradient)
    loss_value: float | None = col("agreement")
    loss_reference: float | None = col("agreement")
    loss_rel_err: float | None = col("agreement")
    loss_tol: float | None = col("agreement")
    loss_agree: bool | None = col("agreement")
    grad_output_scale: float | None = col("agreement")  # 1 when right; 1/w when grad_output is ignored
    # what the loss is a mean over in the cell's data (Problem.items: its rows unless the problem
    # says otherwise), and what each micro-batch of a pattern that splits samples held
    items: float | None = col("agreement")
    batch_items: list[float] | None = col("agreement")
    grad_preview: list[float] | None = col("agreement")
    output_preview: list[float] | None = col("agreement")
    # timing, derived from the samples by measure.summarize and measure.paired_ratio
    time_median_s: float | None = col("timing")
    time_iqr_s: float | None = col("timing")
    time_min_s: float | None = col("timing")
    time_mean_s: float | None = col("timing")
    samples: int | None = col("timing")
    inner: int | None = col("timing")  # calls per timed block
    stable: bool | None = col("timing")  # IQR / median <= 0.1
    vs_manual: float | None = col("timing")  # paired ratio to the baseline method
    vs_manual_lo: float | None = col("timing")
    vs_manual_hi: float | None = col("timing")
    first_call_s: float | None = col("timing")
    compile_s: float | None = col("timing")
    time_samples_s: list[float] | None = col("timing")  # per round, per call: the statistics' source
    forward_samples_s: list[float] | None = col("timing")  # the loss alone, the same rounds
    # cost
    peak_bytes: int | None = col("cost")
    peak_bytes_kind: str | None = col("cost")
    bytes_moved: int | None = col("cost")  # the least bytes any gradient must read
    flops: int | None = col("cost")  # a gradient step's flops, where the problem counts them
    achieved_gbps: float | None = col("cost")
    forward_median_s: float | None = col("cost")  # the loss alone, under no_grad; a layer's forward
    backward_median_s: float | None = col("cost")  # a layer's backward alone, from a retained graph
    cost_ratio: float | None = col("cost")  # gradient time / forward time
    floor_fraction: float | None = col("cost")  # achieved_gbps / the worker's read probe
    # where the time goes: one profiled step after the timing (harness.profiling), per step
    profile_steps: int | None = col("profile")  # steps profiled (a few only at tiny sizes)
    ops_per_step: float | None = col("profile")  # aten ops dispatched, nested ones included
    kernels_per_step: float | None = col("profile")  # CUDA kernels; CPU: aten ops doing work
    busy_per_step_s: float | None = col("profile")  # device busy; CPU: time inside those ops
    profiled_wall_s: float | None = col("profile")  # the step's wall time under the profiler
    bound: str | None = col("profile")  # launch, memory, compute or other
    profile_note: str | None = col("profile")  # why a timed cell was not profiled
    # train mode
    final_loss: float | None = col("train")
    final_params: list[float] | None = col("train")
    # outcome
    status: str | None = col("outcome")  # one of STATUSES
    error: str | None = col("outcome")
    attempts: int | None = col("outcome")
    started_at: str | None = col("outcome")
    finished_at: str | None = col("outcome")
    # the harness's own costs, per family (every cell of a family holds the same values): its
    # sweep efficiency is the time inside timed measurement over the wall time
    setup_s: float | None = col("harness")  # making the data and the float64 reference
    family_timed_s: float | None = col("harness")  # inside timed blocks: every method and the forward
    family_wall_s: float | None = col("harness")  # run_family from start to end

    @staticmethod
    def blank() -> dict:
        return dict.fromkeys(COLUMNS)


@dataclass
class TrajectoryRow:
    """One step of a train-mode cell: the loss before the step's update, the parameters after."""

    cell_id: str
    step: int
    loss: float
    params: list[float]


def _kinds(cls) -> dict[str, set[type]]:
    """Column -> the types it may hold besides None."""
    out = {}
    for name, hint in get_type_hints(cls).items():
        args = get_args(hint) if get_origin(hint) in (Union, type(int | None)) else (hint,)
        out[name] = {get_origin(a) or a for a in args if a is not type(None)}
    return out


_KIND = _kinds(Record)
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Record))
SIZE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Record) if f.metadata["size"])
# numbers (None -> NaN in a frame) and flags (True, False or None)
NUMERIC: tuple[str, ...] = tuple(c for c in COLUMNS if _KIND[c] and _KIND[c] <= {int, float})
BOOLEAN: tuple[str, ...] = tuple(c for c in COLUMNS if _KIND[c] == {bool})
TEXT: tuple[str, ...] = tuple(c for c in COLUMNS if _KIND[c] == {str})
TRAJECTORY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TrajectoryRow))


def group(name: str) -> tuple[str, ...]:
    """The columns of one group, in order."""
    return tuple(f.name for f in fields(Record) if f.metadata["group"] == name)
