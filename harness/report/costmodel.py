"""What a method costs, as a line: time per step = a fixed cost + a cost per unit of work.

For each shape family (one problem, dtype, pattern, mode, device and set of other sizes, measured
at several n), each method's per-round times are fitted against the work of its step, on one of
three axes: flops where the problem declares them (`Problem.flops`: softmax's n d c products and the
MLP's grow faster than their bytes, whose weights are read once whatever n), else the bytes it must
read (`bytes_moved`), else rows (n). The fit is Theil-Sen: the slope is the median of the slopes
between every two rounds at different sizes, the fixed cost the median of what the slope leaves, so
a disturbed round moves neither (Theil-Sen's breakdown point is 29%).

A fixed cost is a time and never below zero: where the free line's intercept is, the line is held
through zero (its slope then the median of time / work over the rounds, Theil-Sen through the
origin) and the model says so. On a CPU that happens where small sizes run from cache and large
ones from memory: the time per byte grows with n, and no line through the sizes has a fixed cost.

Intervals (95%) come from a bootstrap over rounds: each measured family's rounds are resampled,
the same rounds for every method, since the methods of a family took turns round by round; so
the comparison with the baseline keeps its pairing. Against the baseline a method costs

    extra fixed cost   a_m - a_0            (seconds per step)
    per-unit ratio     b_m / b_0            (its time per byte, flop or row over the baseline's)

and its time is within `threshold` of the baseline's where (a_m + b_m x) <= t (a_0 + b_0 x): from
x* = (a_m - t a_0) / (t b_0 - b_m) on when a_m > t a_0 and b_m < t b_0 (a fixed overhead that
fades with size), never when both exceed, always when neither does. x* is turned into n through
the family's work per n. The prediction is checked against the measured medians: on the cells
fitted, and where a family has three sizes or more, on each size left out of the fit. A line
through two sizes cannot be checked, so it makes no crossover claim: that needs a third size (or
`gradbench crossover`'s bisection).

Everything is a pure function of the records; nothing here measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..schema import SIZE_NAMES
from .theilsen import THRESHOLD, bootstrap, crossing_x, interval, nonnegative_line, theil_sen

MIN_SIZES = 2  # a line needs two sizes; a third lets the fit be checked on a size left out
CHECK_SIZES = 3  # and the fewest sizes whose line may claim a crossover
# the time per unit "grows with n" where it is this much higher at the large end of n than at the
# small end (Model.per_unit_ends): less is a round's noise (2 to 5% between quiet rounds)
GROWTH = 1.05
MEASURED = ("ok", "mismatch")


@dataclass(frozen=True)
class Shape:
    """A shape family: cells that differ only by method, n and seed."""

    problem: str
    dtype: str
    pattern: str
    mode: str
    device: str
    device_name: str
    data: str
    sizes: tuple[tuple[str, int], ...]  # the other sizes: (("d", 64),)

    @property
    def label(self) -> str:
        """'linear d=64 float32 full': the family as a person names it."""
        parts = [self.problem, *(f"{k}={v}" for k, v in self.sizes), self.dtype, self.pattern]
        if self.data not in ("random", "", None):
            parts.append(f"data={self.data}")
        return " ".join(parts)


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float = math.nan
    hi: float = math.nan


@dataclass(frozen=True)
class Crossover:
    """Where a method's time is within `threshold` of the baseline's. kind: 'from' (at n and
    above), 'up to' (at n and below), 'always', 'never'. lo and hi bound n (inf: never)."""

    kind: str
    n: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    threshold: float = THRESHOLD


@dataclass(frozen=True)
class Model:
    """One method in one shape family: its line, and against the baseline where it has one."""

    shape: Shape
    method: str
    unit: str  # "flop" where the problem declares its flops, "byte" its byte floor, else "row"
    ns: tuple[int, ...]  # the sizes measured, ascending
    cells: int
    fixed_s: Estimate | None = None  # a: seconds per step at zero work, held at or above zero
    per_unit_s: Estimate | None = None  # b: seconds per byte (or row)
    baseline: str | None = None
    extra_fixed_s: Estimate | None = None  # a_m - a_0
    per_unit_ratio: Estimate | None = None  # b_m / b_0
    crossover: Crossover | None = None
    fit_error: float | None = None  # median |predicted / measured - 1| over the cells fitted
    worst_fit_error: float | None = None
    held_out_error: float | None = None  # the same, each size predicted by a fit without it
    worst_held_out_error: float | None = None
    note: str = ""  # why there is no line, or what limits it
    per_n: tuple[float, float] = (1.0, 0.0)  # the family's x (work) at n: c1 n + c0
    # the free line's intercept was below zero: the line is held through zero
    held_at_zero: bool = False
    # the time per unit at the small end and the large end of n, ((n_a, n_b), seconds per unit)
    # each: over two sizes each size's time / work (n_a = n_b); over three or more the slope
    # between the two smallest sizes and between the two largest (what a further byte costs there)
    per_unit_ends: tuple[tuple[tuple[int, int], float], tuple[tuple[int, int], float]] | None = None

    @property
    def checked(self) -> bool:
        """Enough sizes for a size left out and a crossover claim (two make a line, unchecked)."""
        return len(self.ns) >= CHECK_SIZES

    @property
    def grows_with_n(self) -> bool:
        """The time per unit is higher at the large end of n than at the small end (by GROWTH):
        what holds a line through zero (caches on a CPU), rather than a fixed cost too small to
        tell from zero."""
        ends = self.per_unit_ends
        return ends is not None and ends[1][1] > GROWTH * ends[0][1]

    @property
    def fitted(self) -> bool:
        return self.fixed_s is not None

    def predict_s(self, x: float) -> float:
        return self.fixed_s.value + self.per_unit_s.value * x

    def time_at_n(self, n):
        """The line's time per step at n (array or scalar)."""
        c1, c0 = self.per_n
        return self.predict_s(c1 * np.asarray(n, dtype=float) + c0)


