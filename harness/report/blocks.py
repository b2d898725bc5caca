"""The blocks a report is made of: the generic sections and a plugin's own build them, and
render.py turns them into markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Plot:
    """A figure of the report: the PNG written, or why none was (a run of one cell has no
    "time against size")."""

    name: str
    title: str
    path: Path | None = None
    skipped: str | None = None


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
    collapsed: bool = False  # HTML: inside <details>; the long "All cells" table


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
