"""The cost model (costmodel.py) fitted on a bisection's own measurements (`gradbench crossover`,
harness.runs.crossover), its crossover held against the bisection's bracket: a sentence, and the
numbers for the command's JSON. The command joins the two; the search knows nothing of the fit.
"""

from __future__ import annotations

import pandas as pd

from . import costwords
from .costmodel import cost_models
from .data import normalize


def model_of(
    records: list[dict], method: str, baseline: str, threshold: float, bracket: tuple[int | None, int | None]
) -> dict | None:
    """`records`: the search's families; `bracket`: the n above the threshold and the n below it
    (None where the search found none)."""
    if not records:
        return None
    df = normalize(pd.DataFrame(records))
    found = [m for m in cost_models(df, baseline, threshold) if m.method == method and m.crossover]
    if not found:
        return None
    m = found[0]
    c = m.crossover
    lo, hi = bracket
    words = f"the cost model over these {len(m.ns)} sizes ({m.unit} axis): {method} {costwords.versus(m)}, "
    words += costwords.crossover_words(c, baseline, m.ns)
    if m.held_out_error is not None:
        words += f"; each size left out of the fit predicted within {m.held_out_error:.0%} (median)"
    agrees = None
    if c.kind == "from" and lo is not None and hi is not None:
        agrees = bool(lo <= c.n <= hi)
        words += f"; {'inside' if agrees else 'outside'} the bisection's bracket ({lo:,} to {hi:,})"
    return {
        "sentence": words,
        "kind": c.kind,
        "n": c.n,
        "n_lo": c.lo,
        "n_hi": c.hi,
        "extra_fixed_s": m.extra_fixed_s.value,
        "per_unit_ratio": m.per_unit_ratio.value,
        "unit": m.unit,
        "held_out_error": m.held_out_error,
        "agrees_with_bisection": agrees,
    }
