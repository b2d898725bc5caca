"""The report's Environment: the workers of each segment of the run as a table, and the rest of
the manifest (versions, git commit, TF32 flags) as a short key/value table."""

from __future__ import annotations

import pandas as pd

from .blocks import Heading, Para, Table
from .data import Run

# manifest keys shown elsewhere in the report, or too long for a key/value table
NOT_FLAT = ("segments", "executor", "skipped")
# executor keys that are the worker list or the cluster's own bookkeeping (Ray's resource names)
EXECUTOR_INTERNAL = ("workers", "cluster_resources")


def segments(manifest: dict) -> list[dict]:
    """Each stretch of the run between a start and a stop, with the workers it ran on: the
    manifest's `segments` (a resumed run has several), else one made of its top level."""
    found = [s for s in manifest.get("segments") or [] if isinstance(s, dict)]
    if found:
        return found
    executor = manifest.get("executor") or {}
    run = manifest.get("run") or {}
    return [
        {
            "started_at": run.get("created_at"),
            "finished_at": manifest.get("finished_at"),
            "interrupted": manifest.get("interrupted"),
            "executor": executor.get("executor") or run.get("executor"),
            "workers": executor.get("workers") or [],
        }
    ]


def all_workers(manifest: dict) -> list[dict]:
    return [w for s in segments(manifest) for w in s.get("workers") or [] if isinstance(w, dict)]


def _gbps(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else ""


def workers_table(workers: list[dict]) -> pd.DataFrame:
    def text(v) -> str:
        return "" if v is None else str(v)

    rows = [
        {
            "worker": text(w.get("worker")),
            # Ray's node ids are 56 hex digits: the host name says more, the id's head tells nodes apart
            "node / host": text(w.get("host") or w.get("node"))[:24],
            "device": text(w.get("device")),
            "device_name": text(w.get("device_name")),
            "threads": text(w.get("threads")),
            "gpu_id": text(w.get("gpu_id")),
            "probe GB/s": _gbps(w.get("bandwidth_probe_gbps")),
            "read probe GB/s": _gbps(w.get("read_probe_gbps")),
        }
        for w in workers
    ]
    return pd.DataFrame(rows)


def _segment_line(i: int, count: int, s: dict) -> str:
    ended = "interrupted" if s.get("interrupted") else "finished" if s.get("finished_at") else "not finished"
    times = f"{s.get('started_at') or '?'} to {s.get('finished_at') or '?'}"
    head = f"Segment {i} of {count}" if count > 1 else "Workers"
    return f"**{head}**: {times}, executor `{s.get('executor') or '?'}`, {ended}."


def _flat(manifest: dict) -> pd.DataFrame:
    top = {k: v for k, v in manifest.items() if k not in NOT_FLAT}
    executor = {k: v for k, v in (manifest.get("executor") or {}).items() if k not in EXECUTOR_INTERNAL}
    if executor:
        top["executor"] = executor
    rows = []
    flat = pd.json_normalize(top, sep=".").iloc[0].items() if top else []
    for key, value in flat:
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        rows.append((key, "" if value is None or value != value else str(value)))
    if manifest.get("skipped"):
        rows.append(("skipped cells", f"{len(manifest['skipped'])} (listed in manifest.json)"))
    return pd.DataFrame(rows, columns=["key", "value"])


def environment(run: Run) -> list:
    if not run.manifest:
        return [Heading("Environment"), Para("No manifest.json in this run directory.")]
    blocks: list = [Heading("Environment")]
    parts = segments(run.manifest)
    for i, s in enumerate(parts, 1):
        workers = [w for w in s.get("workers") or [] if isinstance(w, dict)]
        blocks.append(Para(_segment_line(i, len(parts), s)))
        if workers:
            blocks.append(Table(workers_table(workers)))
        else:
            blocks.append(Para("No workers recorded for it."))
    blocks += [Heading("Versions and settings", 3), Table(_flat(run.manifest), note="From `manifest.json`.")]
    return blocks
