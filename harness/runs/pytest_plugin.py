"""pytest plugin: `pytest --gradbench-save DIR` gathers what every `harness.check` and
`harness.check_layer` of the test session ran into one run directory under DIR (DIR/latest
points to it), the layout of a config run (harness.runs.store), so that `gradbench report` and
`gradbench compare` read a test suite as they read a config run.

Off unless asked: without the option nothing of gradbench is imported here and a check tells no
one. Each check's records are appended and fsync'd as it ends, so a session that crashes keeps
every check it finished (records.jsonl; the parquet files come at the session's end).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

OPTION = "--gradbench-save"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradbench")
    group.addoption(
        OPTION,
        metavar="DIR",
        default=None,
        help="gather the records of every harness.check and harness.check_layer of the session "
        "into a run directory under DIR (as `gradbench run --out DIR`)",
    )


def pytest_configure(config: pytest.Config) -> None:
    out = config.getoption("gradbench_save")
    if out:
        config.pluginmanager.register(SessionRun(Path(out), config.invocation_params.args), "gradbench-save")


class SessionRun:
    """The session's run directory, made at the first check (a session without one makes none)."""

    def __init__(self, out: Path, args):
        self.out, self.args = out, [str(a) for a in args]
        self.store = None
        self.test: str | None = None  # the test whose checks are running: each record names it
        self.cells = 0
        self.declared: dict = {"methods": {}, "patterns": {}, "problems": {}}

    # -- pytest hooks ------------------------------------------------------------------------
    def pytest_sessionstart(self, session) -> None:
        from .check import LISTENERS

        LISTENERS.append(self.listen)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        self.test = item.nodeid
        try:
            yield
        finally:
            self.test = None

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        from .check import LISTENERS

        if self.listen in LISTENERS:
            LISTENERS.remove(self.listen)
        if self.store is None:
            return
        manifest = self.store.manifest()
        segment = {**manifest["segments"][-1], "finished_at": _now(), "interrupted": False}
        self.store.update_manifest(segments=[segment])
        self.store.finish()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.store is None:
            terminalreporter.write_line(f"gradbench: no harness.check ran; nothing saved under {self.out}")
            return
        terminalreporter.write_line(
            f"gradbench: {self.cells} cells saved in {self.store.dir}; "
            f"report with: gradbench report {self.store.dir}"
        )

    # -- what a check tells ------------------------------------------------------------------
    def listen(self, records: list[dict], declared: dict) -> None:
        if self.store is None:
            self.store = self._create()
        grown = False
        for key, entries in declared.items():
            for name, info in entries.items():
                if name not in self.declared.setdefault(key, {}):
                    self.declared[key][name], grown = info, True
        self.cells += len(records)
        run = {**self.store.manifest()["run"], "cells": self.cells}
        if grown:
            self.store.update_manifest(run=run, **self.declared)
        else:
            self.store.update_manifest(run=run)
        self.store.append([{**r, "run_id": self.store.run_id, "test": self.test} for r in records])

    def _create(self):
        from ..env import manifest
        from .store import RunStore

        config = {"name": "pytest", "pytest_args": self.args, "plugins": []}
        digest = hashlib.sha256("\0".join(self.args).encode()).hexdigest()[:8]
        started = _now()
        run = {"config_name": "pytest", "config_hash": digest, "executor": "pytest", "created_at": started}
        segment = {"started_at": started, "finished_at": None, "interrupted": None, "executor": "pytest"}
        info = {**manifest(), "run": run, "segments": [segment], "skipped": [], **self.declared}
        return RunStore.create(self.out, "pytest", digest, config, info)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
