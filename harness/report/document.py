"""A report's content, once, as a list of blocks; render.py turns it into markdown and HTML.

Order is the point: the verdict first (what is wrong, what is slow, what is noisy, what
failed, and whether the run is whole), then the sections plugins add, the tables, the plots,
the environment, and every cell.
"""

from __future__ import annotations

from . import summary as S
from .blocks import Bullets, Document, Heading, Image, Para, Plot, Table
from .data import Run
from .environment import environment
from .sections import Section

ALL_CELLS = "All cells"  # the last section's name, as the rest of the report refers to it


def _headline(run: Run) -> str:
    df = run.records
    devices = ", ".join(sorted({f"{d} ({n})" for d, n in zip(df["device"], df["device_name"]) if d}))
    config = f"config `{run.config_name}`, " if run.config_name else ""
    return f"Run `{run.run_id}`: {config}{len(df)} cells on {devices or 'an unrecorded device'}."


def _verdict(run: Run, v: S.Verdict, sections: list[Section]) -> list:
    sentences = v.sentences(planned=run.planned, state=run.state)
    sentences += [s for section in sections for s in section.verdict]
    blocks: list = [Heading("Verdict"), Bullets(sentences)]
    if len(v.mismatches):
        blocks += [Heading("Cells that disagree with the reference", 3), Table(v.mismatches)]
    if len(v.overheads):
        note = "Paired ratio of each cell's time to its family's manual gradient, measured side by side."
        blocks += [Heading("Largest autograd overheads", 3), Para(note), Table(v.overheads)]
    if len(v.unstable):
        shown = v.unstable.head(S.TOP)
        more = len(v.unstable) - len(shown)
        note = "Cells whose timing rounds spread by more than 10% of the median (stable == False)"
        note += f'; the {more} others are in "{ALL_CELLS}" below.' if more else "."
        blocks += [Heading("Unstable timings", 3), Para(note), Table(shown)]
    if len(v.failed):
        blocks += [Heading("Failed cells", 3), Table(v.failed)]
    return blocks


def build(run: Run, plots: list[Plot], sections: list[Section], notes: list[str] = ()) -> Document:
    """The report of `run`: `sections` are those plugins added for it, `notes` what went wrong
    loading or building them."""
    df = run.records
    doc = Document(f"gradbench report · {run.run_id}")
    doc.add(Para(_headline(run)))
    doc.add(*_verdict(run, S.verdict(df), sections))
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
