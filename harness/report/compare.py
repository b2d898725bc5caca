"""`gradbench compare BASE NEW`: the regression gate between two runs of the same cells.

Cells are matched by cell_id (a hash of the cell's parameters, the same in every run). Per cell:
the time ratio new/base, and whether it is beyond the noise of both runs. Records keep each
cell's median and IQR, not its raw samples, so a rank test is not possible; instead the ratio
gets a conservative interval from the two interquartile ranges:

    lower = (new_median - new_iqr/2) / (base_median + base_iqr/2)
    upper = (new_median + new_iqr/2) / (base_median - base_iqr/2)

median ± IQR/2 spans about the middle half of each run's rounds, so `lower` is the ratio when
the new run was at its fastest plausible and the base at its slowest. A time regression is a
cell whose ratio AND lower bound both exceed the threshold: a noisy cell that merely looks
slower is listed, never gated. A missing IQR counts as zero (no noise known).

A gradient that stops agreeing with its reference, or a cell that stops running, is also a
regression: a gate that passes a wrong gradient because it got faster would be worse than none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data import FAILED, Run, read_run
from .summary import cell_label, fmt_time
from .tables import markdown_table, text_table

JUMP = 10.0  # rel_err grown this many times ...
JUMP_OF_TOL = 0.1  # ... to at least this share of its tolerance: listed as a change
SHOWN = 15  # rows of the "largest ratios" table in the text


@dataclass
class Comparison:
    base: Path
    new: Path
    threshold: float
    table: pd.DataFrame  # one row per matched cell, with ratio, lower, upper, regression
    regressions: list[dict] = field(default_factory=list)  # each: cell_id, cell, kind, detail
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)  # agreement and status changes
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    text: str = ""
    plot: Path | None = None
    markdown: Path | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def ratio_bounds(base_med, base_iqr, new_med, new_iqr) -> tuple[float, float, float]:
    """(ratio, lower, upper) of new/base from medians and IQRs; NaN where a time is missing."""
    bi = 0.0 if base_iqr is None or not math.isfinite(base_iqr) else base_iqr
    ni = 0.0 if new_iqr is None or not math.isfinite(new_iqr) else new_iqr
    if not (base_med and new_med and math.isfinite(base_med) and math.isfinite(new_med)):
        return math.nan, math.nan, math.nan
    lower = max(new_med - ni / 2, 0.0) / (base_med + bi / 2)
    upper = (new_med + ni / 2) / (base_med - bi / 2) if base_med > bi / 2 else math.inf
    return new_med / base_med, lower, upper


def _matched(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    cols = [
        "cell_id",
        "time_median_s",
        "time_iqr_s",
        "status",
        "agree",
        "rel_err",
        "tol",
        "diagnosis",
        "error",
    ]
    b = base.drop_duplicates("cell_id", keep="last")
    n = new.drop_duplicates("cell_id", keep="last")
    m = b[cols].merge(n[cols], on="cell_id", suffixes=("_base", "_new"))
    ident = n.set_index("cell_id")
    m["cell"] = [cell_label(ident.loc[c]) for c in m["cell_id"]]
    m["method"] = [ident.loc[c, "method"] for c in m["cell_id"]]
    return m


def _changes(m: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    rows, regressions = [], []
    for _, r in m.iterrows():
        what = []
        if r["status_base"] != r["status_new"]:
            what.append(f"status {r['status_base']} → {r['status_new']}")
            if r["status_new"] in FAILED and r["status_base"] not in FAILED:
                err = str(r["error_new"] or "")[:100]
                regressions.append(_reg(r, "status", f"{r['status_base']} → {r['status_new']}: {err}"))
        if r["agree_base"] is not None and r["agree_new"] is not None and r["agree_base"] != r["agree_new"]:
            what.append(f"agree {r['agree_base']} → {r['agree_new']}")
            if r["agree_base"] is True:
                regressions.append(_reg(r, "agreement", str(r["diagnosis_new"] or "now disagrees")))
        eb, en, tol = r["rel_err_base"], r["rel_err_new"], r["tol_new"]
        jumped = math.isfinite(en) and math.isfinite(eb) and en > JUMP * max(eb, 1e-300)
        if jumped and (not math.isfinite(tol) or en >= JUMP_OF_TOL * tol):
            what.append(f"rel_err {eb:.2g} → {en:.2g} (tol {tol:.2g})")
        if what:
            rows.append({"cell": r["cell"], "change": "; ".join(what), "diagnosis": r["diagnosis_new"] or ""})
    return pd.DataFrame(rows, columns=["cell", "change", "diagnosis"]), regressions


def _reg(r: pd.Series, kind: str, detail: str) -> dict:
    return {"cell_id": r["cell_id"], "cell": r["cell"], "kind": kind, "detail": detail}


def _timing(m: pd.DataFrame, threshold: float) -> pd.DataFrame:
    b = zip(m["time_median_s_base"], m["time_iqr_s_base"], m["time_median_s_new"], m["time_iqr_s_new"])
    bounds = np.array([ratio_bounds(*x) for x in b], dtype=float).reshape(-1, 3)
    m = m.assign(ratio=bounds[:, 0], lower=bounds[:, 1], upper=bounds[:, 2])
    m["regression"] = (m["ratio"] > threshold) & (m["lower"] > threshold)
    m["faster"] = (m["ratio"] < 1 / threshold) & (m["upper"] < 1 / threshold)
    return m


def _shown(m: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell": m["cell"],
            "base": m["time_median_s_base"].map(fmt_time),
            "new": m["time_median_s_new"].map(fmt_time),
            "new/base": m["ratio"].map(lambda x: f"{x:.2f}x" if math.isfinite(x) else "—"),
            "noise bounds": [
                f"{lo:.2f}–{hi:.2f}" if math.isfinite(lo) else "—" for lo, hi in zip(m["lower"], m["upper"])
            ],
            "verdict": [
                "✗ regression" if r else ("✓ faster" if f else "")
                for r, f in zip(m["regression"], m["faster"])
            ],
        }
    )


def _text(c: Comparison, m: pd.DataFrame, fmt) -> str:
    head = (
        f"compare {c.base.name} → {c.new.name}: {len(m)} cells matched"
        f", {len(c.only_base)} only in base, {len(c.only_new)} only in new; threshold {c.threshold:.2f}x "
        "(a regression must also clear the noise bound: (new − IQR/2) / (base + IQR/2))"
    )
    lines = [head, ""]
    kinds = pd.Series([r["kind"] for r in c.regressions]).value_counts().to_dict()
    if c.regressions:
        detail = ", ".join(f"{v} {k}" for k, v in kinds.items())
        lines += [f"REGRESSIONS: {len(c.regressions)} ({detail})", ""]
        regs = pd.DataFrame(c.regressions)[["cell", "kind", "detail"]]
        lines += [fmt(regs), ""]
    else:
        lines += ["No regressions.", ""]
    finite = m[np.isfinite(m["ratio"])].sort_values("ratio", ascending=False)
    if len(finite):
        lines += [
            f"Largest time ratios (of {len(finite)} timed cells):",
            "",
            fmt(_shown(finite.head(SHOWN))),
            "",
        ]
    faster = m[m["faster"]]
    if len(faster):
        lines += [f"Faster beyond noise: {len(faster)} cells.", ""]
    if len(c.changes):
        lines += ["Agreement and status changes:", "", fmt(c.changes), ""]
    if c.only_base:
        lines += [f"Cells in base but not in new: {len(c.only_base)}", ""]
    if c.plot:
        lines += [f"Plot: {c.plot}"]
    return "\n".join(lines).rstrip() + "\n"


def compare_runs(
    base: str | Path | Run, new: str | Path | Run, threshold: float = 1.10, out: str | Path | None = None
) -> Comparison:
    """Compare NEW against BASE. Writes compare-<base>.md and compare-<base>.png into `out`
    (default: the NEW run directory); `.regressions` non-empty means exit 1."""
    if not threshold > 0:
        raise ValueError(f"threshold must be a ratio new/base above 0, got {threshold}")
    b = base if isinstance(base, Run) else read_run(base)
    n = new if isinstance(new, Run) else read_run(new)
    ids_b, ids_n = set(b.records["cell_id"]), set(n.records["cell_id"])
    m = _timing(_matched(b.records, n.records), threshold)
    changes, broken = _changes(m)
    timing = [
        _reg(
            r,
            "time",
            f"{r['ratio']:.2f}x ({fmt_time(r['time_median_s_base'])} → {fmt_time(r['time_median_s_new'])}, "
            f"lower bound {r['lower']:.2f}x)",
        )
        for _, r in m[m["regression"]].sort_values(["ratio", "lower"], ascending=False).iterrows()
    ]
    c = Comparison(
        base=b.path,
        new=n.path,
        threshold=threshold,
        table=m,
        regressions=timing + broken,
        changes=changes,
        only_base=sorted(ids_b - ids_n),
        only_new=sorted(ids_n - ids_b),
    )
    out_dir = Path(out) if out else n.path
    stem = f"compare-{b.path.name}"
    try:
        from .plots_compare import compare_plot

        c.plot = compare_plot(m, threshold, out_dir / f"{stem}.png", f"{b.path.name} → {n.path.name}")
        c.markdown = out_dir / f"{stem}.md"
        c.markdown.write_text(f"# Compare\n\n{_text(c, m, markdown_table)}", encoding="utf-8")
    except OSError as exc:  # a read-only NEW must not turn a gate's answer into a traceback
        c.plot = c.markdown = None
        c.text = f"(could not write the plot or table into {out_dir}: {exc})\n"
    c.text = _text(c, m, text_table) + c.text
    return c
