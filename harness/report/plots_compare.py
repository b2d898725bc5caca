"""The compare plot: each matched cell's change (the lesser of its ratios against its family and
against the run, the one a regression must pass) against its base time, the noise floor shaded
around 1 and the threshold drawn; regressions ringed, numbered and listed beside the plot (names
written on the points would cover each other)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from . import plotting as P
from .noise import FAST, Noise

LISTED = 14  # regressions listed beside the plot; the table names them all


def compare_plot(m: pd.DataFrame, noise: Noise, threshold: float, path: Path, title: str) -> Path | None:
    m = m[np.isfinite(m["change"]) & (m["change"] > 0)]
    if m.empty:
        return None
    methods = P.methods_of(m)
    fig, (ax, side) = P.plt.subplots(1, 2, figsize=(14, 5.8), gridspec_kw={"width_ratios": [2.3, 1]})
    if noise is not None and noise.sigma:
        band = 1 + Noise.band(noise.sigma)
        ax.axhspan(
            1 / band, band, color="#999999", alpha=0.18, lw=0, label=f"noise floor ±{100 * (band - 1):.0f}%"
        )
    for meth in methods:
        g = m[m["method"] == meth]
        st = P.style(meth, methods)
        ax.plot(g["time_s_base"], g["change"], st["marker"], color=st["color"], label=meth, ms=6, alpha=0.85)
    regs = m[m["regression"]].sort_values("change", ascending=False)
    ax.plot(
        regs["time_s_base"], regs["change"], "o", mfc="none", mec=P.BAD, ms=14, mew=2,
        label=f"regression ({len(regs)})", zorder=5,
    )  # fmt: skip
    for i, (_, r) in enumerate(regs.head(LISTED).iterrows(), start=1):
        ax.annotate(str(i), (r["time_s_base"], r["change"]), xytext=(7, 7), textcoords="offset points",
                    fontsize=8, color=P.BAD, fontweight="bold")  # fmt: skip
    ax.axhline(threshold, color=P.BAD, ls="--", lw=1.3, label=f"threshold {threshold:.2f}x")
    ax.axhline(1 / threshold, color="#2a7a2a", ls=":", lw=1.3, label=f"faster: under 1/{threshold:.2f}")
    ax.axhline(1.0, color="#444444", lw=0.8)
    ax.set_xscale("log")
    P.seconds_axis(ax, "x")
    ax.set_xlabel(f"base time per gradient ({FAST}th percentile of rounds)")
    ax.set_ylabel("new ÷ base, the lesser against family and run")
    P.ratio_axis(ax, [m["change"], [threshold, 1 / threshold]])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="best", framealpha=0.9)
    side.axis("off")
    if len(regs):
        lines = [
            f"{i}. {r['cell']}: {r['change']:.2f}x"
            for i, (_, r) in enumerate(regs.head(LISTED).iterrows(), 1)
        ]
        if len(regs) > LISTED:
            lines.append(f"… and {len(regs) - LISTED} more in the table")
        text = "\n".join(textwrap.fill(line, 52, subsequent_indent="    ") for line in lines)
        side.text(
            0, 1, "Regressions\n\n" + text, va="top", ha="left", fontsize=9, color=P.BAD, family="monospace"
        )
    else:
        side.text(0, 1, "No regressions.", va="top", ha="left", fontsize=11)
    fig.suptitle(f"Compare {title}: each cell's change against its family and the run", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=P.DPI)
    P.plt.close(fig)
    return path
