"""Is the gradient right, and what do accumulation patterns cost: rel_err against the tolerance,
and time and error per pattern."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import SIZE_NAMES
from . import catalog
from . import plotting as P
from .data import Run
from .plots_speed import dtype_rank, lines, method_entries, shape_legend
from .summary import fmt_time, size_axes, sizes_text, with_size

# rel_err can be exactly 0 (a float64 gradient summed in the reference's order); a log axis
# cannot show 0, so exact results sit on this floor, below float64's unit roundoff 1.1e-16
EXACT_FLOOR = 1e-17
MAX_PANELS = 8  # rows of the accumulation figure: a full sweep would make it metres tall
TOL_COLOR, TOL_LABEL = "#b22222", "tolerance (tol)"


def worst_per_size(run: Run) -> pd.DataFrame:
    """Per problem, dtype, method, shape family and size: the cell whose rel_err is worst against
    its tolerance over every pattern and mode (the agreement table's rule), with `shown`, its
    rel_err floored for a log axis, and `bad`, whether any cell there disagrees."""
    df = with_size(run.records)
    df = df[df["rel_err"].notna() & df["size"].notna()].copy()
    if df.empty:
        return df.assign(shown=[], bad=[])
    df["headroom"] = (df["rel_err"] / df["tol"]).fillna(df["rel_err"])
    df["disagrees"] = df["agree"].map(lambda a: a is False)
    keys = ["problem", "dtype", "method", "shape", "size"]
    worst = df.loc[df.groupby(keys, sort=True)["headroom"].idxmax()].set_index(keys)
    worst["bad"] = df.groupby(keys)["disagrees"].any()
    worst["shown"] = worst["rel_err"].clip(lower=EXACT_FLOOR)
    return worst.reset_index()


def _by_size(ax, cell: pd.DataFrame, methods: list[str]) -> None:
    """A line per method and shape family against size, the tolerance a step line over it."""
    for st, s in lines(cell, methods, ["shown"]):
        # methods often agree to the last bit: each is nudged sideways and drawn hollow, the
        # first ones larger, so that none hides another
        j = methods.index(st["label"].removeprefix("_"))
        nudge = 1.1 ** (j - (len(methods) - 1) / 2)
        ax.plot(s.index * nudge, s["shown"], lw=1.2, ms=9 - 1.5 * min(j, 3), mfc="none", mew=1.6, **st)
    tol = cell.groupby("size")["tol"].max().sort_index()
    ax.step(tol.index, tol.values, where="mid", color=TOL_COLOR, lw=1.5, ls="--", label=TOL_LABEL)
    bad = cell[cell["bad"]]
    ax.plot(bad["size"], bad["shown"], "x", color=P.BAD, ms=10, mew=2, zorder=5)
    shape_legend(ax, cell)


def _by_method(ax, cell: pd.DataFrame, methods: list[str], axis_label: str) -> None:
    """One size only: the methods side by side on a categorical axis (not spread along a size
    axis that would invent sizes), the tolerance a segment across them."""
    shown = [m for m in methods if (cell["method"] == m).any()]
    for x, m in enumerate(shown):
        g = cell[cell["method"] == m]
        worst = g.loc[g["headroom"].idxmax()]
        st = P.style(m, methods)
        ax.plot(
            [x], [worst["shown"]], linestyle="none", ms=9, mfc="none", mew=1.6, **{**st, "label": "_" + m}
        )
        if g["bad"].any():
            ax.plot([x], [worst["shown"]], "x", color=P.BAD, ms=10, mew=2, zorder=5)
    ax.hlines(cell["tol"].max(), -0.4, len(shown) - 0.6, color=TOL_COLOR, lw=1.5, ls="--", label=TOL_LABEL)
    ax.set_xticks(range(len(shown)), shown)
    ax.set_xlim(-0.6, len(shown) - 0.4)
    size = cell["size"].iloc[0]
    ax.set_xlabel(f"method, at {axis_label.split()[0]}={size:g}")


def agreement(run: Run, out: Path) -> P.Plot:
    plot = P.Plot("agreement", "Relative error against the float64 reference")
    df = worst_per_size(run)
    if df.empty:
        plot.skipped = "no cell with a relative error and a size"
        return plot
    methods = P.methods_of(df)
    problems = sorted(df["problem"].unique())
    dtypes = sorted(df["dtype"].unique(), key=dtype_rank)
    fig, axes = P.grid(len(problems), len(dtypes))
    axis_of = size_axes(run.records)
    for (r, c), ax in np.ndenumerate(axes):
        p, d = problems[r], dtypes[c]
        cell = df[(df["problem"] == p) & (df["dtype"] == d)]
        if cell.empty:
            ax.set_visible(False)
            continue
        axis = axis_of[p]
        method_entries(ax, cell, methods, mfc="none", ms=9, mew=1.6, lw=1.2)
        if cell["size"].nunique() > 1:
            _by_size(ax, cell, methods)
            P.size_axis(ax, axis.label)
        else:
            _by_method(ax, cell, methods, axis.label)
        ax.set_yscale("log")
        P.log_ticks(ax)
        fixed = f", {axis.fixed}" if axis.fixed else ""
        ax.set_title(f"{p} · {d}{fixed}", fontsize=11)
        ax.set_ylabel("‖g − g_ref‖ / ‖g_ref‖")
        ax.grid(True, which="major", alpha=0.3)
    extra = [P.bad_marker()] if df["bad"].any() else []
    title = "Agreement with the float64 reference: worst over patterns, per size (exact = 1e-17)"
    plot.path = P.finish(fig, axes, out / "agreement.png", title, extra)
    return plot


def _pattern_key(spec: str) -> tuple:
    return catalog.current().pattern_key(spec)


def accumulation(run: Run, out: Path) -> P.Plot:
    """Per problem and dtype, at the largest size measured with more than one pattern: time per
    step and rel_err of each pattern, methods side by side. rel_err of nozero:k and retain:k is
    against k x the reference, which is what those patterns should give."""
    plot = P.Plot("accumulation", "Accumulation patterns: time and error per pattern and k")
    df = run.records
    df = df[(df["mode"] == "gradient") & df["status"].isin(["ok", "mismatch"]) & df["time_median_s"].notna()]
    panels = []
    for (p, d), g in df.groupby(["problem", "dtype"]):
        g = g.assign(sizes=[sizes_text(r) for _, r in g.iterrows()])
        multi = g.groupby("sizes")["pattern"].nunique()
        multi = multi[multi > 1]
        if multi.empty:
            continue
        at = max(multi.index, key=lambda s: g[g["sizes"] == s][list(SIZE_NAMES)].fillna(1).prod(axis=1).max())
        panels.append((p, d, at, g[g["sizes"] == at]))
    if not panels:
        plot.skipped = "needs two accumulation patterns of one problem at one size"
        return plot
    panels.sort(key=lambda x: (x[0], dtype_rank(x[1])))
    shown = panels[:MAX_PANELS]
    more = f" (first {MAX_PANELS} of {len(panels)} problem × dtype)" if len(panels) > MAX_PANELS else ""
    panels = shown
    # only the methods measured in these panels (a method run at one pattern only has no bars)
    methods = P.methods_of(pd.concat([g for *_, g in panels]))
    fig, axes = P.grid(len(panels), 2, panel=(5.6, 2.9))
    for row, (p, d, at, g) in enumerate(panels):
        patterns = sorted(g["pattern"].unique(), key=_pattern_key)
        x = np.arange(len(patterns))
        width = 0.8 / len(methods)
        for i, m in enumerate(methods):
            by = g[g["method"] == m].set_index("pattern")
            t = [by["time_median_s"].get(pat, np.nan) for pat in patterns]
            e = [max(by["rel_err"].get(pat, np.nan), EXACT_FLOOR) for pat in patterns]
            st = P.style(m, methods)
            offset = (i - (len(methods) - 1) / 2) * width
            axes[row, 0].bar(x + offset, t, width, color=st["color"], label=m)
            axes[row, 1].plot(x + offset, e, st["marker"], color=st["color"], ms=7, linestyle="none")
            bad = [pat for pat in patterns if by["agree"].get(pat) is False]
            for pat in bad:
                axes[row, 1].plot(
                    patterns.index(pat) + offset, e[patterns.index(pat)], "x", color=P.BAD, ms=12
                )
        tol = g.groupby("pattern")["tol"].max()
        for j, pat in enumerate(patterns):
            lab = "tolerance (tol)" if j == 0 else "_"
            axes[row, 1].hlines(tol.get(pat, np.nan), j - 0.45, j + 0.45, color="#b22222", ls="--", label=lab)
        for ax in axes[row]:
            ax.set_xticks(x, patterns)
            ax.grid(True, axis="y", alpha=0.3)
        # times on a linear axis from 0: bar heights then compare honestly (on a log axis a bar's
        # length depends on where the axis happens to start)
        axes[row, 0].set_ylim(bottom=0)
        axes[row, 0].yaxis.set_major_formatter(P.FuncFormatter(lambda v, _: "0" if v == 0 else fmt_time(v)))
        axes[row, 1].set_yscale("log")
        P.log_ticks(axes[row, 1])
        axes[row, 0].set_ylabel("time per step")
        axes[row, 1].set_ylabel("relative error")
        axes[row, 0].set_title(f"{p} · {d} · {at}: time", fontsize=11)
        axes[row, 1].set_title(f"{p} · {d} · {at}: rel_err", fontsize=11)
    title = f"Accumulation: time per step and rel_err (nozero:k, retain:k against k × the reference){more}"
    plot.path = P.finish(fig, axes, out / "accumulation.png", title)
    return plot


PLOTS = (agreement, accumulation)
