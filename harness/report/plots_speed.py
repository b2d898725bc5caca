"""What a gradient costs, against size: time (with the cost model's line), ratio to manual, ratio
to the forward pass.

Facets are problems (columns) by dtypes (rows); a line per method (its colour) and shape family
(its linestyle: d=1 and d=64 each get their own line against n); sizes on a log axis. Only
gradient-mode cells of the main pattern (`full`) are drawn: the accumulation plot compares patterns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import catalog
from . import plotting as P
from .costmodel import shape_of
from .data import Run
from .environment import all_workers
from .summary import main_pattern, size_axes, with_size

# Griewank and Walther: reverse mode costs a small constant times the function, "often within
# a factor of 5". Linear regression's gradient 2/N X^T (Xw - y) reads X twice where the loss
# reads it once: about 2.
CHEAP_GRADIENT_BOUND = 5.0


DTYPE_ORDER = ("float32", "float64", "bfloat16", "float16")


def dtype_rank(dtype: str) -> tuple:
    return (DTYPE_ORDER.index(dtype) if dtype in DTYPE_ORDER else len(DTYPE_ORDER), dtype)


def sized(run: Run, column: str) -> pd.DataFrame:
    """Measured cells of the main pattern that have a size and a finite `column`."""
    df = with_size(main_pattern(run.records))
    df = df[df["status"].isin(["ok", "mismatch"]) & df["size"].notna()]
    return df[np.isfinite(df[column].astype(float))]


def has_lines(df: pd.DataFrame) -> bool:
    """At least one method has two sizes of one problem and dtype: something to draw a line through."""
    if df.empty:
        return False
    return bool((df.groupby(["problem", "dtype", "method"])["size"].nunique() >= 2).any())


def facets(df: pd.DataFrame):
    """A figure with a panel per (problem, dtype): dtypes as rows, problems as columns when they fit."""
    problems = sorted(df["problem"].unique())
    dtypes = sorted(df["dtype"].unique(), key=dtype_rank)
    pairs = [(p, d) for d in dtypes for p in problems if ((df["problem"] == p) & (df["dtype"] == d)).any()]
    if len(problems) <= P.MAX_COLS:
        fig, axes = P.grid(len(dtypes), len(problems))
        where = {(p, d): axes[dtypes.index(d), problems.index(p)] for p, d in pairs}
        for (r, c), ax in np.ndenumerate(axes):
            if (problems[c], dtypes[r]) not in where:
                ax.set_visible(False)
    else:
        rows, cols = P.wrap(len(pairs))
        fig, axes = P.grid(rows, cols)
        where = dict(zip(pairs, axes.flat))
        P.hide_unused(axes, len(pairs))
    axes_by_problem = size_axes(df)
    for (p, d), ax in where.items():
        axis = axes_by_problem.get(p)
        fixed = f", {axis.fixed}" if axis and axis.fixed else ""
        ax.set_title(f"{p} · {d}{fixed}", fontsize=11)
        P.size_axis(ax, axis.label if axis else "size")
        ax.grid(True, which="major", alpha=0.3)
        sizes = df.loc[(df["problem"] == p) & (df["dtype"] == d), "size"].unique()
        if len(sizes) == 1:  # one size: a decade either side, not a singular axis
            ax.set_xlim(sizes[0] / 10, sizes[0] * 10)
    return fig, axes, where


LINESTYLES = ("-", "--", ":", "-.")  # one per shape family in a panel; colour stays the method's


def shapes_of(cell: pd.DataFrame) -> list[str]:
    """The panel's shape families ('d=1', 'd=64'), smallest first."""

    def key(shape: str) -> tuple:
        return tuple(float(part.partition("=")[2]) for part in shape.split()) if shape else ()

    return sorted(cell["shape"].unique(), key=key)


def lines(cell: pd.DataFrame, methods: list[str], columns: list[str]):
    """(style, line) for each method and shape family drawn in this panel: the median of each
    column per size (cells that share a size, such as seeds, are pooled). A family is the
    cells whose other sizes are equal, so a line never joins two shapes."""
    shapes = shapes_of(cell)
    for m in methods:
        for i, shape in enumerate(shapes):
            s = cell[(cell["method"] == m) & (cell["shape"] == shape)]
            s = s.groupby("size")[columns].median().sort_index()
            if not s.empty:
                # unlabelled: the legend entry is the panel's method_entries
                yield {**P.style(m, methods), "ls": LINESTYLES[i % len(LINESTYLES)], "label": "_" + m}, s


