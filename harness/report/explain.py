"""Where the time goes, in words: each large overhead with its profiled step beside the baseline's.

"autograd at linear n=10000 d=64 float32 full: 13 kernels, GPU busy 18 µs of 287 µs: launch-bound
(manual: 7 kernels, 14 µs of 50 µs)". Read from the records' profile columns (harness.profiling);
nothing here measures.
"""

from __future__ import annotations

import math

import pandas as pd

from . import catalog
from .summary import TOP, cell_label, fmt_num, fmt_time, plural

FAMILY = ["problem", "mode", "dtype", "pattern", "data", "device", "n", "d", "h", "seed"]
# seen on an H200 (profiled by hand, torch 2.11): the same launch-bound steps ran 0.26 to 0.59 ms
SWING = "2 to 3x"


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
        return "launch-bound" if cuda else "overhead-bound (Python, dispatcher, autograd engine)"
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


def sentences(df: pd.DataFrame, top: int = TOP) -> list[str]:
    """The largest overheads over the baseline, each explained by its profile and the baseline's;
    then the caution that launch-bound ratios swing between runs."""
    if "bound" not in df or df["bound"].isna().all():
        return []
    known = catalog.current()
    base = known.baseline(df["method"])
    over = df[df["method"].map(lambda m: isinstance(m, str) and not known.hand_written(m))]
    over = over[over["vs_manual"].notna()].sort_values("vs_manual", ascending=False).head(top)
    out = []
    for _, r in over.iterrows():
        text = f"{r['method']} at {cell_label(r, method=False)}, {r['vs_manual']:.2f}x {base}: "
        text += f"{profile_words(r)}: {bound_words(r)}"
        peer = _peer(df, r, base)
        if peer is not None:
            text += f" ({base}: {profile_words(peer)}: {bound_words(peer)})"
        out.append(text + ".")
    launch = df[df["bound"] == "launch"]
    if len(launch):
        out.append(
            f"{plural(len(launch), 'cell')} launch- or overhead-bound: such timings swing {SWING} "
            "between runs (seen on an H200), so read their ratios with care."
        )
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
