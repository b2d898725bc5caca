"""Time left in a run, from what each family is expected to cost and what finished ones took.

A family's cost on one worker is predicted in three parts:

    fixed    per method: its timing budget (`min_run_time_s`, and 0.8 of it again to size the
             blocks: quick.yaml's small families spent 1.6 to 2x their budgets) and the
             harness's own work around it; the loss alone is timed as one more
    data     step-equivalents x bytes per step / bandwidth: first call, warm-up, the agreement
             check (twice in the dtype, twice in float64), the memory trace, and `rounds` timed
             calls once a call outlasts its block's share; a step is its bytes (the data, n x d,
             and a hidden layer's n x h) over a bandwidth plus its flops (6 n d h) over a rate,
             times the pattern's evaluations (nozero:k and retain:k: k); and the family's
             set-up, passes over the data in float64 (the data, the reference)
    compile  a method whose first call compiles: a worker's first compile costs most (the
             compiler's own start), each later new shape or dtype less, and a shape and dtype
             the worker compiled already nothing; observed as the family's time beyond its
             other two parts

As families without a compile finish, the fixed and data parts are scaled by two factors fitted
to the observed seconds (ridge regression toward their common ratio, so a part no finished
family has exercised yet moves with the other; recent families weigh most, since the machine's
speed drifts as other jobs come and go); each problem then gets a factor of its own, from its
finished families (an MLP's step costs more around its timing than a linear one's); and the
compile costs become the mean of the observed ones. The remaining families are then laid out in
submission order on the workers, each taking the next family when its last one ends (executors
hand families out in order); the time left is when the last worker is done.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ..cell import DTYPES, Cell
from ..measure import TimingOptions
from ..methods import get_method
from ..patterns import parse_pattern


@dataclass(frozen=True)
class Prior:
    """What a family costs before anything has been measured (CPU figures from quick.yaml on a
    2-core machine, one thread per worker; CUDA ones are guesses the first families correct)."""

    per_method_s: float = 0.015  # harness work around one method: stepper, check, memory trace
    per_family_s: float = 0.03  # a family's own start and end
    # the family's set-up (data, the float64 reference and its condition estimate) in float64
    # passes over the data: 0.6 to 0.7 s at n = 1e5, d = 64 (51 MB) on the 2-core CPU
    setup_passes: float = 80.0
    bytes_per_s: float = 6e9
    flops_per_s: float = 30e9  # float32; float64 half as many
    first_compile_s: float = 10.0
    next_compile_s: float = 3.0
    steps_per_method: int = 12  # calls besides the timed rounds (see the module docstring)


PRIORS = {
    "cpu": Prior(),
    # set-up on CUDA: about 2 s at n = 1e8, d = 64 once its per-sample terms went in large chunks
    # (an estimate: the H200 took 5 to 9 s before, of which most was 3,000 small chunks)
    "cuda": Prior(
        bytes_per_s=300e9, flops_per_s=5e12, first_compile_s=30.0, next_compile_s=5.0, setup_passes=12.0
    ),
}
BUDGET_SPENT = 1.8  # seconds spent per second of a method's timing budget (see "fixed" above)
PRIOR_WEIGHT = 2.0  # the prior counts as this many typical families in the fit
HALF_LIFE = 2  # families per worker after which an observation counts half


def compiles(method: str) -> bool:
    """Whether the method's first call is a compile (a capability of Methods)."""
    return get_method(method).compiles


@dataclass(frozen=True)
class FamilyCost:
    fixed_s: float
    data_s: float
    compile_key: tuple | None  # the shape and dtype a compiling method sees; None: no compile


def prior_of(cell: Cell) -> Prior:
    return PRIORS.get(cell.device, PRIORS["cpu"])


