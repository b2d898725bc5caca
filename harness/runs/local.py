"""The in-process executor: families run one after another in this process (debugging, tests,
and the default until a Ray cluster is asked for)."""

from __future__ import annotations

import socket
import traceback

import torch

from ..cell import Cell, run_family
from ..env import device_name
from ..gpu import bandwidth_probe
from ..measure import TimingOptions
from .executor import OnRecords, failed_records


class LocalExecutor:
    name = "local"

    def __init__(self, device: str | None = None, threads: int | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.threads = threads

    def devices(self) -> tuple[str, ...]:
        """The device types this process can run cells on."""
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def describe(self) -> dict:
        return {
            "executor": self.name,
            "workers": [
                {
                    "worker": "local",
                    "node": socket.gethostname(),
                    "device": self.device,
                    "device_name": device_name(torch.device(self.device)),
                    "threads": self.threads or torch.get_num_threads(),
                    # the peak that achieved_gbps is set against, measured on this device
                    **bandwidth_probe(self.device),
                }
            ],
        }

    def run(
        self, families: list[list[Cell]], on_records: OnRecords, timing: TimingOptions, context: dict
    ) -> None:
        context = {"worker": "local", "node": socket.gethostname(), **context}
        for family in families:
            try:
                records = run_family(
                    family, device=self.device, threads=self.threads, timing=timing, context=context
                )
            except Exception as exc:  # a bug outside any one method: the run goes on, and says so
                last = traceback.extract_tb(exc.__traceback__)[-1]
                where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
                records = failed_records(family, "error", f"{type(exc).__name__}: {exc}{where}", context)
            on_records(records)

    def close(self) -> None:
        pass
