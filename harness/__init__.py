"""gradbench: hand-written gradients against autograd, cell by cell: timing and agreement.

The public names are imported when first used, so that `import harness.cli` is quick and a
Ctrl-C while torch loads reaches the command's own handling rather than an import.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Cell": "cell",
    "run_family": "cell",
    "TimingOptions": "measure",
    "Method": "methods",
    "register_method": "methods",
    "Pattern": "patterns",
    "register_pattern": "patterns",
    "Problem": "problems",
    "register_problem": "problems",
    "check": "runs.check",
    "CheckResult": "runs.check",
    "Layer": "layers",
    "register_layer": "layers",
    "check_layer": "runs.check_layer",
}

__all__ = sorted([*_WHERE, "load"])


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    try:
        return importlib.import_module(f".{name}", __name__)  # a submodule: harness.fused
    except ModuleNotFoundError:
        raise AttributeError(f"module 'harness' has no attribute {name!r}") from None


def load(run_dir):
    """The records of a run directory as a pandas DataFrame."""
    from .runs.store import load as _load  # the core stays free of files and pandas

    return _load(run_dir)
