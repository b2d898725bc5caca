"""The verdict: the report's answer, first.

One line per method: what it costs (its cost model against the baseline's, costwords.py), its
worst cell, and how many of its cells disagree with the float64 reference; a line on how well the
model predicts the cells. Then what needs attention, each fact once with its count: gradients that
disagree, grouped by what their diagnosis names; failed cells, by status and error; unstable
timings, by cause (launch- or overhead-bound steps, a noisy worker, the rest), each group with its
noise (the median of IQR / median over its cells).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from . import catalog, costwords
from .costmodel import Model, cost_models
from .data import FAILED, problem_rows
from .summary import cell_label, fmt_num, fmt_ratio, plural

# seen on an H200 (profiled by hand, torch 2.11): the same launch-bound steps ran 0.26 to 0.59 ms
SWING = "2 to 3x"
NOISY_WORKER = 2.0  # a worker whose median noise is this many times the others' is called noisy
MIN_WORKER_CELLS = 5
STABLE_IQR = 0.1  # harness.measure's: a timing is unstable above it


@dataclass
class Verdict:
    counts: dict[str, int]
    lines: list[str]  # the answer: agreement, a line per method, the model's own error
    attention: list[str]  # what needs attention, each fact once
    mismatches: pd.DataFrame
    unstable: pd.DataFrame  # by cause
    failed: pd.DataFrame
    models: pd.DataFrame  # the cost model, a row per method and shape family

    def sentences(self, planned: int | None = None, state: str = "finished") -> list[str]:
        """The extent of the run (`planned`: the cells it set out to measure; `state`: 'finished',
        'interrupted', 'unfinished'), then the answer."""
        return [extent(self.counts, planned, state), *(self.lines if self.counts else [])]


def extent(counts: dict[str, int], planned: int | None, state: str) -> str:
    """'162 cells: 160 ok, 2 mismatch.', or for a run that is not whole
    '**15 of 162 cells: interrupted**; 15 ok.'"""
    total = sum(counts.values())
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    if planned is None or total >= planned:
        return f"{plural(total, 'cell')}: {parts or 'none measured'}."
    why = {
        "interrupted": "interrupted",
        "unfinished": "not finished (still running, or stopped without finishing)",
    }.get(state, "partial")
    return f"**{total} of {plural(planned, 'cell')}: {why}**; {parts or 'none measured'}."


def verdict(df: pd.DataFrame, models: list[Model] | None = None) -> Verdict:
    known = catalog.current()
    problems = problem_rows(df)  # a layer's verdict and costs are the Layers section's
    if models is None:
        models = cost_models(problems, known.baseline(problems["method"]))
    disagree = df["agree"].map(lambda a: a is False).astype(bool)
    lines = [
        f"**{plural(int(disagree.sum()), 'cell')} disagree** with the float64 reference."
        if disagree.any()
        else "Every measured gradient agrees with the float64 reference."
    ]
    lines += method_lines(problems, models)
    lines += [s for s in [model_line(models)] if s]
    groups = unstable_groups(df)
    return Verdict(
        counts=df["status"].value_counts().to_dict(),
        lines=lines,
        attention=[*mismatch_lines(df[disagree]), *failed_lines(df), *(g.sentence() for g in groups)],
        mismatches=mismatch_table(df[disagree]),
        unstable=pd.DataFrame([g.row() for g in groups]),
        failed=failed_table(df[df["status"].isin(FAILED)]),
        models=costwords.table(models) if models else pd.DataFrame(),
    )


# -- a line per method ----------------------------------------------------------------------------


def method_lines(df: pd.DataFrame, models: list[Model]) -> list[str]:
    known = catalog.current()
    base = known.baseline(df["method"])
    measured = df[df["status"].isin(["ok", "mismatch"]) & df["method"].notna()]
    devices = sorted({(d, n) for d, n in zip(measured["device"], measured["device_name"]) if d})
    out = []
    for device, name in devices:
        where = f" on {device} ({name})" if len(devices) > 1 else ""
        cells = df[df["device"] == device]
        for method in known.method_order(cells["method"]):
            own = [m for m in models if m.method == method and m.shape.device == device]
            out.append(_method_line(method, where, cells[cells["method"] == method], own, base))
    return out


def _method_line(method: str, where: str, cells: pd.DataFrame, models: list[Model], base) -> str:
    head = costwords.headline(models)
    if head is None:
        said = "measured at one size per shape family: no cost model" if models else "not timed"
    elif head.extra_fixed_s is not None:
        said = f"{costwords.versus(head)} on {head.shape.label} ({costwords.fit_words(head)}), "
        said += costwords.crossover_words(head.crossover, base, head.ns)
        if costwords.spread(models):
            said += f"; {costwords.spread(models)}"
    else:
        said = f"{costwords.alone(head)} on {head.shape.label} ({costwords.fit_words(head)})"
    text = f"**{method}**{where}: {said}."
    paired = cells[cells["vs_manual"].notna()] if method != base else cells.iloc[0:0]
    if len(paired):
        worst = paired.loc[paired["vs_manual"].idxmax()]
        text += f" Worst cell {cell_label(worst, method=False)}, {fmt_ratio(worst)} {base}."
    return f"{text} {_agreement(cells)}"


def _agreement(cells: pd.DataFrame) -> str:
    checked = cells["agree"].map(lambda a: a is not None)
    bad = int(cells["agree"].map(lambda a: a is False).sum())
    total = int(checked.sum())
    unchecked = f" ({len(cells) - total} not checked)" if total < len(cells) else ""
    if bad:
        return f"**{bad} of {plural(total, 'cell')} disagree**{unchecked}."
    return f"All {plural(total, 'cell')} agree{unchecked}." if total else "No cell checked."


def model_line(models: list[Model]) -> str | None:
    """How far the cost model can be trusted: its families, sizes, and errors."""
    fitted = [m for m in models if m.fitted]
    if not models:
        return None
    lone = {m.shape for m in models} - {m.shape for m in fitted}
    if not fitted:
        return f"Cost model: every shape family ({len(lone)}) has one size only; a line needs two."
    families = {m.shape for m in fitted}
    counts = sorted({len(m.ns) for m in fitted})
    sizes = f"{counts[0]} sizes each" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} sizes"
    fit = pd.Series([m.fit_error for m in fitted]).median()
    text = f"Cost model: {plural(len(families), 'shape family', 'shape families')} "
    text += f"of {sizes}, within {fit:.1%} of their cells (median)"
    held = [m for m in fitted if m.held_out_error is not None]
    if held:
        worst = max(held, key=lambda m: m.worst_held_out_error)
        median = pd.Series([m.held_out_error for m in held]).median()
        text += (
            f"; a size left out of the fit is predicted within {median:.0%} (median; worst "
            f"{worst.worst_held_out_error:.0%}, {worst.method} on {worst.shape.label})"
        )
    else:
        text += "; at two sizes a fit cannot be checked on a size left out (three are needed)"
    axes = {}
    for m in fitted:
        axes.setdefault(m.unit, set()).add(m.shape.problem)
    text += "; fitted " + ", ".join(f"per {unit} ({', '.join(sorted(p))})" for unit, p in axes.items())
    through_zero = {m.shape for m in fitted if m.held_at_zero and m.grows_with_n}
    if through_zero:
        text += (
            f"; {plural(len(through_zero), 'shape family', 'shape families')} with no fixed cost: "
            "the time per unit grows with n (caches), so the line is held through zero"
        )
    if lone:
        text += f"; {len(lone)} shape {'family has' if len(lone) == 1 else 'families have'} one size: no line"
    return text + "."


# -- what needs attention -------------------------------------------------------------------------


def _head(diagnosis: str) -> str:
    """What a diagnosis names, without the cell's numbers: '4.000x the reference'."""
    return str(diagnosis or "").split(":")[0].split(";")[0].strip()


