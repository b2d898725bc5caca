"""The queue of one Ray run: families onto ready workers, and what happens when one fails.

actor died (killed, segfault, host OOM)  -> family requeued, actor replaced; after
                                            `max_attempts` deaths its cells are `error`
exception in a cell                      -> `error`, by run_family; the actor lives on
CUDA out of memory                       -> `oom`, by run_family, cache emptied; actor kept
family past cell_timeout_s x its cells   -> actor killed and replaced; cells `timeout`
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray
import ray.exceptions as rex

from ..cell import Cell
from .executor import failed_records

if TYPE_CHECKING:
    from .ray_executor import RayExecutor, _Slot

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class _Task:
    cells: list[Cell]
    attempt: int
    ref: ray.ObjectRef | None = None
    started: float | None = None  # when the driver reckons it began running on its actor


class RunQueue:
    """The queue of one `run`: families from `source` (requeued ones first) onto ready slots."""

    def __init__(self, ex: RayExecutor, on_records, timing, context, plugins, source):
        self.ex, self.on_records, self.timing, self.context = ex, on_records, timing, context
        self.plugins, self.source = plugins, source
        self.requeued: deque[_Task] = deque()  # families whose actor died, run again first
        self.exhausted = False

    def next_family(self) -> _Task | None:
        if self.requeued:
            return self.requeued.popleft()
        if not self.exhausted:
            cells = next(self.source, None)
            if cells is not None:
                return _Task(cells, attempt=1)
            self.exhausted = True
        return None

    def loop(self) -> None:
        ex = self.ex
        while True:
            self.fill()
            busy = [s for s in ex._slots if s.tasks]
            starting = [s for s in ex._slots if s.start_ref is not None]
            if not busy:
                if self.exhausted and not self.requeued:
                    return
                if not starting:  # work left and no worker left to do it
                    self.give_up()
                    return
            heads = {s.tasks[0].ref: s for s in busy}
            starts = {s.start_ref: s for s in starting}
            waitables = [*heads, *starts]
            # wake for the nearest deadline, and at least every second so Ctrl-C is seen
            done, _ = ray.wait(waitables, num_returns=1, timeout=min(1.0, self.next_deadline()))
            if done:
                done, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0)
            for ref in done:
                if ref in heads:
                    self.finished(heads[ref])
                else:
                    ex._started(starts[ref], self.plugins)
            self.expire()

    def fill(self) -> None:
        """Round-robin, so that every worker has one family before any has two."""
        for depth in range(1, self.ex.in_flight + 1):
            for slot in self.ex._slots:
                if slot.ready and len(slot.tasks) < depth:
                    task = self.next_family()
                    if task is None:
                        return
                    self.submit(slot, task)

    def submit(self, slot: _Slot, task: _Task) -> None:
        context = {**self.context, "attempts": task.attempt}
        task.ref = slot.actor.run.remote(task.cells, self.timing, context, self.plugins)
        task.started = time.monotonic() if not slot.tasks else None
        slot.tasks.append(task)

    def limit_s(self, task: _Task) -> float:
        return self.ex.cell_timeout_s * len(task.cells)

    def next_deadline(self) -> float:
        now, ex = time.monotonic(), self.ex
        waits = [t.started + self.limit_s(t) - now for s in ex._slots if s.tasks for t in [s.tasks[0]]]
        waits += [s.start_began + ex.start_timeout_s - now for s in ex._slots if s.start_ref is not None]
        return max(0.0, min(waits, default=1.0))

    def finished(self, slot: _Slot) -> None:
        task = slot.tasks.popleft()
        try:
            records, busy_s = ray.get(task.ref)
        except rex.RayTaskError as exc:  # run_family itself raised (a bad family): no retry
            self.deliver(
                task, failed_records(task.cells, "error", reason_of(exc), self.where(slot), task.attempt)
            )
        except rex.RayError as exc:  # the actor is gone: ActorDiedError, OutOfMemoryError, ...
            self.lost(slot, task, exc)
            return
        else:
            self.ex.stats.busy_s += busy_s
            self.deliver(task, records)
        if slot.tasks:
            slot.tasks[0].started = time.monotonic()

    def deliver(self, task: _Task, records: list[dict]) -> None:
        self.ex.stats.families += 1
        self.ex.stats.cells += len(records)
        self.on_records(records)

    def where(self, slot: _Slot) -> dict:
        info = slot.info or {}
        keys = ("gpu_id", "node", "device", "device_name", "threads")
        return {**self.context, "worker": slot.index, **{k: info.get(k) for k in keys}}

    def lost(self, slot: _Slot, task: _Task, exc: BaseException) -> None:
        """The actor died running `task`: the families queued behind it are innocent and go back
        unchanged; `task` goes back with one more attempt, or is given up."""
        self.ex.stats.deaths += 1
        where = self.where(slot)
        self.replace(slot)
        if task.attempt >= self.ex.max_attempts:
            msg = f"worker died {task.attempt} times running this family; last: {reason_of(exc)}"
            self.deliver(task, failed_records(task.cells, "error", msg, where, task.attempt))
        else:
            self.requeued.appendleft(_Task(task.cells, task.attempt + 1))

    def expire(self) -> None:
        now = time.monotonic()
        for slot in self.ex._slots:
            if slot.tasks and now - slot.tasks[0].started > self.limit_s(slot.tasks[0]):
                task = slot.tasks.popleft()
                self.ex.stats.timeouts += 1
                limit = self.limit_s(task)
                msg = (
                    f"family ran past its limit of {limit:g} s ({self.ex.cell_timeout_s:g} s x "
                    f"{len(task.cells)} cells); its worker was killed"
                )
                where = self.where(slot)
                self.replace(slot)
                self.deliver(task, failed_records(task.cells, "timeout", msg, where, task.attempt))
        self.ex._expire_starts(self.plugins)

    def replace(self, slot: _Slot) -> None:
        """Kill the slot's actor, requeue what waited behind on it, start a fresh one."""
        for waiting in reversed(slot.tasks):
            self.requeued.appendleft(_Task(waiting.cells, waiting.attempt))
        slot.tasks.clear()
        self.ex._kill(slot)
        self.ex.stats.replaced += 1
        self.ex._start(slot, self.plugins)

    def give_up(self) -> None:
        """No worker could start: every family left is recorded as failed, so the run ends."""
        why = "; ".join(s.retired for s in self.ex._slots if s.retired) or "no worker"
        while (task := self.next_family()) is not None:
            self.deliver(task, failed_records(task.cells, "error", f"not run: {why}", self.context, 0))

    def salvage(self) -> None:
        """On Ctrl-C: hand over the families that finished but were not yet collected."""
        for slot in self.ex._slots:
            while slot.tasks:
                done, _ = ray.wait([slot.tasks[0].ref], timeout=0)
                if not done:
                    break
                task = slot.tasks.popleft()
                try:
                    records, _ = ray.get(task.ref)
                except rex.RayError:
                    break
                self.deliver(task, records)


def reason_of(exc: BaseException) -> str:
    """One line: Ray's messages run to a traceback, or a list of actor fields, in colour."""
    if isinstance(exc, rex.OutOfMemoryError):
        return "the node ran out of memory and Ray's memory monitor killed the worker"
    if isinstance(exc, rex.RayTaskError) and isinstance(exc.cause, BaseException):
        return f"{type(exc.cause).__name__}: {exc.cause}"
    lines = [ln.strip() for ln in ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    if isinstance(exc, rex.RayActorError) and exc.actor_init_failed:
        return f"{type(exc).__name__} in the worker's start: {lines[-1] if lines else ''}"
    return f"{type(exc).__name__}: " + " ".join(lines[:1] + [ln for ln in lines[1:] if ln.startswith("pid")])
