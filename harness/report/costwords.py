"""The cost model (costmodel.py) in words and as a table.

"41 µs more per step (38 to 45 µs) and 1.06x manual's time per byte (1.03 to 1.09) on linear d=64
float32 full; within 10% of manual from n ≈ 2.5M (1.9M to 3.4M)". A time is never written below
zero: a fixed cost is held at or above zero by the fit, and a difference of times says "more" or
"less". Nothing here fits or measures.
"""

from __future__ import annotations

import math

import pandas as pd

from .costmodel import Crossover, Estimate, Model
from .summary import fmt_n, times

UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))


def _scale(*xs: float) -> tuple[str, float]:
    """The unit in which the largest of xs reads under 1000."""
    top = max((abs(x) for x in xs if math.isfinite(x)), default=0.0)
    return next(((u, s) for u, s in UNITS if top >= s), UNITS[-1])


def _num(x: float) -> str:
    """Three significant digits of |x|, no exponent: a sign is said in words."""
    return f"{abs(x):.0f}" if abs(x) >= 100 else f"{abs(x):.3g}"


def _side(x: float) -> str:
    return "less" if x < 0 else "more"


def signed_time(e: Estimate) -> str:
    """'41 µs more (38 to 45 µs)', '12 µs less (30 µs less to 6.1 µs more)': a difference of times,
    its interval in the same unit, each end's side named where the interval holds both; 'nothing
    more' where both lines are held through zero."""
    bounds = [b for b in (e.lo, e.hi) if math.isfinite(b)]
    unit, scale = _scale(e.value, *bounds)
    text = "nothing more" if e.value == 0 else f"{_num(e.value / scale)} {unit} {_side(e.value)}"
    if len(bounds) < 2 or e.lo == e.hi == 0:
        return text
    if (e.lo < 0) == (e.hi < 0) == (e.value < 0) and e.value != 0:
        low, high = sorted((abs(e.lo), abs(e.hi)))
        return text + f" ({_num(low / scale)} to {_num(high / scale)} {unit})"
    ends = [f"{_num(b / scale)} {unit} {_side(b)}" if b else "nothing" for b in (e.lo, e.hi)]
    return text + f" ({ends[0]} to {ends[1]})"


def plain_time(e: Estimate) -> str:
    """'4.6 µs (3.4 to 8.2 µs)': a time the fit holds at or above zero."""
    unit, scale = _scale(e.value, e.lo, e.hi)
    text = f"{_num(e.value / scale)} {unit}"
    if math.isfinite(e.lo) and math.isfinite(e.hi):
        text += f" ({_num(e.lo / scale)} to {_num(e.hi / scale)} {unit})"
    return text


def _span(ns: tuple[int, int]) -> str:
    return f"at n = {fmt_n(ns[0])}" if ns[0] == ns[1] else f"from n = {fmt_n(ns[0])} to {fmt_n(ns[1])}"


def held_reason(m: Model) -> str:
    """Why a line is held through zero: 'the time per byte grows with n: 0.29 ns at n = 1k,
    0.41 ns at n = 100k' (caches), or a fixed cost too small to tell from zero."""
    if not m.grows_with_n:
        return "a fixed cost too small to tell from zero"
    (ns0, t0), (ns1, t1) = m.per_unit_ends
    unit, scale = _scale(t0, t1)
    return (
        f"the time per {m.unit} grows with n: {_num(t0 / scale)} {unit} {_span(ns0)}, "
        f"{_num(t1 / scale)} {unit} {_span(ns1)}"
    )


def fixed_cost(m: Model) -> str:
    """The fixed cost per step, '4.6 µs (3.4 to 8.2 µs)', or where the line is held through zero
    'none: the time per byte grows with n, ...'."""
    return f"none: {held_reason(m)}" if m.held_at_zero else plain_time(m.fixed_s)


def ratio(e: Estimate) -> str:
    """'1.06x (1.03 to 1.09)'."""
    text = f"{times(e.value)}x"
    if math.isfinite(e.lo) and math.isfinite(e.hi):
        text += f" ({times(e.lo)} to {times(e.hi)})"
    return text


RATES = {"byte": "GB/s", "flop": "GFLOP/s"}


def per_unit(m: Model) -> str:
    """'0.081 ns per byte (12 GB/s)', '0.02 ns per flop (50 GFLOP/s)', or per row where the
    problem declares neither."""
    b = m.per_unit_s
    unit, scale = _scale(b.value)
    text = f"{_num(b.value / scale)} {unit} per {m.unit}"
    if m.unit in RATES and b.value > 0:
        text += f" ({1 / b.value / 1e9:.3g} {RATES[m.unit]})"
    return text


