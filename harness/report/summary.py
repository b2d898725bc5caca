"""Pandas summaries of a run's records: formatting, the size axis, and the tables of a report.

Everything here is derived from the records alone; nothing is stored that can be recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..schema import SIZE_NAMES
from . import catalog

# -- formatting ----------------------------------------------------------------------------------


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def fmt_ratio(r: pd.Series) -> str:
    """'3.27x (3.24–3.35)': the paired ratio to manual with its 95% interval."""
    if r.get("vs_manual") is None or not math.isfinite(r["vs_manual"]):
        return "—"
    text = f"{times(r['vs_manual'])}x"
    lo, hi = r.get("vs_manual_lo"), r.get("vs_manual_hi")
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        text += f" ({times(lo)}–{times(hi)})"
    return text


def fmt_n(n: float) -> str:
    """2.5M, 30k, 950: a size as a person says it."""
    if not math.isfinite(n):
        return "∞"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2g}{suffix}" if n < 10 * scale else f"{n / scale:.0f}{suffix}"
    return f"{n:.0f}"


def times(x: float) -> str:
    """A ratio with sensible digits: 1.54, 23.1, 2568."""
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}" if abs(x) < 100 else f"{x:.0f}"


def noise_text(r: pd.Series) -> str:
    """'stable' or 'unstable (IQR 58%)'."""
    med, iqr = r.get("time_median_s"), r.get("time_iqr_s")
    if r.get("stable") is not False:
        return "stable" if r.get("stable") is True else "—"
    share = iqr / med if med and iqr == iqr else float("nan")
    return f"unstable (IQR {share:.0%})" if share == share else "unstable"


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 cell', '3 cells'; `many` where the plural is not word + s ('families')."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def sizes_text(r: pd.Series) -> str:
    return " ".join(f"{s}={int(r[s])}" for s in SIZE_NAMES if pd.notna(r.get(s)))


def cell_label(r: pd.Series, method: bool = True) -> str:
    """'linear n=1000 d=8 float32 full autograd': a cell as a person names it."""
    parts = [str(r["problem"]), sizes_text(r), str(r["dtype"]), str(r["pattern"])]
    if r.get("mode") == "train":
        parts.append("train")
    if r.get("data") not in (None, "random"):
        parts.append(f"data={r['data']}")
    if method:
        parts.append(str(r["method"]))
    return " ".join(p for p in parts if p)


# -- the size axis -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeAxis:
    """How one problem's cells are placed on a size axis: along `n` where n varies (else along
    the size that does), one line per value of the other sizes that vary (`family`): a product
    such as n·d on one axis would join different shapes into one zigzagging line."""

    along: str  # the size on the x axis
    family: tuple[str, ...]  # the other sizes that vary: one line (or one linestyle) per value
    fixed: str  # sizes that do not vary, for titles: "d=64"

    @property
    def label(self) -> str:
        return SIZE_LABELS.get(self.along, self.along)


SIZE_LABELS = {"n": "n (samples)", "d": "d (features)", "h": "h (hidden units)", "c": "c (classes)"}


def size_axes(df: pd.DataFrame) -> dict[str, SizeAxis]:
    axes = {}
    for problem, g in df.groupby("problem"):
        present = [s for s in SIZE_NAMES if g[s].notna().any()]
        if not present:
            continue
        varying = [s for s in present if g[s].nunique() > 1]
        along = "n" if "n" in varying or not varying and "n" in present else (varying or present)[0]
        family = tuple(s for s in varying if s != along)
        fixed = " ".join(
            f"{s}={int(g[s].dropna().iloc[0])}" for s in present if s not in varying and s != along
        )
        axes[problem] = SizeAxis(along, family, fixed)
    return axes


def with_size(df: pd.DataFrame) -> pd.DataFrame:
    """The records with a `size` column (the problem's size along its axis; NaN for problems
    without sizes, such as `scalar`) and a `shape` column naming its family ('d=64', or '')."""
    df = df.copy()
    df["size"] = math.nan
    df["shape"] = ""
    for problem, axis in size_axes(df).items():
        rows = df["problem"] == problem
        df.loc[rows, "size"] = df.loc[rows, axis.along].astype(float)
        if axis.family:
            df.loc[rows, "shape"] = [
                " ".join(f"{s}={int(r[s])}" for s in axis.family if pd.notna(r[s]))
                for _, r in df.loc[rows, list(axis.family)].iterrows()
            ]
    return df


def main_pattern(df: pd.DataFrame) -> pd.DataFrame:
    """Gradient-mode rows of the plain pattern: `full` where a problem has it, else its first.

    Size plots compare methods at one pattern; the accumulation plot compares the patterns.
    """
    g = df[df["mode"] == "gradient"]
    keep = []
    for _, rows in g.groupby("problem"):
        patterns = list(rows["pattern"].unique())
        chosen = "full" if "full" in patterns else sorted(patterns)[0]
        keep.append(rows[rows["pattern"] == chosen])
    return pd.concat(keep) if keep else g


# -- tables --------------------------------------------------------------------------------------


def key_table(df: pd.DataFrame) -> pd.DataFrame:
    """Time of the manual gradient and every other method's paired ratio to it, per size.

    One row per (problem, dtype, sizes) at the main pattern; the question the table answers is
    "what does autograd cost me here?", so the ratio carries its 95% interval.
    """
    g = main_pattern(df)
    g = g[g["status"].isin(["ok", "mismatch"])]
    if "kind" in g:  # a layer's times, paired with its autograd, are the Layers section's table
        g = g[g["kind"] != "layer"]
    if g.empty:
        return pd.DataFrame()
    known = catalog.current()
    base = known.baseline(g["method"])
    methods = [m for m in known.method_order(g["method"]) if m != base]
    rows = []
    # sorted by problem, dtype, then n, d, h: sizes grow down the table
    keys = ["problem", "dtype", "pattern", "data", *SIZE_NAMES]
    for _, cells in g.groupby(keys, dropna=False, sort=True):
        first = cells.iloc[0]
        by_method = {r["method"]: r for _, r in cells.iterrows()}
        row = {"problem": first["problem"], "dtype": first["dtype"], "sizes": sizes_text(first)}
        manual = by_method.get(base)
        row[f"{base or 'manual'} time"] = fmt_time(manual["time_median_s"]) if manual is not None else "—"
        for m in methods:
            r = by_method.get(m)
            if manual is not None:
                row[f"{m} vs manual"] = fmt_ratio(r) if r is not None else ""
            else:
                row[f"{m} time"] = fmt_time(r["time_median_s"]) if r is not None else ""
        rows.append(row)
    return pd.DataFrame(rows)


def agreement_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per problem, dtype and method: the worst rel_err against its tolerance (headroom < 1 passes)."""
    g = df[df["rel_err"].notna()].copy()
    if g.empty:
        return pd.DataFrame()
    g["headroom"] = g["rel_err"] / g["tol"]
    rows = []
    for (problem, dtype, method), cells in g.groupby(["problem", "dtype", "method"], sort=True):
        worst = cells.loc[cells["headroom"].idxmax()] if cells["headroom"].notna().any() else cells.iloc[0]
        agree = cells["agree"].map(lambda a: a is True).sum()
        rows.append(
            {
                "problem": problem,
                "dtype": dtype,
                "method": method,
                "agree": f"{agree}/{len(cells)}",
                "worst rel_err": fmt_num(worst["rel_err"]),
                "tol there": fmt_num(worst["tol"], 2),
                "rel_err/tol": fmt_num(worst["headroom"], 2),
                "at": f"{sizes_text(worst)} {worst['pattern']}".strip(),
            }
        )
    return pd.DataFrame(rows)


def cells_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell, one line each: what the "All cells" section shows."""
    out = pd.DataFrame(
        {
            "problem": df["problem"],
            "mode": df["mode"],
            "sizes": [sizes_text(r) for _, r in df.iterrows()],
            "dtype": df["dtype"],
            "pattern": df["pattern"],
            "method": df["method"],
            "status": df["status"],
            "time": df["time_median_s"].map(fmt_time),
            "IQR": df["time_iqr_s"].map(fmt_time),
            "vs manual": [fmt_ratio(r) for _, r in df.iterrows()],
            "grad/fwd": df["cost_ratio"].map(lambda x: fmt_num(x, 2)),
            "rel_err": df["rel_err"].map(lambda x: fmt_num(x, 2)),
            "tol": df["tol"].map(lambda x: fmt_num(x, 2)),
            "worker": df["worker"].map(lambda w: "" if w is None or w != w else str(w)),
        }
    )
    return out.sort_values(["problem", "mode", "dtype", "pattern", "method"], kind="stable")
