"""The in-process executor: families run one after another in this process (debugging, tests).

It is the queue (queue.py) on a backend whose one worker is this process and whose every call
finishes before it returns: a family that raises outside any cell is an `error` and the run goes
on, as on Ray. What it cannot do is stop a family that hangs, or survive one that kills the
process: those need workers in other processes (`--executor ray`).
"""

from __future__ import annotations

import math
import os
import socket
import traceback
from collections.abc import Iterable, Sequence

import torch

from ..cell import Cell, run_family
from ..env import device_name
from ..gpu import bandwidth_probe, local_devices
from ..measure import TimingOptions
from .backend import Done, Outcome, Raised
from .executor import ExecutorKind, OnRecords, register_executor
from .queue import Pool, families_of


class _Ticket:
    """A call that has already finished."""

    __slots__ = ("outcome",)

    def __init__(self, outcome: Outcome):
        self.outcome = outcome


class LocalBackend:
    def __init__(self, device: str, threads: int | None, runs: tuple[str, ...]):
        self.device, self.threads, self.runs = device, threads, runs
        self.where = {"worker": "local", "node": socket.gethostname()}

    def start(self, index: int):
        row = {
            **self.where,
            "pid": os.getpid(),
            "device": self.device,
            "runs": ",".join(self.runs),
            "device_name": device_name(torch.device(self.device)),
            "threads": self.threads or torch.get_num_threads(),
            # the peak that achieved_gbps is set against, measured on this device
            **bandwidth_probe(self.device),
        }
        return index, _Ticket(Done(row))

    def submit(self, worker, cells: list[Cell], timing, context: dict) -> _Ticket:
        context = {**context, **self.where}
        try:
            return _Ticket(Done(run_family(cells, self.device, self.threads, timing, context)))
        except Exception as exc:  # a bug outside any one method: the run goes on, and says so
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
            return _Ticket(Raised(f"{type(exc).__name__}: {exc}{where}"))

    def wait(self, tickets: list, timeout: float) -> list:
        return list(tickets)

    def collect(self, ticket: _Ticket) -> Outcome:
        return ticket.outcome

    def kill(self, worker) -> None:
        pass  # this process is the worker


class LocalExecutor:
    name = "local"

    def __init__(self, device: str | None = None, threads: int | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.threads = threads
        # one family at a time, and no deadline: nothing here could stop a family that hangs
        backend = LocalBackend(self.device, threads, self.devices())
        self.pool = Pool(backend, workers=1, cell_timeout_s=math.inf, in_flight=1)

    def start(self) -> list[dict]:
        return self.pool.start()

    def devices(self) -> tuple[str, ...]:
        return local_devices()

    def worker_rows(self) -> list[dict]:
        return list(self.pool.seen)

    def describe(self) -> dict:
        return {"executor": self.name, "device": self.device, "threads": self.threads}

    def run(
        self,
        families: Iterable[Sequence[Cell]],
        on_records: OnRecords,
        timing: TimingOptions,
        context: dict,
        device: str | None = None,
    ) -> None:
        self.pool.run(families_of(families, device), on_records, timing, context)

    def close(self) -> None:
        self.pool.kill_all()


def _build(args, config) -> LocalExecutor:
    # a --device this process lacks is refused by the command, once it has asked `devices`
    device = args.device if args.device in local_devices() else None
    return LocalExecutor(device=device, threads=config.experiment.threads)


register_executor(ExecutorKind("local", "in this process, one family at a time, for debugging", _build))
