"""The crossover: the n at which a method's paired overhead over the baseline falls under a threshold
(autograd over manual under 10%), found by bisection over n on a geometric scale.

Each step measures one family (the baseline and the method, interleaved, so the ratio is paired)
and its 95% interval decides: the whole interval above the threshold, the crossover is at larger
n; the whole interval below, at smaller n; straddling, the step is measured again with twice the
rounds, and if it still straddles, the overhead there cannot be told from the threshold: the search
says so and stops there. The search assumes the overhead falls as n grows (a fixed cost per step
over a cost that grows with n); it stops when the bracket is narrower than `resolution` or after
`max_steps` measurements.

Measured on the 2-core CPU (linear, d = 64, float32, 2 threads, 21 rounds): autograd over manual
2.82x at n = 4096, 1.21x (1.19 to 1.21) at 2^18, 1.105x (1.098 to 1.110) at 2^19, 1.07x (1.05 to
1.09) at 2^20: the crossover is about n = 2^19. On an H200 it lies between n = 2.2M and 2.7M
(the GPU's launch cost is a larger share of a fast step). Another day the 2-core machine gave
1.35x at 2^20: a CPU's ratio moves with its load, so the search is worth repeating.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

Measure = Callable[[int, int], tuple[float, float, float]]  # (n, rounds) -> (ratio, lo, hi)

ABOVE, BELOW, STRADDLES = "above", "below", "straddles"


@dataclass(frozen=True)
class Point:
    n: int
    ratio: float
    lo: float
    hi: float
    rounds: int

    def side(self, threshold: float) -> str:
        if self.lo > threshold:
            return ABOVE
        if self.hi < threshold:
            return BELOW
        return STRADDLES


@dataclass
class Crossover:
    """Where the search ended. `outcome`: found (between `above` and `below`), straddles (at
    `near`, indistinguishable from the threshold), none in range (above it at n_max), below range
    (under it already at n_min)."""

    threshold: float
    n_min: int
    n_max: int
    points: list[Point] = field(default_factory=list)  # in the order measured
    outcome: str = ""
    above: Point | None = None  # the largest n whose whole interval is above the threshold
    below: Point | None = None  # the smallest n whose whole interval is below it
    near: Point | None = None  # a point that still straddles it after refinement

    @property
    def n(self) -> float | None:
        """The crossover's estimate: the geometric middle of its bracket, or the straddling n."""
        if self.near is not None:
            return float(self.near.n)
        if self.outcome == "found":
            return math.sqrt(self.above.n * self.below.n)
        return None

    @property
    def interval(self) -> tuple[int | None, int | None]:
        """The n between which the crossover lies (None: open on that side)."""
        return (self.above.n if self.above else None, self.below.n if self.below else None)

    def sentence(self, what: str = "the overhead") -> str:
        t = f"{(self.threshold - 1):.0%}"
        lo, hi = self.interval
        if self.outcome == "found":
            return f"{what} falls under {t} between n = {lo:,} and n = {hi:,} (about n = {self.n:,.0f})"
        if self.outcome == "straddles":
            text = f"{what} is indistinguishable from {t} at n = {self.near.n:,} ({_ratio(self.near)})"
            if self.above:
                text += f"; above it at n = {lo:,} ({_ratio(self.above)})"
            if self.below:
                text += f"; under it at n = {hi:,} ({_ratio(self.below)})"
            return text
        # the last measurement at each end (a refined one replaces the first)
        last = {p.n: p for p in self.points}
        ends = ", ".join(f"{_ratio(last[n])} at n = {n:,}" for n in (self.n_min, self.n_max) if n in last)
        if self.outcome == "none in range":
            return f"no crossover up to n = {self.n_max:,}: {what} stays above {t} ({ends})"
        return f"{what} is under {t} already at n = {self.n_min:,} ({ends})"

    def as_dict(self) -> dict:
        return {**asdict(self), "n": self.n, "interval": list(self.interval)}


def _ratio(p: Point) -> str:
    return f"{p.ratio:.3f}x ({p.lo:.3f} to {p.hi:.3f})"


