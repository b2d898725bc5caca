"""The command that runs gradbench again the way this process was run, for the commands it prints
(resume, report): after `make bench` the venv's script is not on PATH, so a bare `gradbench`
would not work where `.venv/bin/gradbench` does."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def _short(path: str, cwd: Path) -> str:
    """`path` as a user would type it here: the bare name where PATH finds the same file, else
    relative to the working directory when inside it, else absolute."""
    name = Path(path).name
    full = Path(os.path.normpath(cwd / path))  # a relative path is relative to cwd
    found = shutil.which(name)
    if found and full.exists() and os.path.samefile(found, full):
        return name
    if full.is_relative_to(cwd):
        return str(full.relative_to(cwd))
    return str(full)


def gradbench_command(
    argv0: str | None = None, executable: str | None = None, cwd: Path | None = None
) -> list[str]:
    """The words that start gradbench as this process was started: `.venv/bin/gradbench`,
    `gradbench` where it is on PATH, or `python -m harness.cli` when run that way (or from
    Python, with no script of its own to name)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = executable or sys.executable
    cwd = (cwd or Path.cwd()).resolve()
    script = Path(argv0)
    if script.stem == "gradbench":  # the installed script
        return [_short(argv0, cwd) if (cwd / script).exists() else argv0]
    if not (script.name == "cli.py" and script.parent.name == "harness"):  # called from Python
        installed = shutil.which("gradbench")
        # the script PATH finds is this interpreter's own
        if installed and Path(os.path.abspath(installed)).parent == Path(os.path.abspath(executable)).parent:
            return ["gradbench"]
    return [_short(executable, cwd), "-m", "harness.cli"]
