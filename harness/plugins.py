"""Plugins: a user's Python file that registers problems, methods or patterns on import."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path


class PluginError(Exception):
    """A plugin file that is missing or fails to import; the message names the file."""


def load_plugin(path: str | Path) -> str:
    """Import the file at `path` once (its decorators register what it defines); the module name."""
    path = Path(path).resolve()
    if not path.is_file():
        raise PluginError(f"{path}: plugin file does not exist")
    name = "gradbench_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    if name in sys.modules:
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        line = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        raise PluginError(f"{path}: plugin failed to import{line}: {type(exc).__name__}: {exc}") from exc
    return name