# -- against the baseline -------------------------------------------------------------------------


def _crossover(point: tuple, boot: np.ndarray | None, to_n, threshold: float) -> Crossover:
    """The crossover of the fitted lines `point` (fixed_0, slope_0, fixed_m, slope_m), in n, with
    the interval of its resamples `boot` (the same four, by rows)."""
    f0, s0, fm, sm = point
    over_fixed, over_slope = fm - threshold * f0 > 0, sm - threshold * s0 > 0
    if not over_fixed and not over_slope:
        return Crossover("always", threshold=threshold)
    if over_fixed and over_slope:
        return Crossover("never", threshold=threshold)
    x = -(fm - threshold * f0) / (sm - threshold * s0)
    kind = "from" if over_fixed else "up to"
    if to_n(x) < 1:  # no size of one row or more is on the other side: lines held through zero
        return Crossover("always" if kind == "from" else "never", threshold=threshold)
    lo = hi = math.nan
    if boot is not None and kind == "from":
        lo, hi = interval(to_n(crossing_x(boot[0], boot[1], boot[2], boot[3], threshold)))
    return Crossover(kind, float(to_n(x)), max(lo, 0.0) if lo == lo else lo, hi, threshold)


# -- shape families -------------------------------------------------------------------------------


def shape_of(r: pd.Series) -> Shape:
    sizes = tuple((s, int(r[s])) for s in SIZE_NAMES if s != "n" and s in r and pd.notna(r[s]))
    return Shape(
        problem=str(r["problem"]),
        dtype=str(r["dtype"]),
        pattern=str(r["pattern"]),
        mode=str(r["mode"]),
        device=str(r.get("device") or ""),
        device_name=str(r.get("device_name") or ""),
        data=str(r.get("data") or "random"),
        sizes=sizes,
    )


COLUMNS = (
    *("problem", "dtype", "pattern", "mode", "device", "device_name", "data", "method", "seed", "started_at"),
    *("status", "time_samples_s", "time_median_s", "bytes_moved", "flops"),
)


def timed(df: pd.DataFrame) -> pd.DataFrame:
    """Measured gradient-mode cells with a size n and per-round samples: what a model is fitted
    to, in the columns it reads (a record has some ninety)."""
    if df.empty or "time_samples_s" not in df:
        return df.iloc[0:0]
    has_samples = df["time_samples_s"].map(lambda s: s is not None and len(np.atleast_1d(s)) > 0)
    keep = df["status"].isin(MEASURED) & (df["mode"] == "gradient") & df["n"].notna() & has_samples
    columns = [c for c in (*COLUMNS, *SIZE_NAMES) if c in df]
    return df.loc[keep.astype(bool), columns]


def shape_families(df: pd.DataFrame) -> dict[Shape, pd.DataFrame]:
    g = timed(df)
    shapes = [shape_of(r) for _, r in g.iterrows()]
    out: dict[Shape, list] = {}
    for idx, shape in zip(g.index, shapes):
        out.setdefault(shape, []).append(idx)
    return {shape: g.loc[rows] for shape, rows in out.items()}


