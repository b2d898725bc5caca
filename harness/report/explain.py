"""Where the time goes, in words: a line per method, what bounds its cells, and its largest
overhead with its profiled step beside the baseline's.

"autograd at linear n=10000 d=64 float32 full, 4.80x manual (its largest overhead): 13 kernels,
GPU busy 18 µs of 287 µs: launch-bound (manual: 7 kernels, GPU busy 14 µs of 50 µs, likewise); of
its 12 profiled cells, launch-bound 8, memory-bound 4". Read from the records' profile columns
(harness.profiling); nothing here measures.
"""

from __future__ import annotations

import math

import pandas as pd

from ..schema import SIZE_NAMES
from . import catalog
from .summary import cell_label, fmt_num, fmt_time, plural

HOST_BOUND = "overhead-bound (Python, dispatcher, autograd engine)"  # a CPU step's launch-bound
FAMILY = ["problem", "mode", "dtype", "pattern", "data", "device", *SIZE_NAMES, "seed"]


def _num(x) -> float | None:
    """A finite number (numpy's included), or None."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def bound_words(r: pd.Series) -> str:
    """What limits the step, as a reader would say it on this device."""
    b, ff, cuda = r.get("bound"), _num(r.get("floor_fraction")), r.get("device") == "cuda"
    if b == "launch":
        return "launch-bound" if cuda else HOST_BOUND
    if b == "memory":
        return f"memory-bound ({ff:.0%} of the read floor)" if ff is not None else "memory-bound"
    if b == "compute":
        return f"compute-bound (busy, at {ff:.0%} of the read floor)" if ff is not None else "compute-bound"
    if b == "other":
        return "busy, with no byte floor to tell memory from compute"
    disturbed = str(r.get("profile_note") or "").startswith("disturbed")
    return "no bound: the profiled step was disturbed by other load" if disturbed else "unprofiled"


def profile_words(r: pd.Series) -> str:
    """'13 kernels, GPU busy 18 µs of 287 µs' (CPU: '13 ops doing work, busy ... of ...')."""
    kernels, busy, wall = (
        _num(r.get("kernels_per_step")),
        _num(r.get("busy_per_step_s")),
        _num(r.get("profiled_wall_s")),
    )
    if kernels is None or busy is None or wall is None:
        return str(r.get("profile_note") or "not profiled")
    if r.get("device") == "cuda":  # against the timed step: CUPTI slows the host, not the kernels
        wall = _num(r.get("time_median_s")) or wall
        return f"{fmt_num(kernels)} kernels, GPU busy {fmt_time(busy)} of {fmt_time(wall)}"
    return f"{fmt_num(kernels)} ops doing work, busy {fmt_time(busy)} of {fmt_time(wall)}"


SHORT = {"memory": "memory-bound", "compute": "compute-bound", "other": "busy without a byte floor"}


def bound_counts(cells: pd.DataFrame) -> str:
    """'overhead-bound 40, memory-bound 10, compute-bound 12' (what overhead is, the section's note
    and each line's example say once)."""
    counts = cells["bound"].value_counts()
    words = []
    for bound, k in counts.items():
        if bound == "launch":
            cuda = (cells.loc[cells["bound"] == bound, "device"] == "cuda").all()
            words.append(f"{'launch-bound' if cuda else 'overhead-bound'} {k}")
        else:
            words.append(f"{SHORT.get(bound, bound)} {k}")
    return ", ".join(words)


def sentences(df: pd.DataFrame) -> list[str]:
    """A line per method: what bounds its profiled cells, and for a method paired with the
    baseline, its largest overhead explained by its profile beside the baseline's."""
    if "bound" not in df or df["bound"].isna().all():
        return []
    known = catalog.current()
    base = known.baseline(df["method"])
    out = []
    for method in known.method_order(df["method"]):
        cells = df[df["method"] == method]
        profiled = cells[cells["bound"].notna()]
        if profiled.empty:
            notes = cells["profile_note"].dropna()
            out.append(f"{method}: not profiled ({notes.iloc[0] if len(notes) else 'no profile'}).")
            continue
        counts = f"of its {plural(len(profiled), 'profiled cell')}, {bound_counts(profiled)}"
        paired = profiled[profiled["vs_manual"].notna()] if method != base else profiled.iloc[0:0]
        if paired.empty:
            out.append(f"{method}: {counts}.")
            continue
        r = paired.loc[paired["vs_manual"].idxmax()]
        text = f"{method} at {cell_label(r, method=False)}, {r['vs_manual']:.2f}x {base} (its largest "
        text += f"overhead): {profile_words(r)}: {bound_words(r)}"
        peer = _peer(df, r, base)
        if peer is not None:
            same = peer.get("bound") == r.get("bound")
            text += f" ({base}: {profile_words(peer)}{', likewise' if same else ': ' + bound_words(peer)})"
        out.append(f"{text}; {counts}.")
    return out


def _peer(df: pd.DataFrame, r: pd.Series, method: str | None) -> pd.Series | None:
    if method is None:
        return None
    same = df["method"] == method
    for key in FAMILY:
        if key in df:
            same &= (df[key] == r[key]) | (df[key].isna() & pd.isna(r[key]))
    rows = df[same]
    return rows.iloc[0] if len(rows) else None


def profile_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every profiled cell: what limits it, and the profile it was read from."""
    g = df[df["bound"].notna()] if "bound" in df else df.iloc[0:0]
    if g.empty:
        return pd.DataFrame()
    g = g.sort_values(["problem", "dtype", "pattern", "n", "method"], kind="stable")
    return pd.DataFrame(
        {
            "cell": [cell_label(r) for _, r in g.iterrows()],
            "bound": g["bound"],
            "ops/step": g["ops_per_step"].map(fmt_num),
            "kernels/step": g["kernels_per_step"].map(fmt_num),
            "busy/step": g["busy_per_step_s"].map(fmt_time),
            "wall/step (profiled)": g["profiled_wall_s"].map(fmt_time),
            "time (timed)": g["time_median_s"].map(fmt_time),
            "of read floor": g["floor_fraction"].map(lambda x: f"{x:.0%}" if _num(x) is not None else "—"),
        }
    )
