"""Reports of a run: plots, markdown and self-contained HTML with the verdict first, the sections
plugins add (`register_section`), and `compare_runs`, the regression gate between two runs.

Reports only read run directories; they never run a cell.
"""

from .blocks import Bullets, Code, Heading, Para, Table
from .data import Run, read_run
from .sections import Section, register_section

# matplotlib is imported only by what draws: a plugin that registers a section (and the Ray
# workers that import it with the config's plugins) does not pay for it
_LAZY = {"Comparison": "compare", "compare_runs": "compare", "write_report": "write"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