def _unit(cells: pd.DataFrame) -> tuple[str, pd.Series]:
    """x of each cell: its flops where every cell of the family declares them, else its bytes where
    every cell has a byte floor, else its n."""
    for unit, column in (("flop", "flops"), ("byte", "bytes_moved")):
        x = pd.to_numeric(cells[column], errors="coerce") if column in cells else None
        if x is not None and x.notna().all() and (x > 0).all():
            return unit, x.astype(float)
    return "row", cells["n"].astype(float)


def _per_unit_ends(own: pd.DataFrame, x: pd.Series):
    """The time per unit at the small and the large end of one method's sizes (Model.per_unit_ends)."""
    g = pd.DataFrame({"n": own["n"], "x": x.loc[own.index], "t": own["time_median_s"]})
    at = g.groupby("n").median().sort_index()
    ns = [int(n) for n in at.index]
    if len(ns) == 2:
        per = at["t"] / at["x"]
        return ((ns[0], ns[0]), float(per.iloc[0])), ((ns[1], ns[1]), float(per.iloc[1]))
    slope = lambda i, j: float((at["t"].iloc[j] - at["t"].iloc[i]) / (at["x"].iloc[j] - at["x"].iloc[i]))  # noqa: E731
    return ((ns[0], ns[1]), slope(0, 1)), ((ns[-2], ns[-1]), slope(-2, -1))


def _per_n(cells: pd.DataFrame, x: pd.Series) -> tuple[float, float]:
    """The family's x per n, (c1, c0) of x = c1 n + c0: bytes grow with n at fixed other sizes."""
    n = cells["n"].astype(float)
    if n.nunique() > 1:
        c1, c0 = np.polyfit(n, x, 1)
        return float(c1), float(c0)
    return float((x / n).median()), 0.0


def _strata(cells: pd.DataFrame, methods: list[str], x: pd.Series):
    """(xs, arrays): per measured family (n, seed, when it began), the rounds of `methods` as
    rows, where all of them were timed with the same number of rounds."""
    xs, arrays = [], []
    keys = [k for k in ("n", "seed", "started_at") if k in cells]  # a size measured twice: twice
    for _, g in cells.groupby(keys, sort=True, dropna=False):
        rows = {m: np.asarray(s, dtype=float) for m, s in zip(g["method"], g["time_samples_s"])}
        if not all(m in rows for m in methods) or len({rows[m].size for m in methods}) != 1:
            continue
        xs.append(float(x.loc[g.index[0]]))
        arrays.append(np.stack([rows[m] for m in methods]))
    return xs, arrays


def _errors(cells: pd.DataFrame, x: pd.Series, fixed: float, slope: float) -> tuple[float, float]:
    err = ((fixed + slope * x) / cells["time_median_s"] - 1).abs()
    return float(err.median()), float(err.max())


def _held_out(cells: pd.DataFrame, x: pd.Series, method: str) -> tuple[float | None, float | None]:
    """Each size predicted by the line fitted without it: the model's error where it was not fitted."""
    own = cells[cells["method"] == method]
    ns = sorted(own["n"].unique())
    if len(ns) < CHECK_SIZES:
        return None, None
    errs = []
    for n in ns:
        xs, ys = _strata(own[own["n"] != n], [method], x)
        if len(set(xs)) < MIN_SIZES:
            continue
        fixed, slope = nonnegative_line(xs, [y[0] for y in ys])
        out = own[own["n"] == n]
        errs += list(((float(fixed) + float(slope) * x.loc[out.index]) / out["time_median_s"] - 1).abs())
    return (float(np.median(errs)), float(np.max(errs))) if errs else (None, None)


@dataclass(frozen=True)
class _Fit:
    """Theil-Sen lines of methods fitted together on the same rounds, and their resamples."""

    names: list[str]
    fixed: np.ndarray  # (methods,), held at or above zero
    slope: np.ndarray
    boot: np.ndarray | None  # (2, methods, resamples): fixed and slope
    held: np.ndarray  # (methods,): the free line's intercept was below zero

    def row(self, name: str) -> int:
        return self.names.index(name)

    def estimate(self, name: str, which: int) -> Estimate:
        i = self.row(name)
        value = (self.fixed, self.slope)[which][i]
        lo, hi = interval(self.boot[which, i]) if self.boot is not None else (math.nan, math.nan)
        return Estimate(float(value), lo, hi)


