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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from . import catalog  # noqa: E402
from .blocks import Plot  # noqa: E402,F401  (what every plot function returns)
from .summary import fmt_time  # noqa: E402

DPI = 100
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
    target.set_minor_formatter(NullFormatter())


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
    ax.yaxis.set_minor_formatter(NullFormatter())


def size_axis(ax, label: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(label)


def hide_unused(axes, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


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
    fig.tight_layout(rect=(0, 0, 1, top))
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
