"""A report's content, once, as a list of blocks; render.py turns it into markdown and HTML.

Order is the point: the verdict first (whether the run is whole, what each method costs, and what
needs attention: wrong gradients, failures, noisy timings), then the sections plugins add, the
tables, the plots, the environment, and every cell.
"""

from __future__ import annotations

import pandas as pd

from . import explain
from . import summary as S
from .blocks import Bullets, Document, Heading, Image, Para, Plot, Table
from .data import Run
from .environment import environment
from .sections import Section
from .verdict import Verdict, verdict

ALL_CELLS = "All cells"  # the last section's name, as the rest of the report refers to it


def _headline(run: Run) -> str:
    df = run.records
    devices = ", ".join(sorted({f"{d} ({n})" for d, n in zip(df["device"], df["device_name"]) if d}))
    config = f"config `{run.config_name}`, " if run.config_name else ""
    return f"Run `{run.run_id}`: {config}{len(df)} cells on {devices or 'an unrecorded device'}."


MODEL_NOTE = (
    "Each method's time per step fitted, per shape family (the cells that differ only by n), as a "
    "fixed cost plus a cost per unit of work: per flop where the problem declares its flops (its work "
    "grows faster than its bytes), else per byte read, else per row (Theil-Sen over the rounds, so one "
    "disturbed round moves neither; 95% intervals from resampled rounds, paired with the baseline's). "
    "A fixed cost is never below zero: where the free line's intercept is, the time per unit grows "
    "with n (caches) and the line is held through zero. Against the baseline: the extra fixed cost, "
    "the ratio of costs per unit, and the sizes where the method's time is within 10% of the "
    "baseline's, claimed from three sizes or more only (a line through two is unchecked). Fit error: "
    "the line against the measured medians; size left out: each size predicted by a fit without it."
)
MAX_OPEN_ROWS = 12  # longer tables of the verdict open on a click in HTML


def _verdict(run: Run, v: Verdict, sections: list[Section]) -> list:
    sentences = v.sentences(planned=run.planned, state=run.state)
    sentences += [s for section in sections for s in section.verdict]
    blocks: list = [Heading("Verdict"), Bullets(sentences)]
    if v.attention:
        blocks += [Para("**Needs attention:**"), Bullets(v.attention)]
    elif v.counts:
        blocks += [Para("Nothing needs attention: every cell ran and agrees, every timing is stable.")]
    if len(v.models):
        fitted = v.models[v.models["fit error"] != ""] if "fit error" in v.models else v.models
        lone = v.models.drop(fitted.index)
        note = MODEL_NOTE
        if len(lone):
            shapes = sorted(set(lone["shape family"]))
            note += f" One size only, no line: {', '.join(shapes)}."
        if len(fitted):
            table = Table(fitted, collapsed=len(fitted) > MAX_OPEN_ROWS)
            blocks += [Heading("Cost model", 3), Para(note), table]
    if len(v.mismatches):
        blocks += [Heading("Cells that disagree with the reference", 3), Table(v.mismatches)]
    if len(v.unstable):
        note = (
            "Cells whose timing rounds spread by more than 10% of the median (stable == False), by "
            f'cause; each cell is in "{ALL_CELLS}" below.'
        )
        blocks += [Heading("Unstable timings", 3), Para(note), Table(v.unstable)]
    if len(v.failed):
        blocks += [Heading("Failed cells", 3), Table(v.failed, collapsed=len(v.failed) > MAX_OPEN_ROWS)]
    return blocks


def _where_time_goes(df: pd.DataFrame) -> list:
    words = explain.sentences(df)
    if not words:
        return []
    note = (
        "One profiled step per method after the timing (torch.profiler). Busy is the device's kernel "
        "time; on the CPU, the time inside the ops that do work, the rest being Python, dispatcher and "
        "autograd engine. Launch-bound: busy under half the step; memory-bound: at 40% or more of the "
        "read floor (one read of the inputs; eager code reads X twice, so 50% is its ceiling, and inputs "
        "that fit in cache can pass 100%)."
    )
    table = explain.profile_table(df)
    return [Heading("Where the time goes"), Bullets(words), Para(note), Table(table, collapsed=True)]


def build(run: Run, plots: list[Plot], sections: list[Section], notes: list[str] = ()) -> Document:
    """The report of `run`: `sections` are those plugins added for it, `notes` what went wrong
    loading or building them."""
    df = run.records
    doc = Document(f"gradbench report · {run.run_id}")
    doc.add(Para(_headline(run)))
    doc.add(*_verdict(run, verdict(df, run.cost_models), sections))
    doc.add(*_where_time_goes(df))
    for section in sections:
        doc.add(Heading(section.title), *section.blocks)
    if notes:
        doc.add(Para("Not in this report:"), Bullets(list(notes)))
    doc.add(Heading("Tables"))
    key = S.key_table(df)
    if len(key):
        note = (
            "Time of the manual gradient at the main pattern (`full`), and each other method's paired "
            "ratio to it with a 95% interval: above 1 is slower than manual."
        )
        doc.add(Heading("Time and overhead per size", 3), Para(note), Table(key))
    agree = S.agreement_table(df)
    if len(agree):
        note = "Worst normwise relative error per problem, dtype and method, and the tolerance there."
        doc.add(Heading("Agreement", 3), Para(note), Table(agree))
    drawn = [p for p in plots if p.path]
    doc.add(Heading("Plots"))
    doc.add(*(Image(p) for p in drawn))
    skipped = [f"{p.title}: {p.skipped}" for p in plots if not p.path]
    if skipped:
        doc.add(Para("Not drawn for this run:"), Bullets(skipped))
    doc.add(*environment(run))
    doc.add(Heading(ALL_CELLS), Table(S.cells_table(df), collapsed=True))
    return doc
