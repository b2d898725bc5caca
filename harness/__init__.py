"""gradbench: hand-written gradients against autograd, cell by cell: timing and agreement."""

from .cell import Cell, run_family
from .measure import TimingOptions
from .methods import Method, register_method
from .patterns import Pattern, register_pattern
from .problems import Problem, register_problem

__all__ = [
    "Cell",
    "Method",
    "Pattern",
    "Problem",
    "TimingOptions",
    "load",
    "register_method",
    "register_pattern",
    "register_problem",
    "run_family",
]


def load(run_dir):
    """The records of a run directory as a pandas DataFrame."""
    from .runs.store import load as _load  # the core stays free of files and pandas

    return _load(run_dir)
