"""The progress bar of a run: cells done, their statuses in the summary's words, cells per
second, the time left (eta.py), and "compiling" while a family with a compile ahead of it runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task
from rich.text import Text

from ..cell import Cell
from ..measure import TimingOptions
from ..schema import STATUSES
from .eta import Estimate

REFRESH_PER_S = 2


def worker_count(executor) -> int:
    """How many families an executor runs at once: its plan's workers (Ray), else one."""
    workers = getattr(getattr(executor, "plan", None), "workers", None)
    return workers if isinstance(workers, int) and workers > 0 else 1


def status_line(counts: Counter | dict) -> str:
    """`ok 12, mismatch 1`: the statuses as the run's summary names them, those seen only."""
    shown = [s for s in STATUSES if counts.get(s, 0) or s == "ok"]
    return ", ".join(f"{s} {counts.get(s, 0)}" for s in shown)


def clock_text(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}"


class _Phase(ProgressColumn):
    def __init__(self, estimate: Estimate):
        super().__init__()
        self.estimate = estimate

    def render(self, task: Task) -> Text:
        return Text("compiling" if not task.finished and self.estimate.compiling() else "cells")


class _Statuses(ProgressColumn):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def render(self, task: Task) -> Text:
        return Text(status_line(self.counts))


class _Rate(ProgressColumn):  # cells per second, over the last half minute
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:.2f} cells/s")


class _Left(ProgressColumn):
    def __init__(self, estimate: Estimate):
        super().__init__()
        self.estimate = estimate

    def render(self, task: Task) -> Text:
        return Text(f"{clock_text(self.estimate.remaining_s())} left", style="progress.remaining")


class RunProgress:
    """`with RunProgress(...) as p:` then `p.finished(records)` as each family returns."""

    def __init__(
        self,
        families: Sequence[Sequence[Cell]],
        timing: TimingOptions,
        workers: int = 1,
        console: Console | None = None,
    ):
        self.estimate = Estimate(families, timing, workers)
        self.counts: Counter = Counter()
        self.progress = Progress(
            _Phase(self.estimate),
            BarColumn(),
            MofNCompleteColumn(),
            _Statuses(self.counts),
            _Rate(),
            _Left(self.estimate),
            console=console or Console(stderr=True),
            # redrawn twice a second, not rich's ten: on a 2-core machine the driver's redraws (the
            # time left recomputed each time) took 2 s of CPU from the workers over a 45 s run
            refresh_per_second=REFRESH_PER_S,
        )
        self.task = self.progress.add_task("cells", total=sum(map(len, families)))

    def finished(self, records: list[dict]) -> None:
        self.counts.update(r["status"] for r in records)
        self.estimate.finished(records)
        self.progress.update(self.task, advance=len(records))

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)