def where_within(c: Crossover, ns: tuple[int, ...]) -> str:
    """'from n ≈ 2.5M (1.9M to 3.4M), beyond the largest n measured (100k)', 'at every size',
    'only up to n ≈ 2.4k', 'never'."""
    if c.kind == "always":
        return "at every size"
    if c.kind == "never":
        return "never"
    if c.kind == "up to":
        return f"only up to n ≈ {fmt_n(c.n)}"
    text = f"from n ≈ {fmt_n(c.n)}"
    if math.isfinite(c.lo) and c.hi == c.hi:
        text += f" ({fmt_n(c.lo)} to {fmt_n(c.hi) if math.isfinite(c.hi) else 'never'})"
    if ns and c.n > max(ns):
        text += f", beyond the largest n measured ({fmt_n(max(ns))})"
    elif ns and c.n < min(ns):
        text += f", below the smallest n measured ({fmt_n(min(ns))})"
    return text


TWO_SIZES = "two sizes, a line unchecked: no crossover claimed (a third size, or `gradbench crossover`)"


def crossover_words(c: Crossover | None, baseline: str, ns: tuple[int, ...]) -> str:
    """'within 10% of manual from n ≈ 2.5M (1.9M to 3.4M)', 'never within 10% of manual'; for a
    line through two sizes, that it claims none."""
    if c is None:
        return TWO_SIZES if len(ns) == 2 else ""
    t = f"{c.threshold - 1:.0%}"
    where = where_within(c, ns)
    return f"never within {t} of {baseline}" if c.kind == "never" else f"within {t} of {baseline} {where}"


def versus(m: Model) -> str:
    """'41 µs more per step (38 to 45 µs) and 1.06x manual's time per byte (1.03 to 1.09)'."""
    return (
        f"{signed_time(m.extra_fixed_s)} per step and {ratio(m.per_unit_ratio)} "
        f"{m.baseline}'s time per {m.unit}"
    )


def alone(m: Model) -> str:
    """'4.6 µs (3.4 to 8.2 µs) per step + 0.081 ns per byte (12 GB/s)'; where the line is held
    through zero, the cost per unit and why there is no fixed cost."""
    if m.held_at_zero:
        return f"{per_unit(m)} and no fixed cost ({held_reason(m)})"
    return f"{plain_time(m.fixed_s)} per step + {per_unit(m)}"


def fit_words(m: Model) -> str:
    """'fitted per flop over 3 sizes, within 2.1% of its cells, 4.0% on a size left out'."""
    sizes = f"{len(m.ns)} sizes" if m.checked else "two sizes, unchecked"
    text = f"fitted per {m.unit} over {sizes}, within {m.fit_error:.1%} of its cells"
    if m.held_out_error is not None:
        text += f", {m.held_out_error:.1%} on a size left out"
    return text


def headline(models: list[Model]) -> Model | None:
    """The family that speaks for a method: the plain pattern, the most sizes, float32, the most
    bytes (the largest shapes, where a fixed cost weighs least)."""
    fitted = [m for m in models if m.fitted]
    if not fitted:
        return None

    def key(m: Model):
        compared = m.extra_fixed_s is not None
        return (not compared, m.shape.pattern != "full", -len(m.ns), m.shape.dtype != "float32", -max(m.ns))

    return min(fitted, key=key)


def spread(models: list[Model]) -> str:
    """'across 12 shape families 49 µs more to 255 µs more per step and 0.86x to 2.4x per byte'."""
    compared = [m for m in models if m.extra_fixed_s is not None]
    if len(compared) < 2:
        return ""
    fixed = [m.extra_fixed_s.value for m in compared]
    per = [m.per_unit_ratio.value for m in compared if math.isfinite(m.per_unit_ratio.value)]
    lo, hi = (signed_time(Estimate(v)) for v in (min(fixed), max(fixed)))
    text = f"across {len(compared)} shape families {lo} to {hi} per step"
    if per:
        units = " or ".join(dict.fromkeys(m.unit for m in compared))
        text += f" and {times(min(per))}x to {times(max(per))}x per {units}"
    return text


def _error(m: Model) -> str:
    if m.held_out_error is not None:
        return f"{m.held_out_error:.0%} (worst {m.worst_held_out_error:.0%})"
    return "— (two sizes)" if len(m.ns) == 2 else "—"


def table(models: list[Model]) -> pd.DataFrame:
    """One row per method and shape family: the line, against the baseline, and its error."""
    rows = []
    for m in models:
        row = {"method": m.method, "shape family": m.shape.label, "n": ", ".join(fmt_n(n) for n in m.ns)}
        if not m.fitted:
            rows.append({**row, "fixed per step": m.note})
            continue
        compared = m.extra_fixed_s is not None
        within = where_within(m.crossover, m.ns) if m.crossover else ""
        row.update(
            {
                "fixed per step": fixed_cost(m),
                "per unit of work": per_unit(m),
                "vs baseline: fixed": signed_time(m.extra_fixed_s) if compared else "",
                "vs baseline: per unit": ratio(m.per_unit_ratio) if m.per_unit_ratio else "",
                "within 10% of baseline": within or ("needs a third size" if compared else ""),
                "fit error": f"{m.fit_error:.1%}",
                "size left out": _error(m),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows).fillna("")