def _fit(cells: pd.DataFrame, names: list[str], x: pd.Series) -> _Fit | None:
    xs, strata = _strata(cells, names, x)
    if len(set(xs)) < MIN_SIZES:
        return None
    free, _ = theil_sen(xs, strata)
    fixed, slope = nonnegative_line(xs, strata)
    return _Fit(names, fixed, slope, bootstrap(xs, strata), free < 0)


def _versus(fit: _Fit, baseline: str, method: str, to_n, threshold: float, checked: bool) -> dict:
    """A method against the baseline fitted beside it: extra fixed cost, per-unit ratio, and where
    the line is `checked` (three sizes or more) its crossover."""
    b, m = fit.row(baseline), fit.row(method)
    point = (fit.fixed[b], fit.slope[b], fit.fixed[m], fit.slope[m])
    boot = (
        None
        if fit.boot is None
        else np.array([fit.boot[0, b], fit.boot[1, b], fit.boot[0, m], fit.boot[1, m]])
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = (boot[2] - boot[0]) if boot is not None else None
        ratio = (boot[3] / boot[1]) if boot is not None else None
    lo_hi = lambda s: interval(s) if s is not None else (math.nan, math.nan)  # noqa: E731
    return dict(
        baseline=baseline,
        extra_fixed_s=Estimate(float(point[2] - point[0]), *lo_hi(extra)),
        per_unit_ratio=Estimate(float(point[3] / point[1]) if point[1] else math.nan, *lo_hi(ratio)),
        crossover=_crossover(point, boot, to_n, threshold) if checked else None,
    )


def fit_family(cells: pd.DataFrame, baseline: str | None, threshold: float = THRESHOLD) -> list[Model]:
    """A model per method of one shape family (`cells`), in the order the methods first appear.

    The baseline and the methods timed beside it at the same sizes are fitted together, on the
    same resampled rounds; a method measured at other sizes is fitted with the baseline where
    they met, or alone."""
    shape = shape_of(cells.iloc[0])
    unit, x = _unit(cells)
    c1, c0 = _per_n(cells, x)
    to_n = lambda v: (np.asarray(v, dtype=float) - c0) / c1  # noqa: E731  (n of an x)
    methods = list(dict.fromkeys(cells["method"]))
    ns = {m: tuple(int(n) for n in sorted(cells.loc[cells["method"] == m, "n"].unique())) for m in methods}
    sized = [m for m in methods if len(ns[m]) >= MIN_SIZES]
    fits: dict[str, _Fit] = {}
    if baseline in sized:
        joint = [baseline, *(m for m in sized if m != baseline and ns[m] == ns[baseline])]
        fit = _fit(cells, joint, x)
        fits.update(dict.fromkeys(joint, fit) if fit else {})
    for m in sized:
        if m not in fits and baseline in sized:
            fits[m] = _fit(cells, [baseline, m], x)
        if fits.get(m) is None:
            fits[m] = _fit(cells, [m], x)
    models = []
    for m in methods:
        own = cells[cells["method"] == m]
        base = dict(shape=shape, method=m, unit=unit, ns=ns[m], cells=len(own), per_n=(c1, c0))
        fit = fits.get(m)
        if fit is None:
            why = f"one size (n = {ns[m][0]:,}): no line to fit" if len(ns[m]) == 1 else "no rounds to fit"
            models.append(Model(**base, note=why))
            continue
        fixed, slope = fit.estimate(m, 0), fit.estimate(m, 1)
        fit_err, worst_err = _errors(own, x.loc[own.index], fixed.value, slope.value)
        held, worst_held = _held_out(cells, x, m)
        checked = len(ns[m]) >= CHECK_SIZES
        more = dict(
            fixed_s=fixed,
            per_unit_s=slope,
            held_at_zero=bool(fit.held[fit.row(m)]),
            per_unit_ends=_per_unit_ends(own, x),
            note="" if checked else "two sizes: a line through two points, unchecked; no crossover claimed",
            fit_error=fit_err,
            worst_fit_error=worst_err,
            held_out_error=held,
            worst_held_out_error=worst_held,
        )
        if m != baseline and baseline in fit.names:
            more.update(_versus(fit, baseline, m, to_n, threshold, checked))
        models.append(Model(**base, **more))
    return models


def cost_models(df: pd.DataFrame, baseline: str | None, threshold: float = THRESHOLD) -> list[Model]:
    """Every method's model in every shape family of the records."""
    return [m for cells in shape_families(df).values() for m in fit_family(cells, baseline, threshold)]
