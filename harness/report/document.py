"""A report's content, once, as a list of blocks; render.py turns it into markdown and HTML.

Order is the point: the verdict first (what is wrong, what is slow, what is noisy, what
failed), then the seed replay for seed runs, the tables, the plots, the environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from . import explain
from . import summary as S
from .data import Run
from .plotting import Plot
from .seed_replay import is_seed_run, replay


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str  # inline **bold** and `code` only


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    df: pd.DataFrame
    note: str = ""
    collapsed: bool = False  # HTML: inside <details>; long appendix tables


@dataclass
class Image:
    plot: Plot


@dataclass
class Code:
    text: str


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Document:
        self.blocks.extend(blocks)
        return self


def _headline(run: Run) -> str:
    df = run.records
    devices = ", ".join(sorted({f"{d} ({n})" for d, n in zip(df["device"], df["device_name"]) if d}))
    config = f"config `{run.config_name}`, " if run.config_name else ""
    return f"Run `{run.run_id}`: {config}{len(df)} cells on {devices or 'an unrecorded device'}."


def _verdict(v: S.Verdict, seed: pd.DataFrame | None) -> list:
    sentences = v.sentences()
    if seed is not None:
        measured = seed[seed["match"] != "—"]
        differ = (~measured["match"].str.startswith("✓")).sum()
        text = f"Seed replay: {len(measured) - differ} of {len(measured)} measured rows match the post"
        sentences.append(text + (f", **{differ} differ**." if differ else "."))
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
        note += f"; the {more} others are in the appendix." if more else "."
        blocks += [Heading("Unstable timings", 3), Para(note), Table(shown)]
    if len(v.failed):
        blocks += [Heading("Failed cells", 3), Table(v.failed)]
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


def _seed(table: pd.DataFrame) -> list:
    matched = table["match"].str.startswith("✓").sum()
    measured = (table["match"] != "—").sum()
    intro = (
        "The seed post's printed numbers beside this run's, at the digits the post printed. "
        f"{matched} of {measured} measured rows match ({len(table) - measured} not in this run). "
        "Trajectory rows hold the loss before a step's update and the parameters after it; "
        "a run value marked ≠ is one that does not round to the post's."
    )
    blocks: list = [Heading("Seed replay"), Para(intro)]
    for experiment, rows in table.groupby("experiment", sort=False):
        blocks += [Heading(experiment, 3), Table(rows.drop(columns="experiment"))]
    return blocks


def _environment(run: Run) -> list:
    if not run.manifest:
        return [Heading("Environment"), Para("No manifest.json in this run directory.")]
    flat = pd.json_normalize(run.manifest, sep=".").iloc[0]
    rows = [(k, json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()]
    table = pd.DataFrame(rows, columns=["key", "value"])
    return [Heading("Environment"), Para("From `manifest.json`."), Table(table)]


def build(run: Run, plots: list[Plot]) -> Document:
    df = run.records
    doc = Document(f"gradbench report · {run.run_id}")
    doc.add(Para(_headline(run)))
    seed = replay(run) if is_seed_run(run) else None
    doc.add(*_verdict(S.verdict(df), seed))
    doc.add(*_where_time_goes(df))
    if seed is not None:
        doc.add(*_seed(seed))
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
    doc.add(*_environment(run))
    doc.add(Heading("All cells"), Table(S.cells_table(df), collapsed=True))
    return doc
