"""`gradbench compare BASE NEW`: the regression gate between two runs of the same cells.

Cells are matched by cell_id (a hash of the cell's parameters, the same in every run). Their
times are judged against the noise the two runs show between them (noise.py): each cell's change
against the run-wide shift and against the other methods of its family, timed beside it in the
same rounds, beyond a noise floor measured over the cells of these two runs, the p-values
adjusted over every cell (Benjamini-Hochberg). A change past the threshold but within the noise
is said to be within noise, with the floor: neither a regression nor "no change".

Timings are comparable only between runs on the same device model, threads per worker,
executor, torch version and config: a difference is named first, as a warning. Two runs with
no cell in common are not a comparison (NothingToCompare).

A gradient that stops agreeing with its reference, or a cell that stops running, is always a
regression: a gate that passes a wrong gradient because it got faster would be worse than none.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import SIZE_NAMES
from . import noise as N
from .comparable import incomparable
from .data import FAILED, Run, read_run
from .summary import cell_label, fmt_time
from .tables import markdown_table, text_table

JUMP = 10.0  # rel_err grown this many times ...
JUMP_OF_TOL = 0.1  # ... to at least this share of its tolerance: listed as a change
SHOWN = 15  # rows of the "largest changes" table in the text
WIDTH = 100  # characters a line of prose in the text takes
# what makes a family: every identity column but the method; and what runs the same code
FAMILY_OF = (
    "problem",
    "mode",
    "pattern",
    "k",
    "dtype",
    "device",
    *SIZE_NAMES,
    "seed",
    "data",
    "steps",
    "lr",
)
CODE_OF = ("problem", "method", "mode", "device")


class NothingToCompare(ValueError):
    """The two runs have no cell in common."""


@dataclass
class Comparison:
    base: Path
    new: Path
    threshold: float
    # one row per matched cell: ratio, vs_run, vs_family, change, test, z, p, q, regression, faster,
    # within_noise (noise.judge)
    table: pd.DataFrame
    noise: N.Noise | None = None  # the run-wide shift and the noise floor the times were judged by
    regressions: list[dict] = field(default_factory=list)  # each: cell_id, cell, kind, detail
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)  # agreement and status changes
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what makes the timings incomparable
    text: str = ""
    plot: Path | None = None
    markdown: Path | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    @property
    def blind(self) -> str | None:  # noise.blind: runs too noisy to catch a quarter slower
        return N.blind(self.table, self.noise, self.threshold) if self.noise else None

    @property
    def within_noise(self) -> pd.DataFrame:
        return self.table[self.table["within_noise"]]


def _matched(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    cols = [
        "cell_id",
        "time_min_s",
        "time_samples_s",
        "status",
        "agree",
        "rel_err",
        "tol",
        "diagnosis",
        "error",
    ]
    b = base.drop_duplicates("cell_id", keep="last").reindex(columns=list(dict.fromkeys([*base, *cols])))
    n = new.drop_duplicates("cell_id", keep="last").reindex(columns=list(dict.fromkeys([*new, *cols])))
    m = b[cols].merge(n[cols], on="cell_id", suffixes=("_base", "_new"))
    ident = n.set_index("cell_id")
    m["cell"] = [cell_label(ident.loc[c]) for c in m["cell_id"]]
    m["method"] = [ident.loc[c, "method"] for c in m["cell_id"]]
    m["problem"] = [ident.loc[c, "problem"] for c in m["cell_id"]]
    for key, cols in (("family", FAMILY_OF), ("code", CODE_OF)):
        keys = ident.reindex(columns=list(cols)).loc[m["cell_id"]]
        m[key] = [repr(tuple(row)) for row in keys.itertuples(index=False)]
    for side in ("base", "new"):  # a cell that failed in either run has no time to judge
        times = zip(m[f"time_samples_s_{side}"], m[f"time_min_s_{side}"])
        m[f"time_s_{side}"] = [N.fast_time(samples, t) for samples, t in times]
        m.loc[m[f"status_{side}"].isin(FAILED), f"time_s_{side}"] = np.nan
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


def _x(v: float) -> str:
    return f"{v:.2f}x" if isinstance(v, float) and math.isfinite(v) else "—"


def _span(shares: pd.Series) -> str:
    lo, hi = 100 * shares.min(), 100 * shares.max()
    return f"{lo:.0f}%" if round(lo) == round(hi) else f"{lo:.0f} to {hi:.0f}%"


def _pct(sigma: float) -> str:
    return f"±{100 * N.Noise.band(sigma):.0f}%"


def _floor(r: pd.Series, noise: N.Noise | None) -> str:
    """What a cell's change had to pass to stand out of the noise: alone, and with its code."""
    if noise is None or r["test"] not in (N.FAMILY, N.RUN):
        return ""
    alone = noise.alone_bar if r["test"] == N.FAMILY else noise.alone_bar_run
    parts = [f"alone ±{100 * alone:.0f}%"] if alone is not None else []
    if math.isfinite(r["code_bar"]):
        parts.append(f"code ±{100 * r['code_bar']:.0f}%")
    return ", ".join(parts)