def family_cost(cells: Sequence[Cell], timing: TimingOptions) -> FamilyCost:
    cell = cells[0]
    prior = prior_of(cell)
    methods = len(cells)
    itemsize = DTYPES[cell.dtype].itemsize
    # a step is bound by the bytes it moves (the data, n x d, a hidden layer, n x h, the logits of
    # c classes, n x c) or by its arithmetic (forward and backward: about 6 n d h, or n d c,
    # multiply-adds' worth of flops)
    n, d, h, c = cell.n or 1, cell.d or 1, cell.h, cell.c
    moved = n * (d + (h or 0) + (c or 0) + 1) * itemsize
    flops = 6.0 * n * d * (h or 1) * (c or 1)
    pattern = parse_pattern(cell.pattern)
    step_s = pattern.multiplier * (moved / prior.bytes_per_s + flops * itemsize / 4 / prior.flops_per_s)
    # the float64 twin of the check reads twice as many bytes as a float32 step
    steps = prior.steps_per_method + 2 * 8 / itemsize
    if cell.mode == "train":
        fixed = prior.per_family_s + methods * prior.per_method_s
        data = methods * (cell.steps or 0) * 2 * step_s  # a step and the loss logged before it
    else:
        timed = methods + 1 if timing.rounds else 0  # the loss alone is timed too
        fixed = (
            prior.per_family_s + methods * prior.per_method_s + timed * BUDGET_SPENT * timing.min_run_time_s
        )
        # a timed round lasts its share of the budget, or one call where a call is longer
        over = max(0.0, step_s - timing.min_run_time_s / max(timing.rounds, 1))
        data = methods * (steps * step_s + timing.rounds * over) + timing.rounds * over / 3
    data += prior.setup_passes * n * (d + (h or 0) + (c or 0) + 1) * 8 / prior.bytes_per_s
    key = None
    if any(compiles(c.method) for c in cells):
        rows = cell.pattern if pattern.needs_batch else None  # micro-batches are other shapes
        key = (cell.problem, cell.n, cell.d, cell.h, cell.c, cell.dtype, rows)
    return FamilyCost(fixed, data, key)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _family_seconds(records: list[dict]) -> float:
    """The family's wall time in its worker: set-up (data, float64 reference) included, which
    the cells' own start and finish leave out (about 0.1 s a family of quick.yaml on the CPU, a
    quarter of it); 0 for records of cells that never ran."""
    wall = records[0].get("family_wall_s")
    if wall is not None and wall == wall:
        return float(wall)
    try:
        took = max(map(_seconds, (r["finished_at"] for r in records)))
        return took - min(map(_seconds, (r["started_at"] for r in records)))
    except (KeyError, TypeError, ValueError):
        return 0.0


