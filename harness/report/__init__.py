"""Reports of a run: plots, markdown and self-contained HTML with the verdict first, the seed
replay, and `compare_runs`, the regression gate between two runs.

Reports only read run directories; they never run a cell.
"""

from .compare import Comparison, compare_runs
from .write import write_report

__all__ = ["Comparison", "compare_runs", "write_report"]
