"""The layers of a run (a Function beside its reference, harness.layers), beside its problems:
the verdict of each method against the reference, and the time and memory of each, as the
field's layer benchmarks table them (forward, backward, both, peak memory per method).

A built-in section: it applies to a run whose records hold layers (`kind` == "layer").
"""

from __future__ import annotations

import math

import pandas as pd

from . import catalog
from .blocks import Para, Table
from .data import FAILED, Run
from .sections import Section, register_section
from .summary import fmt_ratio, fmt_time, plural, sizes_text
from .verdict import _short

VERDICT_NOTE = (
    "Each method's vector-Jacobian product under a seeded random grad_output, input by input, against "
    "float64 autograd of the reference, in every layout (non-contiguous, rows folded, an input needing "
    "no gradient); the first disagreement's words name the input."
)
TIMES_NOTE = (
    "Median time per call over interleaved rounds: the forward, the backward alone (through a retained "
    "graph) and both (full); every method's three take turns in the same rounds. vs autograd: the full "
    "step's ratio to the reference differentiated, paired round by round, with its 95% interval. Peak "
    "memory: one full step, beyond its inputs (on the CPU, tensors alive at once as the dispatcher "
    "sees them)."
)


def layer_records(run: Run) -> pd.DataFrame:
    df = run.records
    if "kind" not in df:
        return df.iloc[0:0]
    return df[df["kind"] == "layer"]


def fmt_bytes(b) -> str:
    if b is None or (isinstance(b, float) and not math.isfinite(b)):
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{int(b)} B"


def _said(r: pd.Series) -> str:
    if r["status"] in FAILED:
        return f"✗ {r['status']}: {_short(r.get('error'))}"
    if r.get("agree") is False:
        return f"✗ disagrees: {r.get('diagnosis') or 'outside the tolerance'}"
    if r.get("agree") is True:  # with a note where it computes a gradient no input needs
        note = r.get("diagnosis")
        return f"✓ agrees; {note}" if isinstance(note, str) else "✓ agrees"
    return r["status"]


def _rows(df: pd.DataFrame) -> list[dict]:
    known = catalog.current()
    rows = []
    keys = ["problem", "dtype", "device", "n", "d", "h", "c"]
    present = [k for k in keys if k in df]
    for _, group in df.groupby(present, dropna=False, sort=True):
        for method in known.method_order(group["method"]):
            for _, r in group[group["method"] == method].iterrows():
                rows.append(r)
    return rows


def verdict_table(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "layer": r["problem"],
                "dtype": r["dtype"],
                "sizes": sizes_text(r),
                "method": r["method"],
                "verdict": _said(r),
            }
            for r in _rows(df)
        ]
    )


def times_table(df: pd.DataFrame) -> pd.DataFrame:
    timed = df[df["time_median_s"].notna()] if "time_median_s" in df else df.iloc[0:0]
    return pd.DataFrame(
        [
            {
                "layer": r["problem"],
                "dtype": r["dtype"],
                "device": r["device"],
                "sizes": sizes_text(r),
                "method": r["method"],
                "forward": fmt_time(_num(r.get("forward_median_s"))),
                "backward": fmt_time(_num(r.get("backward_median_s"))),
                "full": fmt_time(_num(r.get("time_median_s"))),
                "vs autograd": fmt_ratio(r),
                "peak memory": fmt_bytes(_num(r.get("peak_bytes"))),
            }
            for r in _rows(timed)
        ]
    )


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


@register_section
def layers(run: Run) -> Section | None:
    df = layer_records(run)
    if not len(df):
        return None
    names = sorted(set(df["problem"]))
    bad = df[(df["agree"] == False) | df["status"].isin(FAILED)]  # noqa: E712 - agree holds None too
    words = f"Layers ({', '.join(names)}): {plural(len(df), 'cell')}, "
    if len(bad):
        words += f"**{len(bad)} disagree or fail**: see Layers."
    else:
        words += "every method agrees with the reference in every layout."
    blocks = [Para(VERDICT_NOTE), Table(verdict_table(df))]
    times = times_table(df)
    if len(times):
        blocks += [Para(TIMES_NOTE), Table(times)]
    else:
        blocks += [Para("Not timed (timing rounds 0): agreement only.")]
    return Section("Layers", blocks, verdict=[words])