def mismatch_lines(bad: pd.DataFrame) -> list[str]:
    out = []
    keys = bad.assign(what=bad["diagnosis"].map(_head))
    for (method, _), g in keys.groupby(["method", "what"], sort=False):
        first = g.iloc[0]
        more = f", and {len(g) - 1} more" if len(g) > 1 else ""
        out.append(
            f"**{plural(len(g), method + ' cell')} disagree**: {first['diagnosis'] or 'no diagnosis'} "
            f"({cell_label(first, method=False)}{more})."
        )
    return out


def mismatch_table(bad: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell": [cell_label(r) for _, r in bad.iterrows()],
            "rel_err": bad["rel_err"].map(fmt_num),
            "tol": bad["tol"].map(lambda x: fmt_num(x, 2)),
            "diagnosis": bad["diagnosis"].fillna(""),
        }
    )


def _short(error) -> str:
    e = str(error or "").strip().splitlines()
    e = e[0] if e else ""
    return e if len(e) <= 160 else e[:157] + "..."


def failed_lines(df: pd.DataFrame) -> list[str]:
    """One line: how many failed, then each status and error once, with its count and a cell."""
    fail = df[df["status"].isin(FAILED)]
    if fail.empty:
        return []
    parts = []
    for (status, error), g in fail.assign(why=fail["error"].map(_short)).groupby(["status", "why"]):
        more = f", and {len(g) - 1} more" if len(g) > 1 else ""
        parts.append(f"{len(g)} {status}, {error or 'no message'} ({cell_label(g.iloc[0])}{more})")
    return [f"**{plural(len(fail), 'cell')} failed**: {'; '.join(parts)}."]