def method_entries(ax, cell: pd.DataFrame, methods: list[str], **kw) -> None:
    """An empty solid line per method of the panel, drawn first: the figure's legend shows each
    method once, in its colour and marker, whatever linestyle its shape families got."""
    for m in methods:
        if (cell["method"] == m).any():
            ax.plot([], [], **{"lw": 1.6, "ms": 5, **kw, **P.style(m, methods), "ls": "-"})


def shape_legend(ax, cell: pd.DataFrame) -> None:
    """Which linestyle is which shape, in the panel itself (families differ between problems)."""
    shapes = shapes_of(cell)
    if len(shapes) > 1:
        handles = [
            P.Line2D([], [], color="#555555", ls=LINESTYLES[i % len(LINESTYLES)], lw=1.4, label=shape)
            for i, shape in enumerate(shapes)
        ]
        ax.legend(handles=handles, fontsize=8, handlelength=2.6, loc="best", framealpha=0.8)


def _model_line(ax, model, sizes: pd.Index, style: dict) -> bool:
    """The cost model's line over the sizes measured; False where there is none to draw."""
    if model is None or len(sizes) < 2:
        return False
    n = np.geomspace(sizes.min(), sizes.max(), 24)
    ax.plot(n, model.time_at_n(n), lw=1.6, **{**style, "marker": None})
    return True


def _read_floor(ax, cells: pd.DataFrame, read_gbps: float | None, ls: str) -> None:
    """bytes ÷ the read probe: the least time a step that reads its inputs once can take."""
    if not read_gbps or cells["bytes_moved"].isna().all():
        return
    floor = cells.groupby("size")["bytes_moved"].median().sort_index() / (read_gbps * 1e9)
    label = f"read floor (bytes ÷ read probe, {read_gbps:.3g} GB/s)"
    ax.plot(floor.index, floor.values, color="#9a9a9a", lw=1.2, ls=ls, label=label, zorder=1)


def time_vs_size(run: Run, out: Path) -> P.Plot:
    """Medians and their spread, the cost model's line through them (costmodel.py), and the read
    floor: how much of a step is fixed cost, how much is bytes, and how far from the floor."""
    plot = P.Plot("time_vs_size", "Time per gradient against size, with the cost model")
    df = sized(run, "time_median_s")
    if not has_lines(df):
        plot.skipped = "needs one method measured at two sizes or more"
        return plot
    methods = P.methods_of(df)
    models = {(m.shape, m.method): m for m in run.cost_models if m.fitted}
    read = measured_peak(run.manifest, "read_probe_gbps")
    fig, axes, where = facets(df)
    along = {p: a.along for p, a in size_axes(df).items()}
    for (p, d), ax in where.items():
        cell = df[(df["problem"] == p) & (df["dtype"] == d)]
        method_entries(ax, cell, methods)
        for i, shape in enumerate(shapes_of(cell)):
            ls = LINESTYLES[i % len(LINESTYLES)]
            family = cell[cell["shape"] == shape]
            _read_floor(ax, family, read, ls)
            for m in methods:
                own = family[family["method"] == m]
                if own.empty:
                    continue
                st = {**P.style(m, methods), "ls": ls, "label": "_" + m}
                s = own.groupby("size")[["time_median_s", "time_iqr_s", "time_min_s"]].median().sort_index()
                # records keep the IQR, not the quartiles: median ± IQR/2, floored at the fastest sample
                med, half = s["time_median_s"], s["time_iqr_s"] / 2
                low = (med - np.maximum(med - half, s["time_min_s"])).clip(lower=0)
                model = models.get((shape_of(own.iloc[0]), m)) if along.get(p) == "n" else None
                drawn = _model_line(ax, model, s.index, st)
                ax.errorbar(
                    s.index,
                    med,
                    yerr=[low, half],
                    capsize=0,
                    ms=5,
                    lw=1.6,
                    **{**st, "ls": "none" if drawn else ls},
                )
        shape_legend(ax, cell)
        bad = cell[cell["agree"].map(lambda a: a is False).astype(bool)]
        ax.plot(bad["size"], bad["time_median_s"], "x", color=P.BAD, ms=10, mew=2, zorder=5)
        ax.set_yscale("log")
        P.seconds_axis(ax)
        ax.set_ylabel("time per gradient (median)")
    extra = [P.bad_marker()] if (df["agree"].map(lambda a: a is False)).any() else []
    units = " or ".join(dict.fromkeys(m.unit for m in models.values())) or "byte"
    title = (
        f"Time per gradient against size: medians (bars: IQR) and the cost model's line, fixed + per {units}"
    )
    plot.path = P.finish(fig, axes, out / "time_vs_size.png", title, extra)
    return plot


