"""Shared matplotlib machinery: the Agg backend, each method's declared colour, facet grids, log axes.

Every plot function elsewhere returns a `Plot`: the PNG it wrote, or why it wrote none (a run of
one cell has no "time against size"), so a report can say what it skipped instead of crashing.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: reports run on headless workers and in tests

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator  # noqa: E402

from . import catalog  # noqa: E402
from .blocks import Plot  # noqa: E402,F401  (what every plot function returns)
from .summary import fmt_n, fmt_time  # noqa: E402

DPI = 100
# A panel's title at a fixed height: placed automatically, matplotlib measures every tick label
# of the panel to keep the title clear of a top axis, which no panel here has
RC = {"axes.titley": 1.0}
rc_context = matplotlib.rc_context
PANEL = (4.6, 3.3)  # inches per facet: legible at 100 dpi in a 1280-px page
MAX_COLS = 4

BAD = "#d62728"


def style(method: str, methods: list[str]) -> dict:
    """The method's declared colour and marker (see catalog.py)."""
    return catalog.current().style(method, methods)


def grid(nrows: int, ncols: int, panel=PANEL, sharey: bool = False):
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows + 0.9), squeeze=False, sharey=sharey
    )
    return fig, axes


def wrap(n: int) -> tuple[int, int]:
    """Rows and columns for n facets, at most MAX_COLS wide."""
    cols = min(n, MAX_COLS)
    return math.ceil(n / cols), cols


def log_ticks(ax, axis: str = "y", fmt=None) -> None:
    """Log-axis ticks that always label at least two values: 1-2-5 steps when the data span
    less than two decades (a decade-only axis would then show one label or none)."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    narrow = lo > 0 and hi / lo < 100
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,), numticks=8))
    if fmt is not None:
        target.set_major_formatter(FuncFormatter(fmt))
    elif narrow:
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    _no_minor(target)


def seconds_axis(ax, axis: str = "y") -> None:
    """Log axis whose ticks read as times ('10 µs'), not as 1e-05."""
    log_ticks(ax, axis, lambda v, _: fmt_time(v))


COARSE = [m * 10.0**e for e in range(-2, 4) for m in (1, 2, 5)]
FINE = [m * 10.0**e for e in range(-2, 4) for m in (1, 1.2, 1.5, 2, 3, 5, 7)]


def ratio_axis(ax, values) -> None:
    """Log axis for ratios with plain labels ('0.5x', '2x'): 1 sits in the middle of 0.5 and 2.
    `values` are what must be in view (data, bands, reference lines)."""
    flat = np.concatenate([np.ravel(np.asarray(x, dtype=float)) for x in values])
    v = flat[np.isfinite(flat) & (flat > 0)]
    ax.set_yscale("log")
    if v.size == 0:
        return
    lo, hi = v.min() / 1.35, v.max() * 1.35  # room for the marker at either end
    # as many labels as fit: decades over a wide span, 1-2-5 over a middling one, finer when narrow
    decades = [10.0**e for e in range(-3, 5)]
    ticks = [t for t in decades if lo <= t <= hi]
    if len(ticks) < 4:
        ticks = [t for t in COARSE if lo <= t <= hi]
    if len(ticks) < 3:
        ticks = [t for t in FINE if lo <= t <= hi]
    if len(ticks) >= 2:
        ax.set_yticks(ticks)
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    _no_minor(ax.yaxis)


def _no_minor(axis) -> None:
    """No minor ticks on a log axis: its labelled ticks and grid read without them, and every tick
    is an artist (on a figure of six log panels, minor ticks took 0.3 of its 0.5 s)."""
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def size_axis(ax, label: str) -> None:
    """A log axis of sizes labelled as people say them ('10k', '1M'): plain text, where log
    axes' default 10^k labels are mathtext, parsed for every figure."""
    ax.set_xscale("log")
    _no_minor(ax.xaxis)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_n(v) if v >= 1 else f"{v:g}"))
    ax.set_xlabel(label)


def hide_unused(axes, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


# Margins and gaps in inches, for labels at matplotlib's default sizes: the y axis's tick labels
# ('100 µs', '0.5x') and its label take about 0.8 in, a panel's title and the x axis's label and
# tick labels about 0.8 in between rows. A fixed layout costs nothing; tight_layout measured every
# tick label of every panel (about 1 s per figure of a dozen panels, half of drawing it).
LEFT, RIGHT, BOTTOM, TITLE = 0.85, 0.2, 0.6, 0.35
GAP_W, GAP_H = 0.95, 0.85


def layout(fig, shape: tuple[int, int], top: float) -> None:
    """Place a grid of `shape` panels under `top` (a fraction of the figure's height)."""
    rows, cols = shape
    w, h = fig.get_figwidth(), fig.get_figheight()
    panel_w = (w - LEFT - RIGHT - GAP_W * (cols - 1)) / cols
    panel_h = (top * h - TITLE - BOTTOM - GAP_H * (rows - 1)) / rows
    fig.subplots_adjust(
        left=LEFT / w,
        right=1 - RIGHT / w,
        bottom=BOTTOM / h,
        top=top - TITLE / h,
        wspace=GAP_W / panel_w,
        hspace=GAP_H / panel_h,
    )


def finish(fig, axes, path: Path, title: str, extra: list | None = None) -> Path:
    """One legend for the figure (methods are the same in every facet), under the title; save."""
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles and not lab.startswith("_"):
                handles[lab] = h
                labels.append(lab)
    for h in extra or []:
        if h.get_label() not in handles:
            handles[h.get_label()] = h
            labels.append(h.get_label())
    fig.suptitle(title, fontsize=13, y=0.995)
    top = 1 - 0.55 / fig.get_figheight()
    if handles:
        ncol = min(len(labels), 6)
        rows = math.ceil(len(labels) / ncol)
        fig.legend(
            [handles[lab] for lab in labels],
            labels,
            loc="upper center",
            ncol=ncol,
            frameon=False,
            bbox_to_anchor=(0.5, top),
            fontsize=10,
        )
        top -= (0.3 * rows + 0.05) / fig.get_figheight()
    layout(fig, np.shape(axes), top)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def bad_marker() -> Line2D:
    return Line2D(
        [], [], color=BAD, marker="x", linestyle="none", markersize=9, label="disagrees with reference"
    )


def methods_of(df) -> list[str]:
    return catalog.current().method_order(df["method"])
