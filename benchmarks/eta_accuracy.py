"""How good is the progress bar's time left? Run a config and set, at each finished family, the
time left the bar showed against the time that was in fact left.

    python benchmarks/eta_accuracy.py experiments/quick.yaml [gradbench run flags...]

Prints one line per family (elapsed s, cells done, shown s, true s, shown/true, and whether the
bar says "compiling" next) and the worst ratio once a fifth of the cells are done. The run goes
to a temporary --out unless one is given.
"""

from __future__ import annotations

import sys
import tempfile
import time

from harness.cli import main
from harness.runs.progress import RunProgress

Row = tuple[float, int, int, float, bool]


def measure(argv: list[str]) -> list[Row]:
    log: list[Row] = []
    finished = RunProgress.finished

    def logged(self, records):
        finished(self, records)
        task = self.progress.tasks[0]
        log.append(
            (
                time.monotonic() - self.estimate.started,
                int(task.completed),
                int(task.total),
                self.estimate.remaining_s(),
                self.estimate.compiling(),
            )
        )

    RunProgress.finished = logged
    try:
        with tempfile.TemporaryDirectory() as out:
            args = argv if "--out" in argv else [*argv, "--out", out]
            main(["run", *args])
    finally:
        RunProgress.finished = finished
    return log


def report(log: list[Row]) -> float:
    end = log[-1][0]
    worst = visible = 0.0
    print(f"{'elapsed s':>9} {'done':>9} {'shown s':>8} {'true s':>7} {'shown/true':>10}")
    for elapsed, done, total, shown, compiling in log:
        true = end - elapsed
        ratio = shown / true if true > 0 else float("nan")
        flag = "  compiling" if compiling else ""
        print(f"{elapsed:9.1f} {done:4d}/{total:<4d} {shown:8.1f} {true:7.1f} {ratio:10.2f}{flag}")
        if done >= total / 5 and true > 0:
            worst = max(worst, abs(ratio - 1))
            if true >= 1:  # the bar shows whole seconds: under one, 0.3 s and 0.4 s read the same
                visible = max(visible, abs(ratio - 1))
    print(
        f"worst |shown/true - 1| after a fifth of the cells: {worst:.0%}; "
        f"while 1 s or more is left: {visible:.0%}"
    )
    return worst


if __name__ == "__main__":
    report(measure(sys.argv[1:]))
