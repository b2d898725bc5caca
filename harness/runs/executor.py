"""What an executor is: it moves families of cells to where they run and records back.

An executor never changes a record's numbers: every one calls `harness.cell.run_family` on a
family (the cells that differ only by method, so their timings stay paired on one device) and
hands the records to `on_records` as each family finishes, in the driver's thread, where the
store appends them to records.jsonl. The order families finish in is the executor's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..cell import Cell
from ..measure import TimingOptions
from ..record import identity, now
from ..schema import Record

OnRecords = Callable[[list[dict]], None]


class Executor(Protocol):
    """Runs families and streams their records.

    `context` is merged into every record (run_id, and what the executor knows of where a cell
    ran: worker, node, gpu_id). An executor whose workers live in other processes must import
    the config's plugin files there too (they register problems); the driver has already.
    Optional: `device` (str), the device its workers run cells on, which decides skip reasons,
    and `describe() -> dict`, what it ran on, for manifest.json.
    """

    name: str

    def run(
        self,
        families: list[list[Cell]],
        on_records: OnRecords,
        timing: TimingOptions,
        context: dict,
    ) -> None: ...

    def close(self) -> None: ...


def failed_records(
    cells: Sequence[Cell], status: str, error: str, context: dict | None = None, attempts: int = 1
) -> list[dict]:
    """Records for cells that never produced their own (a crash, a timeout, a dead worker):
    the identity columns filled in, the outcome said, every measurement None."""
    at = now()
    return [
        {
            **Record.blank(),
            **(context or {}),
            **identity(cell),
            "status": status,
            "error": error,
            "attempts": attempts,
            "started_at": at,
            "finished_at": at,
        }
        for cell in cells
    ]
