"""The cost model (costmodel.py) in words and as a table.

"+41 µs per step (38 to 45 µs) and 1.06x manual's time per byte (1.03 to 1.09) on linear d=64
float32 full; within 10% of manual from n ≈ 2.5M (1.9M to 3.4M)". Nothing here fits or measures.
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
    """Three significant digits, no exponent, a true minus sign."""
    text = f"{abs(x):.0f}" if abs(x) >= 100 else f"{abs(x):.3g}"
    return ("−" if x < 0 else "") + text


def signed_time(e: Estimate) -> str:
    """'+41 µs (38 to 45 µs)': a difference of times, its interval in the same unit."""
    unit, scale = _scale(e.value, e.lo, e.hi)
    text = f"{'+' if e.value >= 0 else ''}{_num(e.value / scale)} {unit}"
    if math.isfinite(e.lo) and math.isfinite(e.hi):
        text += f" ({_num(e.lo / scale)} to {_num(e.hi / scale)} {unit})"
    return text


def plain_time(e: Estimate) -> str:
    """'4.6 µs (3.4 to 8.2 µs)'; a negative fixed cost (the line's intercept) is shown as it is."""
    return signed_time(e).lstrip("+")


def ratio(e: Estimate) -> str:
    """'1.06x (1.03 to 1.09)'."""
    text = f"{times(e.value)}x"
    if math.isfinite(e.lo) and math.isfinite(e.hi):
        text += f" ({times(e.lo)} to {times(e.hi)})"
    return text


def per_unit(m: Model) -> str:
    """'0.081 ns per byte (12 GB/s)', or per row where the problem has no byte floor."""
    b = m.per_unit_s
    unit, scale = _scale(b.value)
    text = f"{_num(b.value / scale)} {unit} per {m.unit}"
    if m.unit == "byte" and b.value > 0:
        text += f" ({1 / b.value / 1e9:.3g} GB/s)"
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


def crossover_words(c: Crossover | None, baseline: str, ns: tuple[int, ...]) -> str:
    """'within 10% of manual from n ≈ 2.5M (1.9M to 3.4M)', 'never within 10% of manual'."""
    if c is None:
        return ""
    t = f"{c.threshold - 1:.0%}"
    where = where_within(c, ns)
    return f"never within {t} of {baseline}" if c.kind == "never" else f"within {t} of {baseline} {where}"


def versus(m: Model) -> str:
    """'+41 µs per step (38 to 45 µs) and 1.06x manual's time per byte (1.03 to 1.09)'."""
    return (
        f"{signed_time(m.extra_fixed_s)} per step and {ratio(m.per_unit_ratio)} "
        f"{m.baseline}'s time per {m.unit}"
    )


def alone(m: Model) -> str:
    """'4.6 µs (3.4 to 8.2 µs) per step + 0.081 ns per byte (12 GB/s)'; the fixed cost is the line's
    intercept, below zero where small sizes run faster per byte (from cache) than large ones."""
    return f"{plain_time(m.fixed_s)} per step + {per_unit(m)}"


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
    """'across 12 shape families +49 to +255 µs per step and 0.86x to 2.4x per byte'."""
    compared = [m for m in models if m.extra_fixed_s is not None]
    if len(compared) < 2:
        return ""
    fixed = [m.extra_fixed_s.value for m in compared]
    per = [m.per_unit_ratio.value for m in compared if math.isfinite(m.per_unit_ratio.value)]
    lo, hi = (signed_time(Estimate(v)) for v in (min(fixed), max(fixed)))
    text = f"across {len(compared)} shape families {lo} to {hi} per step"
    if per:
        text += f" and {times(min(per))}x to {times(max(per))}x per {compared[0].unit}"
    return text


def _error(m: Model) -> str:
    if m.held_out_error is not None:
        return f"{m.held_out_error:.0%} (worst {m.worst_held_out_error:.0%})"
    return "—"


def table(models: list[Model]) -> pd.DataFrame:
    """One row per method and shape family: the line, against the baseline, and its error."""
    rows = []
    for m in models:
        row = {"method": m.method, "shape family": m.shape.label, "n": ", ".join(fmt_n(n) for n in m.ns)}
        if not m.fitted:
            rows.append({**row, "fixed per step": m.note})
            continue
        row.update(
            {
                "fixed per step": plain_time(m.fixed_s),
                "per byte (or row)": per_unit(m),
                "vs baseline: fixed": signed_time(m.extra_fixed_s) if m.extra_fixed_s else "",
                "vs baseline: per byte": ratio(m.per_unit_ratio) if m.per_unit_ratio else "",
                "within 10% of baseline": where_within(m.crossover, m.ns) if m.crossover else "",
                "fit error": f"{m.fit_error:.1%}",
                "size left out": _error(m),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows).fillna("")
