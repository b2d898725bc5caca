"""Plugins: a user's Python file that registers problems, methods or patterns on import.

`loaded_plugins()` lists the files this process has loaded, so that an executor whose workers
live in other processes can have them load the same ones.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

_LOADED: dict[str, str] = {}  # resolved path -> module name


class PluginError(Exception):
    """A plugin file that is missing or fails to import; the message names the file."""


def load_plugin(path: str | Path) -> str:
    """Import the file at `path` once (its decorators register what it defines); the module name."""
    path = Path(path).resolve()
    if not path.is_file():
        raise PluginError(f"{path}: plugin file does not exist")
    if str(path) in _LOADED:
        return _LOADED[str(path)]
    name = "gradbench_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
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
    _LOADED[str(path)] = name
    return name


def loaded_plugins() -> list[str]:
    """The files loaded so far, resolved, in the order they were loaded."""
    return list(_LOADED)


def forget_plugin(path: str | Path) -> None:
    """Drop a loaded file from the list and sys.modules (tests that load throwaway plugins);
    what it registered stays registered."""
    name = _LOADED.pop(str(Path(path).resolve()), None)
    if name:
        sys.modules.pop(name, None)
