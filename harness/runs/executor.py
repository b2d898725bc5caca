"""What an executor is: it moves families of cells to where they run and records back; and the
registry the command picks executors from.

An executor never changes a record's numbers: every one calls `harness.cell.run_family` on a
family (the cells that differ only by method, so their timings stay paired on one device) and
hands the records to `on_records` as each family finishes, in the driver's thread, where the
store appends them to records.jsonl. The order families finish in is the executor's business.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..cell import Cell
from ..measure import TimingOptions
from ..record import identity, now
from ..schema import Record

OnRecords = Callable[[list[dict]], None]


class Executor(Protocol):
    """Runs families and streams their records.

    `start` starts the workers and waits for them (a little): their rows, plain dicts saying
    device, device_name, threads, gpu_id, node, pid and the bandwidth probe. `devices` is the
    device kinds ("cpu", "cuda") of the workers up. `worker_rows` is every worker that came up
    since the executor was made, replaced ones too, for the manifest.

    `context` is merged into every record (run_id, and what the executor knows of where a cell
    ran: worker, node, gpu_id). `device`, when given, is the kind of worker every family needs.
    An executor whose workers live in other processes has them import the plugin files this
    process loaded (`harness.plugins.loaded_plugins`): they register problems and methods.
    """

    name: str

    def start(self) -> list[dict]: ...

    def devices(self) -> list[str]: ...

    def worker_rows(self) -> list[dict]: ...

    def run(
        self,
        families: Iterable[Sequence[Cell]],
        on_records: OnRecords,
        timing: TimingOptions,
        context: dict,
        device: str | None = None,
    ) -> None: ...

    def describe(self) -> dict: ...

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


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A command-line flag an executor takes; `--workers` arrives as args.workers."""

    flag: str
    help: str
    type: Callable[[str], Any] = str
    minimum: int | None = None  # smallest number allowed

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class ExecutorKind:
    """An executor as the command knows it: `build(args, config)` makes one, raising ValueError
    for flags that contradict each other, ImportError when it cannot run here."""

    name: str
    help: str
    build: Callable[[Any, Any], Executor]
    options: tuple[Option, ...] = ()


_KINDS: dict[str, ExecutorKind] = {}
BUILT_IN = ("harness.runs.ray_executor", "harness.runs.local")  # each registers itself on import


def register_executor(kind: ExecutorKind, replace: bool = False) -> ExecutorKind:
    if kind.name in _KINDS and not replace and _KINDS[kind.name] != kind:
        raise ValueError(f"executor {kind.name!r} is registered already ({_KINDS[kind.name].build})")
    _KINDS[kind.name] = kind
    return kind


def executor_kinds() -> dict[str, ExecutorKind]:
    """Every registered executor, the built-in ones first (in the order of BUILT_IN)."""
    for module in BUILT_IN:
        importlib.import_module(module)
    return dict(_KINDS)
