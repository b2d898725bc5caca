"""Reports of a run: plots, markdown and self-contained HTML with the verdict first, the sections
plugins add (`register_section`), and `compare_runs`, the regression gate between two runs.

Reports only read run directories; they never run a cell.
"""

from .blocks import Bullets, Code, Heading, Para, Table
from .compare import Comparison, compare_runs
from .data import Run, read_run
from .sections import Section, register_section
from .write import write_report

__all__ = [
    "Bullets",
    "Code",
    "Comparison",
    "Heading",
    "Para",
    "Run",
    "Section",
    "Table",
    "compare_runs",
    "read_run",
    "register_section",
    "write_report",
]
