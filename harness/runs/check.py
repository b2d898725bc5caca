"""`harness.check(problem, **grid)`: a problem's grid run in this process, for a user's pytest.

    def test_my_gradient():
        harness.check("mine", n=1000, d=8, dtypes=["float32", "bfloat16"]).assert_ok()

The keys are a config entry's (sizes, methods, patterns, dtypes, devices, seed, timing); the
grid is expanded and checked as a config file's would be, so a mistake is the same one-line
error. By default it checks agreement only (no timing: seconds), of the problem's hand-written
gradients (`manual`, and `function` and `numpy` where it has them), in float64 (the formula)
and float32, whole and in uneven micro-batches (a Function whose backward ignores grad_output,
or divides by the whole batch's n, is wrong there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..cell import run_family
from ..gpu import local_devices
from ..layers import is_layer
from ..problems import get_problem
from ..problems.base import PROBLEMS, Problem
from ..registry import same_definition
from ..schema import COLUMNS, SIZE_NAMES
from .config import ConfigError, config_of
from .grid import expand

DEFAULT_DTYPES = ["float64", "float32"]
# who is told what each check ran (harness.runs.pytest_plugin under --gradbench-save): a listener
# takes the records and the declarations of their methods, patterns and problems (a run
# manifest's); an empty list when none listens, so a check pays nothing for it
LISTENERS: list[Callable[[list[dict], dict], None]] = []


def tell(records: list[dict], declared: dict) -> None:
    for listener in LISTENERS:
        listener(records, declared)


CHECK_TIMING = {"rounds": 0}  # agreement only


@dataclass
class CheckResult:
    """The records of a check, one row per cell that ran; `skipped` the combinations that could
    not run, with why."""

    problem: str
    records: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failures(self) -> pd.DataFrame:
        return self.records[self.records["status"] != "ok"]

    @property
    def ok(self) -> bool:
        """Every cell ran and agrees (and at least one ran)."""
        return len(self.records) > 0 and self.failures.empty

    @property
    def noted(self) -> pd.DataFrame:
        """The cells that agree but carry a note in `diagnosis` (a layer's wasted work)."""
        return self.records[(self.records["status"] == "ok") & self.records["diagnosis"].notna()]

    def notes(self) -> list[str]:
        """One line per noted cell: where, and the note."""
        return [f"{describe(r)}: {r['diagnosis']}" for _, r in self.noted.iterrows()]

    def lines(self) -> list[str]:
        """One line per failing cell: where, what, and the diagnosis or error."""
        out = []
        for _, r in self.failures.iterrows():
            if r["status"] == "mismatch":
                why = f"rel_err {r['rel_err']:.1e} (tol {r['tol']:.1e}): {r['diagnosis']}"
            else:
                why = str(r["error"])
            out.append(f"{describe(r)}: {r['status']}: {why}")
        return out

    def assert_ok(self) -> CheckResult:
        """Raise AssertionError listing each failing cell with its diagnosis; self when all agree."""
        if not self.ok:
            lines = self.lines()
            head = f"harness.check({self.problem!r}): {len(lines)} of {len(self.records)} cells failed"
            raise AssertionError("\n  ".join([head, *lines]))
        return self

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.failures)} of {len(self.records)} failed"
        return f"CheckResult({self.problem!r}: {len(self.records)} cells, {state})"


def describe(r) -> str:
    """`linear n=64 d=5 float32 microbatch:4 function on cpu`."""
    sizes = " ".join(f"{s}={int(r[s])}" for s in SIZE_NAMES if r.get(s) is not None and r[s] == r[s])
    return f"{r['problem']} {sizes} {r['dtype']} {r['pattern']} {r['method']} on {r['device']}"


def check(
    problem: str | type[Problem],
    *,
    methods: list[str] | None = None,
    patterns: list[str] | None = None,
    dtypes: list[str] | None = None,
    devices: list[str] | None = None,
    seed: int = 0,
    timing: bool | dict | None = None,
    **entry: Any,
) -> CheckResult:
    """Run `problem` (a registered name, or its class) over the grid in this process; `entry`
    holds its sizes (n, d, h, c) and data set. `timing`: None or False checks agreement only,
    True times with the defaults, a dict sets timing keys (min_run_time_s, rounds, ...)."""
    name = _name(problem)
    try:
        cls = get_problem(name)
    except KeyError as exc:
        if is_layer(name):
            raise ValueError(
                f"harness.check({name!r}): {name!r} is a layer: harness.check_layer({name!r}, ...)"
            ) from None
        raise ValueError(f"harness.check({name!r}): {exc.args[0]}") from None
    config = {
        "name": "check",
        "seed": seed,
        "problems": {name: entry},
        "methods": methods or _hand_written(cls),
        "patterns": patterns or _patterns(cls, entry.get("n")),
        "dtypes": dtypes or DEFAULT_DTYPES,
        "devices": devices or ["auto"],
        "timing": CHECK_TIMING if not timing else ({} if timing is True else timing),
    }
    try:
        loaded = config_of(config, Path.cwd() / f"check({name})")
        grid = expand(loaded, available=local_devices())
    except ConfigError as exc:
        where = exc.field.removeprefix(f"problems.{name}.").removeprefix(f"problems.{name}")
        raise ValueError(f"harness.check({name!r}): {where or 'grid'}: {exc.message}") from None
    options = loaded.timing()
    records = [r for family in grid.families for r in run_family(family, timing=options)]
    for r in records:
        r.pop("trajectory", None)
    tell(records, grid.declared())
    extra = sorted({k for r in records for k in r} - set(COLUMNS))
    frame = pd.DataFrame(records, columns=[*COLUMNS, *extra])
    skipped = [(f"{c.problem} {c.dtype} {c.pattern} {c.method}", why) for c, why in grid.skipped]
    return CheckResult(name, frame, skipped)


def _name(problem: str | type[Problem]) -> str:
    if isinstance(problem, str):
        return problem
    if isinstance(problem, type) and issubclass(problem, Problem):
        registered = PROBLEMS.get(problem.name) if problem.name in PROBLEMS else None
        if registered is None or not same_definition(registered, problem):
            raise ValueError(f"{problem.__qualname__} is not registered: decorate it with @register_problem")
        return problem.name
    raise TypeError(f"harness.check takes a problem's name or class, got {problem!r}")


def _hand_written(cls: type[Problem]) -> list[str]:
    """The problem's own gradients: manual, and function and numpy where it defines them."""
    return ["manual"] + (["function"] if cls.has_function() else []) + (["numpy"] if cls.has_numpy() else [])


def _patterns(cls: type[Problem], n) -> list[str]:
    sizes = n if isinstance(n, list) else [n]
    if cls.batched and all(isinstance(v, (int, float)) and v >= 3 for v in sizes):
        return ["full", "uneven:3"]
    return ["full"]