def overhead_vs_manual(run: Run, out: Path) -> P.Plot:
    plot = P.Plot("overhead_vs_manual", "Overhead ratio to the manual gradient")
    df = sized(run, "vs_manual")
    known = catalog.current()
    base = known.baseline(df["method"])  # None only where nothing was paired: no lines then
    df = df[df["method"] != base]
    if not has_lines(df):
        plot.skipped = "needs a manual method and another method at two sizes or more"
        return plot
    methods = P.methods_of(df)
    fig, axes, where = facets(df)
    for (p, d), ax in where.items():
        cell = df[(df["problem"] == p) & (df["dtype"] == d)]
        method_entries(ax, cell, methods)
        for st, s in lines(cell, methods, ["vs_manual", "vs_manual_lo", "vs_manual_hi"]):
            # bars as well as the band: a method measured at one size has no band to show
            err = [
                (s["vs_manual"] - s["vs_manual_lo"]).clip(lower=0),
                (s["vs_manual_hi"] - s["vs_manual"]).clip(lower=0),
            ]
            ax.errorbar(s.index, s["vs_manual"], yerr=err, lw=1.6, ms=5, elinewidth=0.8, capsize=2, **st)
            ax.fill_between(
                s.index, s["vs_manual_lo"], s["vs_manual_hi"], color=st["color"], alpha=0.18, lw=0
            )
        shape_legend(ax, cell)
        ax.axhline(1.0, color=known.style(base, [base])["color"], lw=1, ls="--", label=f"= {base}")
        ax.set_ylabel("time ÷ manual time (paired)")
        P.ratio_axis(ax, [1.0, cell["vs_manual"], cell["vs_manual_lo"], cell["vs_manual_hi"]])
    title = "Overhead of each method over the manual gradient (band: 95% interval of the paired ratio)"
    plot.path = P.finish(fig, axes, out / "overhead_vs_manual.png", title)
    return plot


def cost_ratio(run: Run, out: Path) -> P.Plot:
    plot = P.Plot("cost_ratio", "Cheap-gradient ratio: gradient time over forward time")
    df = sized(run, "cost_ratio")
    if not has_lines(df):
        plot.skipped = "needs forward timings at two sizes or more"
        return plot
    methods = P.methods_of(df)
    fig, axes, where = facets(df)
    for (p, d), ax in where.items():
        cell = df[(df["problem"] == p) & (df["dtype"] == d)]
        method_entries(ax, cell, methods)
        for st, s in lines(cell, methods, ["cost_ratio"]):
            ax.plot(s.index, s["cost_ratio"], lw=1.6, ms=5, **st)
        shape_legend(ax, cell)
        ax.axhline(CHEAP_GRADIENT_BOUND, color="#b22222", lw=1.3, ls="--", label="bound 5 (Griewank–Walther)")
        expected = catalog.current().expected_cost_ratio(p)
        if expected:
            ratio, why = expected
            label = f"≈{ratio:g}: {why}" if why else f"≈{ratio:g}: expected"
            ax.axhline(ratio, color="#555555", lw=1.3, ls=":", label=label)
        ax.set_ylabel("gradient time ÷ forward time")
        P.ratio_axis(ax, [1.0, CHEAP_GRADIENT_BOUND, cell["cost_ratio"]])
    title = "Cheap-gradient ratio: time of a gradient over the loss alone (no_grad)"
    plot.path = P.finish(fig, axes, out / "cost_ratio.png", title)
    return plot


# The achieved bandwidth is the time against size read in GB/s: the cost model's cost per byte
# gives it (its table), and the read floor is drawn in the time against size.
PLOTS = (time_vs_size, overhead_vs_manual, cost_ratio)


def measured_peak(manifest: dict, key: str = "bandwidth_probe_gbps") -> float | None:
    """A bandwidth the workers of every segment probed (the best of them), or the manifest's own:
    the copy (`bandwidth_probe_gbps`) or the read (`read_probe_gbps`)."""
    probes = [w.get(key) for w in all_workers(manifest)]
    probes = [p for p in probes if isinstance(p, (int, float)) and p > 0]
    return max(probes) if probes else manifest.get(key)