def _evidence(r: pd.Series) -> str:
    if r["test"] in (N.FAMILY, N.RUN):
        cell = f"z {r['z']:.1f}, q {r['q']:.1e}"
        if not math.isfinite(r["code_q"]):  # too few cells for its code's test
            return cell
        return f"{cell}; code {r['code_change']:.2f}x over {r['code_cells']}, q {r['code_q']:.1e}"
    if r["test"] == N.ROUNDS:
        return f"p {r['p']:.1e}, q {r['q']:.1e}"
    return "—"


def _verdict(r: pd.Series, noise: N.Noise | None) -> str:
    if r["regression"]:
        return "✗ regression"
    if r["faster"]:
        return "✓ faster"
    if r["within_noise"]:
        floor = _floor(r, noise)
        return f"≈ within noise ({floor})" if floor else "≈ within noise"
    return ""


def _shown(m: pd.DataFrame, noise: N.Noise | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell": m["cell"],
            "base": m["time_s_base"].map(fmt_time),
            "new": m["time_s_new"].map(fmt_time),
            "new/base": m["ratio"].map(_x),
            "vs run": m["vs_run"].map(_x),
            "vs family": m["vs_family"].map(_x),
            "evidence": [_evidence(r) for _, r in m.iterrows()],
            "verdict": [_verdict(r, noise) for _, r in m.iterrows()],
        }
    )


def _noise_lines(c: Comparison, m: pd.DataFrame) -> list[str]:
    """What the times were judged against, and how it was measured."""
    nz, t = c.noise, c.threshold
    tested = int(m["test"].notna().sum())
    if nz is None or not nz.measured:
        cells = nz.cells if nz else 0
        return [
            f"Noise floor: not measured. {cells} timed cells in common; at least {N.MIN_CELLS} are needed "
            "to measure a run-wide shift and the noise between two runs. Each cell is judged on its "
            f"rounds instead (Mann-Whitney U, Benjamini-Hochberg q < {N.ALPHA} over {tested} cells), "
            "which reads a shift of the whole machine as a change.",
        ]
    lines = [
        f"Run-wide shift: new/base {nz.shift:.2f}x, the median over {nz.cells} timed cells: the machine's, "
        "taken out of every cell's change.",
    ]
    if nz.sigma is not None:
        lines.append(
            f"Noise floor: {_pct(nz.sigma)} per cell (σ = {100 * nz.sigma:.1f}% of a cell's ln change "
            f"against its family; 1.4826 × MAD over {nz.sigma_cells} cells of these two runs, each family "
            f"timed at a moment of its own; floor {100 * N.MIN_SIGMA:.0f}%)."
        )
    bars = m.drop_duplicates("code")["code_bar"].dropna()
    if nz.alone_bar is not None:
        code = f"; the cells of a code together by ±{_span(bars)}" if len(bars) else ""
        lines.append(
            f"To stand out of that noise, one cell alone must change by ±{100 * nz.alone_bar:.0f}%{code} "
            "(the change whose test would pass were it the only one)."
        )
    if nz.code_spread is not None:
        lines.append(
            f"A code's cells move together between runs by σ = {100 * nz.code_spread:.1f}% beyond their own "
            f"noise (1.4826 × MAD of the median changes of {nz.code_spread_codes} codes, less their cells' "
            "share): a code's median is judged against both."
        )
    elif nz.alone_bar is not None:
        lines.append(
            f"How a code's cells move together between runs was not measured ({nz.code_spread_codes} codes "
            f"of two cells or more that did not change, {N.MIN_SPREAD_CODES} needed): they are taken as "
            "independent."
        )
    if nz.sigma_run is not None:
        alone = int((m["test"] == N.RUN).sum())
        lines.append(
            f"Noise floor against the run, for {alone} cells without a family: {_pct(nz.sigma_run)} "
            f"(σ = {100 * nz.sigma_run:.1f}%, 1.4826 × MAD of every cell's ln change against the run)."
        )
    lines.append(
        f"A time regression is slower than {t:.2f}x both against the run and against its family (the "
        "methods timed beside it in the same rounds), and beyond the noise floor: alone, z = ln(change "
        f"against the family) / σ on a t({N.TAIL_DF}) law (one unchanged cell on a busy machine strays "
        "further than a normal law allows), or with its code, the median change of the cells of its "
        f"problem and method (at least {N.MIN_CODE_CELLS}), against the cells' noise and the code's "
        f"wander; Benjamini-Hochberg q < {N.ALPHA} over the "
        f"{tested} cells tested. A cell's time is the {N.FAST}th percentile of its rounds: other work on "
        "the machine only adds time, and the one fastest round moves with it."
    )
    return lines


def _prose(text: str) -> str:
    """A line of prose wrapped to WIDTH, never inside a word ("slow-down" stays whole)."""
    return textwrap.fill(text, WIDTH, break_on_hyphens=False)