def failed_table(fail: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell": [cell_label(r) for _, r in fail.iterrows()],
            "status": fail["status"],
            "error": fail["error"].map(_short),
        }
    )


@dataclass
class Unstable:
    """Unstable timings that share a cause."""

    cause: str
    cells: pd.DataFrame  # with a `noise` column: IQR / median
    why: str  # the sentence's tail: what to make of them

    @property
    def noise(self) -> float:
        return float(self.cells["noise"].median())

    def sentence(self) -> str:
        count = plural(len(self.cells), "timing")
        end = "" if self.why.endswith("?") else "."
        return f"{count} unstable {self.cause} (median IQR {self.noise:.0%}): {self.why}{end}"

    def row(self) -> dict:
        worst = self.cells.loc[self.cells["noise"].idxmax()]
        return {
            "cause": self.cause,
            "cells": len(self.cells),
            "IQR/median (median)": f"{self.noise:.0%}",
            "noisiest": f"{cell_label(worst)} ({worst['noise']:.0%})",
        }


def unstable_groups(df: pd.DataFrame) -> list[Unstable]:
    """Unstable timings (IQR/median > 10%) by cause: launch- or overhead-bound steps (a small step
    is mostly fixed host cost, which other load stretches), then cells of a worker noisier than
    the others (NOISY_WORKER times their median noise), then the rest."""
    timed = df[df["time_median_s"].notna()].copy()
    timed["noise"] = timed["time_iqr_s"] / timed["time_median_s"]
    unstable = timed[timed["stable"].map(lambda s: s is False).astype(bool) & timed["noise"].notna()]
    if unstable.empty:
        return []
    groups = []
    launch = unstable["bound"] == "launch" if "bound" in unstable else pd.Series(False, unstable.index)
    if launch.any():
        groups.append(
            Unstable(
                "in launch- or overhead-bound steps",
                unstable[launch],
                f"such timings swing {SWING} between runs (seen on an H200); read their ratios with care",
            )
        )
    rest = unstable[~launch]
    for worker, others in _noisy_workers(timed):
        mine = rest[rest["worker"] == worker]
        if len(mine):
            groups.append(
                Unstable(
                    f"on worker {fmt_num(worker)}, noisier than the others ({others:.0%} there)",
                    mine,
                    "its cells are worth measuring again",
                )
            )
            rest = rest[rest["worker"] != worker]
    if len(rest):
        cause = "elsewhere, on every worker alike" if timed["worker"].nunique() > 1 else "elsewhere"
        groups.append(Unstable(cause, rest, "other load on the machine while they ran?"))
    return groups


def _noisy_workers(timed: pd.DataFrame) -> list[tuple]:
    """(worker, the others' median noise) for each worker whose cells' median noise is
    NOISY_WORKER times the other workers' and above 10%."""
    if "worker" not in timed or timed["worker"].nunique() < 2:
        return []
    out = []
    for worker, g in timed.groupby("worker"):
        others = timed.loc[timed["worker"] != worker, "noise"].median()
        mine = g["noise"].median()
        noisy = mine > STABLE_IQR and math.isfinite(others) and mine >= NOISY_WORKER * others
        if len(g) >= MIN_WORKER_CELLS and noisy:
            out.append((worker, others))
    return out
