"""Shared test constants: tiny timing so tests check behaviour, not speed; and run directories
written through the run store, as the run command writes them."""

from pathlib import Path

from harness import TimingOptions
from harness.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"

# agreement only, or the least timing that still exercises the interleaved rounds
NO_TIMING = TimingOptions(rounds=0)
TINY_TIMING = TimingOptions(min_run_time_s=0.003, rounds=3, warmup=2)
FINISHED_AT = "2026-01-01T00:00:00+00:00"


def write_run(
    out: Path,
    records: list[dict],
    name: str = "quick",
    manifest: dict | None = None,
    plugins=(),
    cells: int | None = None,
    state: str = "finished",
) -> Path:
    """A run directory under `out` holding `records` (as run_family returns them), made as the run
    command makes one: created, appended to, then finished ('finished'), stopped by Ctrl-C
    ('interrupted'), or left as a run still going or killed leaves it ('unfinished': jsonl only).
    `cells` is how many the run set out to measure (default: as many as it holds)."""
    config = {"name": name, "plugins": [str(Path(p).resolve()) for p in plugins]}
    run = {"config_name": name, "config_hash": "00000000", "cells": len(records) if cells is None else cells}
    store = RunStore.create(out, name, "00000000", config, {**(manifest or {}), "run": run})
    if records:
        store.append([{**r, "run_id": store.run_id} for r in records])
    if state == "unfinished":
        store.close()
        return store.dir
    store.finish()
    store.update_manifest(finished_at=FINISHED_AT, interrupted=state == "interrupted")
    return store.dir
