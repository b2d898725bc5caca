"""The workers a queue (queue.py) runs families on: one slot per worker, each started through the
backend, replaced when it dies, and given up after `max_attempts` failed starts (the environment's
fault, not a family's: no family is charged). What runs on them is queue.py's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backend import Backend, Done

if TYPE_CHECKING:
    from .queue import Family


@dataclass
class Slot:
    """Worker number `index`: its current worker (replaced when it dies) and what it holds."""

    index: int
    worker: Any = None
    start_ticket: Hashable | None = None
    start_began: float = 0.0
    failed_starts: int = 0
    row: dict | None = None  # from the backend, once started
    tasks: deque[Family] = field(default_factory=deque)
    retired: str | None = None  # why no worker is started here any more
    warm: set = field(default_factory=set)  # what its worker's process has warm (Family.warm)

    @property
    def ready(self) -> bool:
        return self.row is not None and self.retired is None

    def fits(self, family: Family) -> bool:
        return family.device is None or family.device in runs(self.row or {})

    def may_fit(self, family: Family) -> bool:
        """Could run it now or once started (a starting worker's device is not known yet)."""
        return self.retired is None and (self.row is None or self.fits(family))


class Workers:
    """`workers` slots on a backend, kept across runs."""

    def __init__(self, backend: Backend, workers: int, max_attempts: int = 3, start_timeout_s: float = 300.0):
        self.backend, self.workers = backend, workers
        self.max_attempts, self.start_timeout_s = max_attempts, start_timeout_s
        self.slots: list[Slot] = []
        self.seen: list[dict] = []  # the row of every worker that came up, replaced ones too

    def ensure_started(self) -> None:
        if not self.slots:
            self.slots = [Slot(index=i) for i in range(self.workers)]
        for slot in self.slots:
            if slot.worker is None and slot.start_ticket is None and slot.retired is None:
                self._start(slot)

    def start(self, patience_s: float | None = None) -> list[dict]:
        """Start every worker and wait until each is up or given up; the rows of those up. With
        `patience_s`, stop waiting that long after the first is up: the others join the run as
        they come (a GPU another job holds can keep its worker pending for long)."""
        self.ensure_started()
        first_up = None
        while starting := {s.start_ticket: s for s in self.slots if s.start_ticket is not None}:
            for ticket in self.backend.wait(list(starting), timeout=1.0):
                self._started(starting[ticket])
            self._expire_starts()
            if first_up is None and any(s.ready for s in self.slots):
                first_up = time.monotonic()
            if patience_s is not None and first_up is not None and time.monotonic() - first_up > patience_s:
                break
        return self.rows()

    def rows(self) -> list[dict]:
        return [s.row for s in self.slots if s.ready]

    def _start(self, slot: Slot) -> None:
        slot.worker, slot.start_ticket = self.backend.start(slot.index)
        slot.start_began, slot.row = time.monotonic(), None

    def _started(self, slot: Slot) -> None:
        outcome, slot.start_ticket = self.backend.collect(slot.start_ticket), None
        if isinstance(outcome, Done):
            slot.row, slot.failed_starts = {"worker": slot.index, **outcome.value}, 0
            self.seen.append(slot.row)
        else:
            self._failed_start(slot, outcome.reason)

    def _expire_starts(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.start_ticket is not None and now - slot.start_began > self.start_timeout_s:
                slot.start_ticket = None
                self._failed_start(slot, f"not started after {self.start_timeout_s:.0f} s")

    def _failed_start(self, slot: Slot, reason: str) -> None:
        """A worker that cannot start is the environment's fault, not a family's: after
        max_attempts tries its slot is given up, and no family is charged."""
        self._kill(slot)
        slot.failed_starts += 1
        if slot.failed_starts >= self.max_attempts:
            slot.retired = f"worker {slot.index} failed to start {slot.failed_starts} times: {reason}"
        else:
            self._start(slot)

    def _kill(self, slot: Slot) -> None:
        if slot.worker is not None:
            self.backend.kill(slot.worker)
        slot.worker, slot.row, slot.start_ticket = None, None, None
        slot.warm.clear()  # a fresh process has nothing warm

    def kill_all(self) -> None:
        for slot in self.slots:
            self._kill(slot)
        self.slots = []


def runs(row: dict) -> list[str]:
    """The device kinds a worker runs cells on: its row's "runs" ("cuda,cpu": a GPU worker runs
    a GPU run's CPU cells on its CPU), or else its "device"."""
    return str(row.get("runs") or row.get("device")).split(",")
