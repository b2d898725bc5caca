"""The compare plot: each matched cell's time ratio new/base against its base time, with the
noise bounds as error bars and the threshold drawn; regressions ringed and named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import plotting as P

NAMED = 8  # regressions labelled on the plot; the table names them all


def compare_plot(m: pd.DataFrame, threshold: float, path: Path, title: str) -> Path | None:
    m = m[np.isfinite(m["ratio"]) & (m["ratio"] > 0)]
    if m.empty:
        return None
    methods = P.methods_of(m)
    fig, axes = P.grid(1, 1, panel=(10.5, 5.2))
    ax = axes[0, 0]
    for meth in methods:
        g = m[m["method"] == meth]
        st = P.style(meth, methods)
        lower = (g["ratio"] - g["lower"].clip(lower=1e-9)).clip(lower=0)
        upper = (g["upper"].replace(np.inf, np.nan) - g["ratio"]).fillna(0).clip(lower=0)
        ax.errorbar(
            g["time_median_s_base"],
            g["ratio"],
            yerr=[lower, upper],
            fmt=st["marker"],
            color=st["color"],
            label=meth,
            ms=6,
            alpha=0.85,
            elinewidth=1,
            capsize=0,
        )
    regs = m[m["regression"]].sort_values("ratio", ascending=False)
    ax.plot(
        regs["time_median_s_base"],
        regs["ratio"],
        "o",
        mfc="none",
        mec=P.BAD,
        ms=15,
        mew=2,
        label=f"regression ({len(regs)})",
        zorder=5,
    )
    for i, (_, r) in enumerate(regs.head(NAMED).iterrows()):
        ax.annotate(
            r["cell"],
            (r["time_median_s_base"], r["ratio"]),
            xytext=(10, 12 - 13 * i),
            textcoords="offset points",
            fontsize=8,
            color=P.BAD,
        )
    ax.axhline(threshold, color=P.BAD, ls="--", lw=1.3, label=f"threshold {threshold:.2f}x")
    ax.axhline(1 / threshold, color="#2a7a2a", ls=":", lw=1.3, label=f"faster than 1/{threshold:.2f}")
    ax.axhline(1.0, color="#444444", lw=0.8)
    ax.set_xscale("log")
    P.seconds_axis(ax, "x")
    ax.set_xlabel("base time per gradient (median)")
    ax.set_ylabel("new time ÷ base time")
    lo, hi = m["lower"].clip(lower=1e-3), m["upper"].replace(np.inf, np.nan)
    P.ratio_axis(ax, [m["ratio"], lo, hi.dropna(), [threshold, 1 / threshold]])
    ax.grid(True, alpha=0.3)
    full = f"Compare {title}: time ratio per cell (bars: noise bounds from both runs' IQRs)"
    return P.finish(fig, axes, path, full)