def _text(c: Comparison, m: pd.DataFrame, fmt) -> str:
    head = (
        f"compare {c.base.name} → {c.new.name}: {len(m)} cells matched"
        f", {len(c.only_base)} only in base, {len(c.only_new)} only in new; threshold {c.threshold:.2f}x"
    )
    lines = [f"WARNING: timings may not be comparable; the runs differ in {w}" for w in c.warnings]
    lines += [head, ""] if not c.warnings else ["", head, ""]
    lines += [_prose(line) for line in _noise_lines(c, m)] + [""]
    kinds = pd.Series([r["kind"] for r in c.regressions]).value_counts().to_dict()
    if c.regressions:
        detail = ", ".join(f"{v} {k}" for k, v in kinds.items())
        lines += [f"REGRESSIONS: {len(c.regressions)} ({detail})", ""]
        # a time regression's detail in two columns, each short enough for a terminal's table
        regs = pd.DataFrame(
            [
                {"cell": r["cell"], "kind": r["kind"], "change": r.get("change", r["detail"])}
                | {"evidence": r.get("evidence", "")}
                for r in c.regressions
            ]
        )
        lines += [fmt(regs), ""]
    else:
        lines += ["No regressions.", ""]
    if c.blind:  # a gate that cannot see a slow-down must not pass, nor fail, silently
        lines += [_prose(f"But {c.blind}."), ""]
    quiet = c.within_noise
    if len(quiet):
        floors = sorted({_floor(r, c.noise) for _, r in quiet.iterrows()} - {""})
        within = f" ({'; '.join(floors)})" if floors else ""
        lines += [
            _prose(
                f"Within noise: {len(quiet)} cells slower than {c.threshold:.2f}x, short of what stands "
                f"out of the noise{within}: these runs cannot tell them from noise."
            ),
            "",
        ]
    finite = m[np.isfinite(m["change"])].sort_values("change", ascending=False)
    if len(finite):
        lines += [
            f"Largest changes (of {len(finite)} timed cells; times are {N.FAST}th percentiles of rounds):",
            "",
            fmt(_shown(finite.head(SHOWN), c.noise)),
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


def _time_regression(r: pd.Series) -> dict:
    against = (
        f"{_x(r['vs_family'])} against its family, {_x(r['vs_run'])} against the run"
        if r["test"] == N.FAMILY
        else f"{_x(r['vs_run'])} against the run"
        if r["test"] == N.RUN
        else f"{_x(r['ratio'])} on its rounds"
    )
    times = f"{fmt_time(r['time_s_base'])} → {fmt_time(r['time_s_new'])}"
    # the table's column says the same in fewer words, to fit a terminal
    short = against.replace(" against its ", " vs ").replace(" against the ", " vs ")
    detail = f"{against} ({times}): {_evidence(r)}"
    return {**_reg(r, "time", detail), "change": f"{short}, {times}", "evidence": _evidence(r)}


def compare_runs(
    base: str | Path | Run, new: str | Path | Run, threshold: float = 1.10, out: str | Path | None = None
) -> Comparison:
    """Compare NEW against BASE. Writes compare-<base>.md and compare-<base>.png into `out`
    (default: the NEW run directory); `.regressions` non-empty means exit 1."""
    if not threshold > 0:
        raise ValueError(f"threshold must be a ratio new/base above 0, got {threshold}")
    # resolved: `results/latest` names the run it points to, in the output and the files written
    b = base if isinstance(base, Run) else read_run(Path(base).resolve())
    n = new if isinstance(new, Run) else read_run(Path(new).resolve())
    ids_b, ids_n = set(b.records["cell_id"]), set(n.records["cell_id"])
    if not ids_b & ids_n:
        raise NothingToCompare(
            f"{b.path} and {n.path} have no cell in common ({len(ids_b)} and {len(ids_n)} cells): "
            "compare runs of the same config"
        )
    m, noise = N.judge(_matched(b.records, n.records), threshold)
    changes, broken = _changes(m)
    slower = m[m["regression"]].sort_values("change", ascending=False)
    c = Comparison(
        base=b.path,
        new=n.path,
        threshold=threshold,
        table=m,
        noise=noise,
        regressions=[_time_regression(r) for _, r in slower.iterrows()] + broken,
        changes=changes,
        only_base=sorted(ids_b - ids_n),
        only_new=sorted(ids_n - ids_b),
        warnings=incomparable(b, n),
    )
    out_dir = Path(out) if out else n.path
    stem = f"compare-{b.path.name}"
    try:
        from .plots_compare import compare_plot

        c.plot = compare_plot(m, noise, threshold, out_dir / f"{stem}.png", f"{b.path.name} → {n.path.name}")
        c.markdown = out_dir / f"{stem}.md"
        c.markdown.write_text(f"# Compare\n\n{_text(c, m, markdown_table)}", encoding="utf-8")
    except OSError as exc:  # a read-only NEW must not turn a gate's answer into a traceback
        c.plot = c.markdown = None
        c.text = f"(could not write the plot or table into {out_dir}: {exc})\n"
    c.text = _text(c, m, text_table) + c.text
    return c