def search(
    measure: Measure,
    n_min: int,
    n_max: int,
    threshold: float = 1.10,
    rounds: int = 11,
    max_steps: int = 10,
    refine: int = 1,
    resolution: float = 1.25,
    quantum: int = 1,
    on_point: Callable[[Point], None] | None = None,
) -> Crossover:
    """Bisect [n_min, n_max] for the crossover; `quantum` rounds every n to a multiple of it (a
    pattern's k). At most `max_steps` measurements plus `refine` more for each straddling one."""
    if not 1 <= n_min < n_max:
        raise ValueError(f"need 1 <= n_min < n_max, got {n_min} and {n_max}")
    out = Crossover(threshold, n_min, n_max)

    def decide(n: int) -> str:
        r = rounds
        for attempt in range(refine + 1):
            p = Point(n, *measure(n, r), rounds=r)
            out.points.append(p)
            if on_point:
                on_point(p)
            side = p.side(threshold)
            if side != STRADDLES or attempt == refine:
                break
            r *= 2
        if side == ABOVE:
            out.above = p
        elif side == BELOW:
            out.below = p
        else:
            out.near = p
        return side

    first, last = decide(n_min), decide(n_max)
    if first == BELOW:
        out.outcome, out.near = "below range", None
        return out
    if last == ABOVE:
        out.outcome, out.near = "none in range", None
        return out
    if STRADDLES in (first, last):  # `near` is the end that straddles (n_max if both do)
        out.outcome = "straddles"
        return out
    a, b = n_min, n_max
    while len(out.points) < max_steps and b / a > resolution:
        mid = max(quantum, round(math.sqrt(a * b) / quantum) * quantum)
        if not a < mid < b:
            break
        side = decide(mid)
        if side == STRADDLES:
            out.outcome = "straddles"
            return out
        a, b = (mid, b) if side == ABOVE else (a, mid)
    out.outcome = "found"
    return out


def family_measure(
    problem: str,
    d: int | None,
    dtype: str,
    methods: tuple[str, str],
    device: str,
    pattern: str = "full",
    min_run_time_s: float = 0.2,
    threads: int | None = None,
    seed: int = 0,
    keep: list | None = None,
    h: int | None = None,
) -> Measure:
    """(n, rounds) -> the paired ratio of methods[1] to methods[0] with its 95% interval, from one
    family run by run_family (no profiling: only the ratio is wanted). The records go to `keep`
    where given: the cost model is fitted on them."""
    from ..cell import Cell, run_family
    from ..measure import TimingOptions

    base, other = methods

    def measure(n: int, rounds: int) -> tuple[float, float, float]:
        cells = [
            Cell(problem, m, pattern=pattern, dtype=dtype, device=device, n=n, d=d, h=h, seed=seed)
            for m in methods
        ]
        timing = TimingOptions(min_run_time_s=min_run_time_s, rounds=rounds, profile=False)
        records = {r["method"]: r for r in run_family(cells, device, threads, timing)}
        if keep is not None:
            keep.extend(records.values())
        for r in records.values():
            if r["status"] != "ok":
                raise RuntimeError(f"{r['method']} at n={n}: {r['status']} {r['error'] or ''}".strip())
        r = records[other]
        if r["vs_manual"] is None:
            raise RuntimeError(f"{other} at n={n} has no ratio to {base}: is {base} the baseline method?")
        return r["vs_manual"], r["vs_manual_lo"], r["vs_manual_hi"]

    return measure


HEADER = f"{'n':>12}  {'ratio':>7}  {'95% interval':>17}  {'rounds':>6}  side"


def row(p: Point, threshold: float) -> str:
    return f"{p.n:>12,}  {p.ratio:>7.3f}  {p.lo:>7.3f} to {p.hi:<7.3f}  {p.rounds:>6}  {p.side(threshold)}"


def table(result: Crossover) -> str:
    return "\n".join([HEADER, *(row(p, result.threshold) for p in result.points)])


def write_json(result: Crossover, path, context: dict, model: dict | None = None) -> None:
    sentence = result.sentence(f"{context['method']}'s overhead over {context['baseline']}")
    with open(path, "w") as f:
        json.dump({**context, **result.as_dict(), "sentence": sentence, "model": model}, f, indent=2)