class Estimate:
    """Time left in a run of `families` on `workers` workers. `finished(records)` as each family
    returns; `remaining_s()` and `compiling()` at any time, from any thread."""

    def __init__(
        self,
        families: Sequence[Sequence[Cell]],
        timing: TimingOptions,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.costs = [family_cost(f, timing) for f in families]
        self.priors = [prior_of(f[0]) for f in families]
        self.workers = max(1, workers)
        self.clock = clock
        self.started = clock()
        self._index = {c.cell_id: i for i, f in enumerate(families) for c in f}
        self._left = list(range(len(families)))  # unfinished, in submission order
        self._observed: list[tuple[float, float, float]] = []  # (fixed, data, seconds)
        self._observed_kind: list[str] = []  # each observation's problem
        self._scale = (1.0, 1.0)
        self._kind_factor: dict[str, float] = {}
        self._kinds = [f[0].problem for f in families]
        self._first: list[float] = []  # each worker's first compile, observed
        self._next: list[float] = []  # later compiles
        self._compiled_on: dict[object, set] = {}  # worker -> compile keys it has seen
        self._free: dict[object, float] = {}  # worker -> when its last family returned
        self._overheads: list[float] = []  # per family, beyond its time in the worker
        self._lock = threading.Lock()

    # -- learning from finished families --------------------------------------------------------

    def finished(self, records: list[dict]) -> None:
        if not records:
            return
        with self._lock:
            i = self._index.get(records[0]["cell_id"])
            if i is None or i not in self._left:
                return
            self._left.remove(i)
            worker, now = records[0].get("worker"), self.clock()
            previous = self._free.get(worker)
            self._free[worker] = now
            cost = self.costs[i]
            took = _family_seconds(records)
            if previous is not None and took > 0:
                # what the worker's time leaves out: handing the family over, sending its records
                # back, writing them (the worker's first family also holds its start: not counted)
                self._overheads.append(max(0.0, (now - previous) - took))
            if cost.compile_key is None:
                if took > 0:  # records made for cells that never ran (a timeout, a dead worker): 0
                    self._observed.append((cost.fixed_s, cost.data_s, took))
                    self._observed_kind.append(self._kinds[i])
                    # the common factors, then each problem's over them; once more with the
                    # observations divided by their problem's factor, so that a costly problem
                    # finished lately does not raise the common factors of all the others
                    self._kind_factor = {}
                    for _ in range(2):
                        self._scale = self._fit()
                        self._kind_factor = self._fit_kinds()
                return
            # what a compile costs the family is its time beyond what it would take without one:
            # on a 2-core CPU that was seconds more than the first call alone (first_call_s)
            firsts = [r.get("first_call_s") for r in records if compiles(r["method"])]
            if all(t is None for t in firsts):  # the compiling method never ran
                return
            sf, sd = self._scale
            compile_s = max(sum(t for t in firsts if t), took - sf * cost.fixed_s - sd * cost.data_s)
            seen = self._compiled_on.setdefault(worker, set())
            (self._next if seen else self._first).append(compile_s)
            seen.add(cost.compile_key)

    def _fit(self) -> tuple[float, float]:
        """Factors on the fixed and data parts: least squares on the finished families, pulled
        toward their common ratio observed/predicted by PRIOR_WEIGHT typical families."""
        obs = np.array(self._observed)
        fixed, data, took = obs[:, 0], obs[:, 1], obs[:, 2]
        took = took / np.array([self._kind_factor.get(k, 1.0) for k in self._observed_kind])
        w = 0.5 ** (np.arange(len(obs))[::-1] / (HALF_LIFE * self.workers))
        ratio = (w * took).sum() / max((w * (fixed + data)).sum(), 1e-12)
        typical = np.array([[c.fixed_s, c.data_s] for c in self.costs]).mean(axis=0)
        prior = PRIOR_WEIGHT * np.diag(typical**2)
        x = np.stack([fixed, data], axis=1)
        try:
            s = np.linalg.solve(x.T @ (w[:, None] * x) + prior, x.T @ (w * took) + prior @ [ratio, ratio])
        except np.linalg.LinAlgError:
            return ratio, ratio
        s = np.clip(s, ratio / 5, ratio * 5)
        return float(s[0]), float(s[1])

    def _fit_kinds(self) -> dict[str, float]:
        """Each problem's own factor on the fitted cost: its families' observed over fitted
        seconds, pulled toward 1 by PRIOR_WEIGHT families' worth. A problem costs what its
        step does around the timing (an MLP's float64 twin and profile, 1.1 to 1.3x the prior
        on the 2-core CPU where linear's were 0.8 to 1), and its families come together in the
        config's order: the first few of them correct the rest."""
        sf, sd = self._scale
        fitted: dict[str, list[float]] = {}
        took: dict[str, list[float]] = {}
        for (fixed, data, seconds), kind in zip(self._observed, self._observed_kind, strict=True):
            fitted.setdefault(kind, []).append(sf * fixed + sd * data)
            took.setdefault(kind, []).append(seconds)
        out = {}
        for kind, f in fitted.items():
            typical = float(np.mean(f))
            out[kind] = (sum(took[kind]) + PRIOR_WEIGHT * typical) / (sum(f) + PRIOR_WEIGHT * typical)
        return out

    # -- predicting ------------------------------------------------------------------------------

    def _compile_costs(self) -> dict[int, float]:
        """Predicted compile seconds of each unfinished family that compiles."""
        fresh = self.workers - sum(1 for seen in self._compiled_on.values() if seen)
        out = {}
        for i in self._left:
            key = self.costs[i].compile_key
            if key is None:
                continue
            prior = self.priors[i]
            if fresh > 0:
                out[i] = (prior.first_compile_s + sum(self._first)) / (1 + len(self._first))
                fresh -= 1
            else:  # on a worker that has seen the key, nothing to compile
                later = (prior.next_compile_s + sum(self._next)) / (1 + len(self._next))
                have = sum(key in seen for seen in self._compiled_on.values())
                out[i] = later * max(0.0, 1 - have / self.workers)
        return out

    def remaining_s(self) -> float:
        with self._lock:
            now = self.clock()
            if not self._left:
                return 0.0
            sf, sd = self._scale
            compile_s = self._compile_costs()
            free = sorted(self._free.values(), reverse=True)[: self.workers]
            free += [self.started] * (self.workers - len(free))
            heapq.heapify(free)
            end = now
            overhead = float(np.median(self._overheads)) if self._overheads else 0.0
            for i in self._left:
                c = self.costs[i]
                start = heapq.heappop(free)
                kind = self._kind_factor.get(self._kinds[i], 1.0)
                took = kind * (sf * c.fixed_s + sd * c.data_s) + compile_s.get(i, 0.0) + overhead
                done = max(start + took, now)
                heapq.heappush(free, done)
                end = max(end, done)
            return end - now

    def compiling(self) -> bool:
        """Whether a family now running (the first `workers` unfinished) has a compile to do."""
        with self._lock:
            compile_s = self._compile_costs()
            return any(compile_s.get(i, 0.0) > 0 for i in self._left[: self.workers])
