"""`gradbench compare BASE NEW`: the regression gate between two runs of the same cells.

Cells are matched by cell_id (a hash of the cell's parameters, the same in every run). Per cell,
the time ratio new/base of the medians, and a Mann-Whitney U test on the two runs' raw samples
(`time_samples_s`, one per round). A time regression is a cell that is slower beyond the
threshold AND significantly so (asv's rule), the p-values adjusted over every cell compared
(Benjamini-Hochberg: among the cells called regressions, at most ALPHA are expected false).
Runs made before records kept their samples cannot be tested; their cells fall back to a
conservative interval from the two interquartile ranges, named as such:

    lower = (new_median - new_iqr/2) / (base_median + base_iqr/2)
    upper = (new_median + new_iqr/2) / (base_median - base_iqr/2)

a regression then being a ratio AND lower bound both beyond the threshold.

Timings are comparable only between runs on the same device model, threads per worker,
executor, torch version and config: a difference is named first, as a warning. Two runs with
no cell in common are not a comparison (NothingToCompare).

A gradient that stops agreeing with its reference, or a cell that stops running, is also a
regression: a gate that passes a wrong gradient because it got faster would be worse than none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, mannwhitneyu

from .data import FAILED, Run, read_run
from .summary import cell_label, fmt_time
from .tables import markdown_table, text_table

JUMP = 10.0  # rel_err grown this many times ...
JUMP_OF_TOL = 0.1  # ... to at least this share of its tolerance: listed as a change
SHOWN = 15  # rows of the "largest ratios" table in the text
ALPHA = 0.05  # false-discovery rate of the time regressions, over all the cells compared
MIN_SAMPLES = 3  # per run, for a rank test (11 rounds each can reach p = 3e-6)
RANK_TEST = "Mann-Whitney U"
IQR_RULE = "IQR bounds (no samples)"


class NothingToCompare(ValueError):
    """The two runs have no cell in common."""


@dataclass
class Comparison:
    base: Path
    new: Path
    threshold: float
    table: pd.DataFrame  # one row per matched cell: ratio, lower, upper, test, p, q, regression
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


def _samples(v) -> np.ndarray | None:
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) >= MIN_SAMPLES:
        t = np.asarray(v, dtype=float)
        return t if np.isfinite(t).all() else None
    return None


def _rank_test(new: np.ndarray, base: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value; exact where the samples are few and untied (scipy's
    default turns to the normal approximation above 8 samples: 8e-5 where the exact p of 11
    rounds against 11, none overlapping, is 3e-6)."""
    few = len(new) + len(base) <= 60 and len(np.unique(np.concatenate([new, base]))) == len(new) + len(base)
    return float(
        mannwhitneyu(new, base, alternative="two-sided", method="exact" if few else "asymptotic").pvalue
    )


def _timing(m: pd.DataFrame, threshold: float) -> pd.DataFrame:
    b = zip(m["time_median_s_base"], m["time_iqr_s_base"], m["time_median_s_new"], m["time_iqr_s_new"])
    bounds = np.array([ratio_bounds(*x) for x in b], dtype=float).reshape(-1, 3)
    m = m.assign(ratio=bounds[:, 0], lower=bounds[:, 1], upper=bounds[:, 2], p=np.nan, q=np.nan)
    tests = []
    for i, (sb, sn) in enumerate(zip(m["time_samples_s_base"], m["time_samples_s_new"])):
        sb, sn = _samples(sb), _samples(sn)
        if sb is None or sn is None or not math.isfinite(m["ratio"].iat[i]):
            tests.append(IQR_RULE if math.isfinite(m["ratio"].iat[i]) else None)
            continue
        tests.append(RANK_TEST)
        m.iat[i, m.columns.get_loc("ratio")] = float(np.median(sn) / np.median(sb))
        m.iat[i, m.columns.get_loc("p")] = _rank_test(sn, sb)
    m["test"] = tests
    ranked = (m["test"] == RANK_TEST).to_numpy()
    if ranked.any():
        m.loc[ranked, "q"] = false_discovery_control(m.loc[ranked, "p"].to_numpy(), method="bh")
    significant = m["q"] < ALPHA
    beyond_noise = np.where(ranked, significant, m["lower"] > threshold)
    m["regression"] = (m["ratio"] > threshold) & beyond_noise
    m["faster"] = (m["ratio"] < 1 / threshold) & np.where(ranked, significant, m["upper"] < 1 / threshold)
    return m


