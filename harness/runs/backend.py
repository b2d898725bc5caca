"""What the queue (queue.py) asks of the place its workers live: start one, hand it a family,
wait, collect, kill. Ray actors are one backend (ray_backend.py), this process another (local.py).

Starting is asynchronous and may fail: `start` returns at once with a ticket that becomes
Done(row) when the worker is up, or Died(reason). Every ticket is hashable and is collected once.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from ..cell import Cell

# --- what a backend reports --------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """A start that came up (value: the worker's row, with its "device"), or a family that ran
    (value: its records; busy_s: seconds inside run_family on the worker)."""

    value: Any
    busy_s: float = 0.0


@dataclass(frozen=True)
class Died:
    """The worker is gone (killed, crashed, never started); reason in one line."""

    reason: str


@dataclass(frozen=True)
class Raised:
    """The call raised and the worker lives on (a family that cannot be set up at all)."""

    reason: str


Outcome = Done | Died | Raised


class Backend(Protocol):
    def start(self, index: int) -> tuple[Any, Hashable]:
        """A new worker for slot `index`, and a ticket that becomes Done(row) once it is up."""

    def submit(self, worker: Any, cells: list[Cell], timing: Any, context: dict) -> Hashable:
        """Queue a family on the worker (behind what it already holds); a ticket for it."""

    def wait(self, tickets: list[Hashable], timeout: float) -> list[Hashable]:
        """The tickets that are done, waiting up to `timeout` seconds for the first."""

    def collect(self, ticket: Hashable) -> Outcome: ...

    def kill(self, worker: Any) -> None:
        """Stop the worker now; a worker already gone is no error."""
