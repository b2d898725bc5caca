"""One queue for every executor: families onto workers, and what happens when one fails.

worker died (killed, segfault, host OOM)  -> family requeued, worker replaced; after
                                             `max_attempts` deaths its cells are `error`
family raised outside any cell            -> `error`, no retry; the worker lives on
exception in a cell, CUDA out of memory   -> `error` / `oom`, by run_family; nothing here
family past cell_timeout_s x its cells    -> worker killed and replaced; cells `timeout`
worker fails to start max_attempts times  -> its slot is given up; when no worker is left to
                                             run what remains, those cells are `error`
Ctrl-C                                    -> finished families handed over, workers killed,
                                             KeyboardInterrupt goes on up

The queue knows nothing of where workers live: a `Backend` starts them, hands them families
and reports back (Ray actors, this process, a fake in tests). A worker runs the families it
is given in order, so the one running is always the oldest in flight there: that one is
charged with a death or a timeout, its clock starting when the one before it returned, and
the ones queued behind it go back unchanged. (A worker that dies within a moment of finishing
a family can take that family's reply with it; the finished family is then the one charged.)

A family may need a device kind ("cpu", "cuda"); a worker says in its row which it has, and
a family goes only to a worker that fits.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..cell import Cell
from .backend import Backend, Died, Done, Raised
from .executor import OnRecords, failed_records
from .slots import Slot, Workers

# --- the queue's own state ---------------------------------------------------------------------


@dataclass
class Family:
    """Cells that run together on one worker; `device` is the kind of worker it needs (None: any)."""

    cells: list[Cell]
    device: str | None = None
    attempt: int = 1
    ticket: Hashable | None = None
    started: float | None = None  # when it began running on its worker, as the queue reckons
    # what a worker's process keeps warm for such families once it ran one (a compiler): they go
    # to that worker while the others have other work
    warm: Hashable | None = None

    def again(self, attempt: int) -> Family:
        return Family(self.cells, self.device, attempt, warm=self.warm)


@dataclass
class RunStats:
    """What the last `run` cost: `busy_s` is time inside run_family on the workers."""

    families: int = 0
    cells: int = 0
    wall_s: float = 0.0
    busy_s: float = 0.0
    deaths: int = 0
    timeouts: int = 0
    replaced: int = 0


class Pool(Workers):
    """`workers` slots on a backend (slots.py), kept across runs; `run` drives one run's queue over them."""

    def __init__(
        self,
        backend: Backend,
        workers: int,
        cell_timeout_s: float = 600.0,
        max_attempts: int = 3,
        in_flight: int = 2,
        start_timeout_s: float = 300.0,
    ):
        if workers < 1 or cell_timeout_s <= 0 or max_attempts < 1 or in_flight < 1:
            raise ValueError(
                "workers, max_attempts and in_flight must be at least 1, cell_timeout_s positive"
            )
        super().__init__(backend, workers, max_attempts, start_timeout_s)
        self.cell_timeout_s, self.in_flight = cell_timeout_s, in_flight
        self.stats = RunStats()

    # -- one run -----------------------------------------------------------------------------

    def run(
        self,
        families: Iterable[Family | Sequence[Cell]],
        on_records: OnRecords,
        timing: Any,
        context: dict,
    ) -> RunStats:
        """Run every family, handing its records to `on_records` as it finishes. Families are
        read lazily, so a generator keeps memory flat. On Ctrl-C, what has finished is handed
        over, the workers are killed, and KeyboardInterrupt goes on up."""
        self.ensure_started()
        self.stats = RunStats()
        queue = _RunQueue(self, on_records, timing, context, families)
        began = time.perf_counter()
        try:
            queue.loop()
        except KeyboardInterrupt:
            queue.salvage()
            self.kill_all()
            raise
        except BaseException:
            self.kill_all()
            raise
        finally:
            self.stats.wall_s = time.perf_counter() - began
        return self.stats