def _run_settings(run: Run) -> dict[str, str]:
    """What a timing depends on beyond the cell: device model, threads per worker, executor,
    torch version, config hash ('' where the run does not say)."""
    r, man = run.records, run.manifest
    timed = r[r["time_median_s"].notna()] if "time_median_s" in r else r
    info = man.get("run") if isinstance(man.get("run"), dict) else {}
    executor = man.get("executor")
    executor = executor.get("executor") if isinstance(executor, dict) else executor
    versions = man.get("versions") if isinstance(man.get("versions"), dict) else {}

    def values(col):
        vals = sorted(
            {str(int(v) if isinstance(v, float) and v.is_integer() else v) for v in timed[col].dropna()}
        )
        return ", ".join(vals)

    return {
        "device model": values("device_name") if "device_name" in timed else "",
        "threads per worker": values("threads") if "threads" in timed else "",
        "executor": str(info.get("executor") or executor or ""),
        "torch": str(versions.get("torch") or ""),
        "config hash": str(info.get("config_hash") or ""),
    }


def incomparable(base: Run, new: Run) -> list[str]:
    """One line per setting the two runs differ in that makes their timings incomparable."""
    sb, sn = _run_settings(base), _run_settings(new)
    return [
        f"{what}: {sb[what]} (base) vs {sn[what]} (new)"
        for what in sb
        if sb[what] and sn[what] and sb[what] != sn[what]
    ]


def _shown(m: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell": m["cell"],
            "base": m["time_median_s_base"].map(fmt_time),
            "new": m["time_median_s_new"].map(fmt_time),
            "new/base": m["ratio"].map(lambda x: f"{x:.2f}x" if math.isfinite(x) else "—"),
            "evidence": [_evidence(r) for _, r in m.iterrows()],
            "verdict": [
                "✗ regression" if r else ("✓ faster" if f else "")
                for r, f in zip(m["regression"], m["faster"])
            ],
        }
    )


def _evidence(r: pd.Series) -> str:
    if r["test"] == RANK_TEST:
        return f"p {r['p']:.1e}, q {r['q']:.1e}"
    if r["test"] == IQR_RULE and math.isfinite(r["lower"]):
        return f"IQR bounds {r['lower']:.2f}–{r['upper']:.2f}"
    return "—"


def _text(c: Comparison, m: pd.DataFrame, fmt) -> str:
    ranked, fallback = int((m["test"] == RANK_TEST).sum()), int((m["test"] == IQR_RULE).sum())
    head = (
        f"compare {c.base.name} → {c.new.name}: {len(m)} cells matched"
        f", {len(c.only_base)} only in base, {len(c.only_new)} only in new; threshold {c.threshold:.2f}x"
    )
    lines = [f"WARNING: timings may not be comparable; the runs differ in {w}" for w in c.warnings]
    lines += [head, ""] if not c.warnings else ["", head, ""]
    rule = (
        f"A time regression is slower than {c.threshold:.2f}x and significant: {RANK_TEST} on the "
        f"rounds' samples, Benjamini-Hochberg q < {ALPHA} over the {ranked} cells tested."
    )
    if fallback:
        rule += (
            f" {fallback} cells have no raw samples in one run (recorded before time_samples_s): the "
            "test cannot run for them; they are judged by the older IQR rule instead, "
            "(new − IQR/2) / (base + IQR/2) beyond the threshold."
        )
    lines += [rule, ""]
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
    if not ids_b & ids_n:
        raise NothingToCompare(
            f"{b.path} and {n.path} have no cell in common ({len(ids_b)} and {len(ids_n)} cells): "
            "compare runs of the same config"
        )
    m = _timing(_matched(b.records, n.records), threshold)
    changes, broken = _changes(m)
    timing = [
        _reg(
            r,
            "time",
            f"{r['ratio']:.2f}x ({fmt_time(r['time_median_s_base'])} → {fmt_time(r['time_median_s_new'])}, "
            f"{_evidence(r)})",
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
        warnings=incomparable(b, n),
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
