"""The run directory: records streamed to disk as families finish, parquet at the end, resume.

    results/<UTC time>-<config name>-<config hash>/
        config.yaml           the resolved config
        manifest.json         environment, executor, device, cell counts, skipped cells
        records.jsonl         one line per finished cell, fsync'd per family: the truth while running
        trajectories.jsonl    per-step rows of train-mode cells, written before their records
        records.parquet       written atomically at the end (and on Ctrl-C)
        trajectories.parquet  likewise
    results/latest -> the newest run

A SIGKILL can tear the last line of a jsonl file; readers skip it and `open` cuts it off before
appending, so a resumed run never glues a new line onto half an old one.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ..schema import COLUMNS, TRAJECTORY_COLUMNS

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
RECORDS_JSONL = "records.jsonl"
TRAJECTORIES_JSONL = "trajectories.jsonl"
RECORDS_PARQUET = "records.parquet"
TRAJECTORIES_PARQUET = "trajectories.parquet"


class RunStore:
    """One run directory, open for appending records."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self._records = self._trajectories = None

    @property
    def run_id(self) -> str:
        return self.dir.name

    # -- making and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, out: str | Path, name: str, config_hash: str, config: dict, manifest: dict) -> RunStore:
        """A new run directory under `out`, with its config and manifest; `out/latest` points to it.
        Raises OSError when `out` cannot be written."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        base = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{name}-{config_hash}"
        for i in itertools.count():
            run_dir = out / (base if i == 0 else f"{base}.{i}")  # two runs in one second
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                continue
        store = cls(run_dir)
        _atomic_write(run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
        store.write_manifest({**manifest, "run_id": store.run_id})
        for name_ in (RECORDS_JSONL, TRAJECTORIES_JSONL):
            (run_dir / name_).touch()
        _point_latest(out, run_dir.name)
        return store

    @classmethod
    def open(cls, run_dir: str | Path) -> RunStore:
        """An existing run directory, its jsonl files cut back to their last whole line."""
        run_dir = Path(run_dir)
        if not (run_dir / CONFIG).is_file() or not (run_dir / MANIFEST).is_file():
            raise FileNotFoundError(f"{run_dir}: not a run directory (no {CONFIG} or {MANIFEST})")
        for name in (RECORDS_JSONL, TRAJECTORIES_JSONL):
            _cut_torn_tail(run_dir / name)
        return cls(run_dir)

    def config(self) -> dict:
        return yaml.safe_load((self.dir / CONFIG).read_text())

    def manifest(self) -> dict:
        return json.loads((self.dir / MANIFEST).read_text())

    def write_manifest(self, manifest: dict) -> None:
        _atomic_write(self.dir / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")

    def update_manifest(self, **fields) -> None:
        self.write_manifest({**self.manifest(), **fields})

    def done_ids(self) -> set[str]:
        """Cells with a record: a resumed run skips them."""
        return {r["cell_id"] for r in read_jsonl(self.dir / RECORDS_JSONL)}

    # -- streaming -------------------------------------------------------------------------
    def append(self, records: Iterable[dict]) -> None:
        """Append one family's records, durably: written, flushed and fsync'd before returning.
        Trajectories go first, so a cell that has a record always has its trajectory."""
        records = [dict(r) for r in records]
        steps = [row for r in records for row in (r.pop("trajectory", None) or [])]
        if self._records is None:
            self._records = open(self.dir / RECORDS_JSONL, "a")  # noqa: SIM115 (held for the run)
            self._trajectories = open(self.dir / TRAJECTORIES_JSONL, "a")  # noqa: SIM115
        if steps:
            _write_lines(self._trajectories, steps)
        _write_lines(self._records, records)

    def close(self) -> None:
        for f in (self._records, self._trajectories):
            if f is not None:
                f.close()
        self._records = self._trajectories = None

    def finish(self) -> pd.DataFrame:
        """Write records.parquet and trajectories.parquet from what the jsonl files hold."""
        self.close()
        records = load(self.dir, prefer_parquet=False)
        _atomic_parquet(records, self.dir / RECORDS_PARQUET)
        _atomic_parquet(load_trajectories(self.dir, prefer_parquet=False), self.dir / TRAJECTORIES_PARQUET)
        return records


# -- reading ---------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a jsonl file; a torn last line (a writer killed mid-line) is skipped."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # no newline after it: it was being written
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return rows


def load(run_dir: str | Path, prefer_parquet: bool = True) -> pd.DataFrame:
    """The records of a run as a DataFrame, one row per cell (the last record of a cell wins).

    Reads records.parquet when it is at least as new as records.jsonl, else the jsonl itself,
    so a run that is going, was killed or is being resumed reads as far as it got."""
    run_dir = Path(run_dir)
    jsonl, parquet = run_dir / RECORDS_JSONL, run_dir / RECORDS_PARQUET
    if prefer_parquet and parquet.exists() and (not jsonl.exists() or _newer_or_same(parquet, jsonl)):
        return _lists_back(pd.read_parquet(parquet))
    if not jsonl.exists():
        raise FileNotFoundError(f"{run_dir}: no {RECORDS_JSONL} or {RECORDS_PARQUET}: not a run directory")
    rows = read_jsonl(jsonl)
    frame = pd.DataFrame(rows, columns=_columns(rows, COLUMNS))
    return frame.drop_duplicates("cell_id", keep="last").reset_index(drop=True)


def load_trajectories(run_dir: str | Path, prefer_parquet: bool = True) -> pd.DataFrame:
    """Per-step rows of the train-mode cells: cell_id, step, loss (before the step), params (after)."""
    run_dir = Path(run_dir)
    jsonl, parquet = run_dir / TRAJECTORIES_JSONL, run_dir / TRAJECTORIES_PARQUET
    if prefer_parquet and parquet.exists() and (not jsonl.exists() or _newer_or_same(parquet, jsonl)):
        return _lists_back(pd.read_parquet(parquet))
    rows = read_jsonl(jsonl)
    frame = pd.DataFrame(rows, columns=_columns(rows, TRAJECTORY_COLUMNS))
    # a cell killed after its trajectory but before its record ran again: keep its last rows
    return frame.drop_duplicates(["cell_id", "step"], keep="last").reset_index(drop=True)


# -- helpers ---------------------------------------------------------------------------------


def _columns(rows: list[dict], known: Iterable[str]) -> list[str]:
    known = list(known)
    extra = sorted({k for r in rows for k in r} - set(known))
    return known + extra  # known columns first and in order; added ones after


def _newer_or_same(a: Path, b: Path) -> bool:
    return a.stat().st_mtime_ns >= b.stat().st_mtime_ns


def _lists_back(frame: pd.DataFrame) -> pd.DataFrame:
    # parquet lists come back as numpy arrays; records hold lists (as the jsonl gives them)
    for col in frame.columns[frame.dtypes.map(lambda t: t is np.dtype(object))]:
        if frame[col].map(lambda v: isinstance(v, np.ndarray)).any():
            frame[col] = frame[col].map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
    return frame


def _write_lines(f, rows: list[dict]) -> None:
    f.write("".join(json.dumps(r, default=_jsonable) + "\n" for r in rows))
    f.flush()
    os.fsync(f.fileno())


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _cut_torn_tail(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(_arrow(frame), tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as an arrow table; an object column that mixes types (a gpu id that is an int
    on one worker and a str on another) is stored as strings rather than failing the run."""
    columns = {}
    for col in frame.columns:
        values = frame[col].tolist()
        try:
            columns[col] = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[col] = pa.array([None if v is None else str(v) for v in values])
    return pa.table(columns)


def _point_latest(out: Path, run_id: str) -> None:
    link, tmp = out / "latest", out / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(run_id, tmp)  # relative: the results folder can move
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)  # no symlinks here: `latest` is a convenience, not the record