class _RunQueue:
    """The families of one run: requeued ones first, then the source, each onto a fitting slot."""

    def __init__(self, pool: Pool, on_records: OnRecords, timing, context: dict, families):
        self.pool, self.on_records, self.timing, self.context = pool, on_records, timing, context
        as_families = (f if isinstance(f, Family) else Family(list(f)) for f in families)
        self.source: Iterator[Family] = (f for f in as_families if f.cells)
        self.waiting: deque[Family] = deque()  # requeued at the left, read from the source at the right
        self.exhausted = False

    def loop(self) -> None:
        pool = self.pool
        while True:
            self.fill()
            busy = [s for s in pool.slots if s.tasks]
            starting = {s.start_ticket: s for s in pool.slots if s.start_ticket is not None}
            if not busy:
                if self.exhausted and not self.waiting:
                    return
                if not starting:  # work left and no worker to do it
                    self.give_up()
                    return
            heads = {s.tasks[0].ticket: s for s in busy}
            # wake for the nearest deadline, and at least every second so Ctrl-C is seen
            for ticket in pool.backend.wait([*heads, *starting], timeout=min(1.0, self.next_deadline())):
                if ticket in heads:
                    self.finished(heads[ticket])
                else:
                    pool._started(starting[ticket])
            self.expire()
            pool._expire_starts()

    def take(self, slot: Slot) -> Family | None:
        """The first waiting family this slot fits, reading the source as far as needed; one that
        another live worker has warm is left to it while this slot finds other work (a first
        compile in a process cost 3 to 5 s more than the next on the 2-core CPU)."""
        family = self._first(slot, lambda f: self._warm_elsewhere(slot, f)) or self._first(slot)
        if family is not None and family.warm is not None:
            slot.warm.add(family.warm)
        return family

    def _first(self, slot: Slot, skip=lambda family: False) -> Family | None:
        for family in self.waiting:
            if slot.fits(family) and not skip(family):
                self.waiting.remove(family)
                return family
        while not self.exhausted:
            family = next(self.source, None)
            if family is None:
                self.exhausted = True
            elif slot.fits(family) and not skip(family):
                return family
            else:
                self.waiting.append(family)
        return None

    def _warm_elsewhere(self, slot: Slot, family: Family) -> bool:
        if family.warm is None or family.warm in slot.warm:
            return False
        return any(family.warm in s.warm for s in self.pool.slots if s is not slot and s.retired is None)

    def fill(self) -> None:
        """Round-robin, so that every worker has one family before any has two."""
        for depth in range(1, self.pool.in_flight + 1):
            for slot in self.pool.slots:
                if slot.ready and len(slot.tasks) < depth and (family := self.take(slot)):
                    self.submit(slot, family)
        for family in [f for f in self.waiting if not any(s.may_fit(f) for s in self.pool.slots)]:
            self.waiting.remove(family)
            self.fail_unrun(family)

    def submit(self, slot: Slot, family: Family) -> None:
        context = {**self.context, "attempts": family.attempt}
        family.ticket = self.pool.backend.submit(slot.worker, family.cells, self.timing, context)
        family.started = time.monotonic() if not slot.tasks else None
        slot.tasks.append(family)

    def limit_s(self, family: Family) -> float:
        return self.pool.cell_timeout_s * len(family.cells)

    def next_deadline(self) -> float:
        now, pool = time.monotonic(), self.pool
        waits = [s.tasks[0].started + self.limit_s(s.tasks[0]) - now for s in pool.slots if s.tasks]
        waits += [
            s.start_began + pool.start_timeout_s - now for s in pool.slots if s.start_ticket is not None
        ]
        return max(0.0, min(waits, default=1.0))

    def finished(self, slot: Slot) -> None:
        family = slot.tasks.popleft()
        outcome = self.pool.backend.collect(family.ticket)
        if isinstance(outcome, Died):
            self.lost(slot, family, outcome.reason)
            return
        if isinstance(outcome, Raised):  # the family itself is bad: no retry
            self.deliver(
                failed_records(family.cells, "error", outcome.reason, self.where(slot), family.attempt)
            )
        else:
            self.pool.stats.busy_s += outcome.busy_s
            self.deliver(outcome.value)
        if slot.tasks:
            slot.tasks[0].started = time.monotonic()

    def deliver(self, records: list[dict]) -> None:
        self.pool.stats.families += 1
        self.pool.stats.cells += len(records)
        self.on_records(records)

    def where(self, slot: Slot) -> dict:
        row = slot.row or {}
        keys = ("gpu_id", "node", "device", "device_name", "threads")
        return {**self.context, "worker": row.get("worker", slot.index), **{k: row.get(k) for k in keys}}

    def lost(self, slot: Slot, family: Family, reason: str) -> None:
        """The worker died running `family`: it goes back with one more attempt, or is given up."""
        self.pool.stats.deaths += 1
        where = self.where(slot)
        self.replace(slot)
        if family.attempt >= self.pool.max_attempts:
            msg = f"worker died {family.attempt} times running this family; last: {reason}"
            self.deliver(failed_records(family.cells, "error", msg, where, family.attempt))
        else:
            self.waiting.appendleft(family.again(family.attempt + 1))

    def expire(self) -> None:
        now = time.monotonic()
        for slot in self.pool.slots:
            if slot.tasks and now - slot.tasks[0].started > self.limit_s(slot.tasks[0]):
                family = slot.tasks.popleft()
                self.pool.stats.timeouts += 1
                limit, per_cell = self.limit_s(family), self.pool.cell_timeout_s
                msg = (
                    f"family ran past its limit of {limit:g} s ({per_cell:g} s x "
                    f"{len(family.cells)} cells); its worker was killed"
                )
                where = self.where(slot)
                self.replace(slot)
                self.deliver(failed_records(family.cells, "timeout", msg, where, family.attempt))

    def replace(self, slot: Slot) -> None:
        """Kill the slot's worker, requeue unchanged what waited behind on it, start a fresh one."""
        for waiting in reversed(slot.tasks):
            self.waiting.appendleft(waiting.again(waiting.attempt))
        slot.tasks.clear()
        self.pool._kill(slot)
        self.pool.stats.replaced += 1
        self.pool._start(slot)

    def why_not_run(self, family: Family) -> str:
        retired = "; ".join(s.retired for s in self.pool.slots if s.retired)
        if family.device and any(s.ready for s in self.pool.slots):
            have = sorted(
                {str(d) for s in self.pool.slots if s.ready for d in s.row.get("runs", [s.row["device"]])}
            )
            return f"not run: it needs a {family.device} worker, the workers have {', '.join(map(str, have))}"
        return f"not run: {retired or 'no worker'}"

    def fail_unrun(self, family: Family) -> None:
        self.deliver(failed_records(family.cells, "error", self.why_not_run(family), self.context, 0))

    def give_up(self) -> None:
        """No worker is left to run what remains: record it as failed, so the run ends."""
        while self.waiting:
            self.fail_unrun(self.waiting.popleft())
        for family in self.source:
            self.fail_unrun(family)
        self.exhausted = True

    def salvage(self) -> None:
        """On Ctrl-C: hand over the families that finished but were not yet collected."""
        for slot in self.pool.slots:
            while slot.tasks and self.pool.backend.wait([slot.tasks[0].ticket], timeout=0):
                outcome = self.pool.backend.collect(slot.tasks.popleft().ticket)
                if not isinstance(outcome, Done):
                    break
                self.deliver(outcome.value)


def families_of(
    cell_lists: Iterable[Sequence[Cell]], device: str | None = None, warm=lambda cells: None
) -> Iterator[Family]:
    """Plain lists of cells as families needing `device`, by default their cells' own; `warm(cells)`
    says what a worker keeps warm for such a family (Family.warm)."""
    return (Family(list(c), device or getattr(c[0], "device", None), warm=warm(c)) for c in cell_lists if c)
