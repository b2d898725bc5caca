"""The run itself: where cells ran (per worker or GPU) and, in train mode, how the loss fell."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..schema import SIZE_NAMES
from . import catalog
from . import plotting as P
from .data import Run
from .summary import main_pattern, size_axes, sizes_text, with_size

STATUS_COLORS = {
    "ok": "#4c9a2a",
    "mismatch": "#e8a33d",
    "error": "#d62728",
    "oom": "#8c1c13",
    "timeout": "#7f7f7f",
}
LINESTYLES = ("-", "--", ":", "-.")


PLACE = (("worker", "worker"), ("gpu_id", "GPU"), ("node", "node"))


def _places(df: pd.DataFrame) -> pd.Series:
    """'worker 1 · GPU 3': where each cell ran, from the ids that tell workers apart (a node id
    shared by every cell says nothing and is left out); None where none was recorded."""
    present = [(c, n) for c, n in PLACE if df[c].notna().any()]
    varying = [(c, n) for c, n in present if df[c].nunique() > 1] or present[:1]

    def label(r: pd.Series) -> str | None:
        parts = [
            f"{name} {str(r[col])[:8]}" for col, name in varying if r[col] is not None and r[col] == r[col]
        ]
        return " · ".join(parts) or None

    return df.apply(label, axis=1) if len(df) and varying else pd.Series([None] * len(df), index=df.index)


def workers(run: Run, out: Path) -> P.Plot:
    plot = P.Plot("workers", "Cells and times per worker or GPU")
    df = run.records.copy()
    df["place"] = _places(df)
    df = df[df["place"].notna()]
    if df.empty:
        plot.skipped = "the records name no worker, GPU or node"
        return plot
    places = sorted(df["place"].unique())
    fig, axes = P.grid(1, 3, panel=(4.8, 3.6))
    # 1. how many cells each ran, by outcome: a worker that fails or times out stands out
    bottom = np.zeros(len(places))
    for status, color in STATUS_COLORS.items():
        counts = np.array([((df["place"] == p) & (df["status"] == status)).sum() for p in places])
        if counts.any():
            axes[0, 0].bar(places, counts, bottom=bottom, color=color, label=f"status {status}")
            bottom += counts
    axes[0, 0].set_ylabel("cells")
    axes[0, 0].set_title("cells per worker, by status", fontsize=11)
    # 2. noise: IQR/median of each cell's timing; a noisy device has the higher box
    noise = [
        (g["time_iqr_s"] / g["time_median_s"]).replace([np.inf], np.nan).dropna().values * 100
        for g in (df[df["place"] == p] for p in places)
    ]
    # a log axis: one cell at 4000% must not flatten every box to a line at 0
    noise = [np.clip(v, 0.01, None) if len(v) else np.array([np.nan]) for v in noise]
    axes[0, 1].boxplot(noise, tick_labels=places, showfliers=True)
    axes[0, 1].set_yscale("log")
    axes[0, 1].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}%" if v >= 1 else f"{v:g}%"))
    axes[0, 1].axhline(10, color="#b22222", ls="--", lw=1.2, label="unstable above 10%")
    axes[0, 1].set_ylabel("IQR / median of a cell's time (%)")
    axes[0, 1].set_title("timing noise per worker", fontsize=11)
    # 3. the manual gradient's time against size, coloured by worker: a slow device sits above
    sized = with_size(main_pattern(df))
    base = catalog.current().baseline(sized["method"])
    sized = sized[(sized["method"] == base) & sized["size"].notna() & sized["time_median_s"].notna()]
    ax = axes[0, 2]
    if sized.empty:
        ax.set_visible(False)
    else:
        cmap = matplotlib.colormaps["tab10"]
        marks = dict(zip(sorted(sized["problem"].unique()), "osD^vP*X"))
        for i, p in enumerate(places):
            for problem, mark in marks.items():
                g = sized[(sized["place"] == p) & (sized["problem"] == problem)]
                ax.plot(
                    g["size"],
                    g["time_median_s"],
                    mark,
                    color=cmap(i % 10),
                    alpha=0.85,
                    ms=6,
                    label=p if problem == next(iter(marks)) else "_",
                )
        if len(marks) > 1:
            for problem, mark in marks.items():
                ax.plot([], [], mark, color="#555555", mfc="none", label=f"problem {problem}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        P.seconds_axis(ax)
        labels = {a.label for a in size_axes(sized).values()}
        ax.set_xlabel(labels.pop() if len(labels) == 1 else "size (per problem: n, or n·d·…)")
        ax.set_ylabel("manual gradient time")
        ax.set_title("manual gradient time by worker", fontsize=11)
        ax.grid(True, alpha=0.3)
    for a in axes[0, :2]:
        a.tick_params(axis="x", labelrotation=20 if max(len(p) for p in places) > 10 else 0)
    plot.path = P.finish(fig, axes, out / "workers.png", "Per worker or GPU: cells, timing noise, speed")
    return plot


def loss_curves(run: Run, out: Path) -> P.Plot:
    plot = P.Plot("loss_curves", "Train mode: loss against step, per method")
    traj, rec = run.trajectories, run.records
    if traj.empty or "cell_id" not in traj:
        plot.skipped = "no train-mode trajectories"
        return plot
    rec = rec[rec["mode"] == "train"]
    merged = traj.merge(rec, on="cell_id", how="inner")
    if merged.empty:
        plot.skipped = "trajectories match no train-mode record"
        return plot
    family = ["problem", "data", *SIZE_NAMES, "dtype", "pattern", "lr"]
    groups = list(merged.groupby(family, dropna=False, sort=True))
    cols = min(len(groups), 2)
    rows = -(-len(groups) // cols)
    fig, axes = P.grid(rows, cols, panel=(6.2, 3.4))
    methods = P.methods_of(merged)
    for ax, (_, g) in zip(axes.flat, groups):
        first = g.iloc[0]
        positive = (g["loss"] > 0).all()
        floor = g.loc[g["loss"] > 0, "loss"].min() / 10 if (g["loss"] > 0).any() else 1.0
        for i, m in enumerate([m for m in methods if (g["method"] == m).any()]):
            s = g[g["method"] == m].sort_values("step")
            y = s["loss"].clip(lower=floor) if not positive and (g["loss"] >= 0).all() else s["loss"]
            st = P.style(m, methods)
            # methods that agree trace the same curve: each gets its own dash so all stay visible
            ax.plot(
                s["step"],
                y,
                ls=LINESTYLES[i % len(LINESTYLES)],
                lw=2.2 - 0.4 * i,
                marker=st["marker"] if len(s) <= 30 else None,
                ms=4,
                color=st["color"],
                label=m,
            )
        if (g["loss"] >= 0).all():
            ax.set_yscale("log")
            P.log_ticks(ax)
        data = "" if first["data"] in (None, "random") else f" · data={first['data']}"
        name = " ".join(x for x in (first["problem"], sizes_text(first)) if x)
        zero = "" if positive else " (0 drawn at the bottom)"
        ax.set_title(f"{name} · {first['dtype']}{data} · lr={first['lr']:g}{zero}", fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss before the update")
        ax.grid(True, alpha=0.3)
    P.hide_unused(axes, len(groups))
    plot.path = P.finish(
        fig, axes, out / "loss_curves.png", "Train mode: loss against step, manual against autograd"
    )
    return plot


PLOTS = (workers, loss_curves)
