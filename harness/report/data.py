"""A run directory read back for reporting: records, trajectories, manifest and config name.

Reports only read. The store (`harness.runs.store.load`) is the one reader of record files; when
it is not importable (a bare checkout, or a run dir copied from elsewhere) the files of the
DESIGN layout are read directly: records.parquet, else records.jsonl (the truth while a run is
going, last line per cell wins).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..schema import BOOLEAN, COLUMNS, NUMERIC
from .catalog import Catalog

FAILED = ("error", "oom", "timeout")  # statuses of cells that produced no measurement


@dataclass
class Run:
    """What a report needs from one run directory."""

    path: Path
    records: pd.DataFrame
    trajectories: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    config_name: str | None = None

    @property
    def catalog(self) -> Catalog:
        """What the run's methods, patterns and problems declared of themselves."""
        return Catalog.of_run(self.manifest)

    @property
    def run_id(self) -> str:
        ids = self.records["run_id"].dropna().unique() if len(self.records) else []
        return str(ids[0]) if len(ids) else self.path.name


def _store():
    """The run store module, or None in a checkout without it (then the files are read here)."""
    if importlib.util.find_spec("harness.runs.store") is None:
        return None
    from ..runs import store

    return store


def _read_records(run_dir: Path) -> pd.DataFrame:
    store = _store()
    if store is not None:
        return store.load(run_dir)
    if (run_dir / "records.parquet").exists():
        return pd.read_parquet(run_dir / "records.parquet")
    jsonl = run_dir / "records.jsonl"
    if not jsonl.exists():
        raise FileNotFoundError(f"{run_dir}: no records.parquet or records.jsonl")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    return df.drop_duplicates("cell_id", keep="last") if "cell_id" in df else df


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Every DESIGN column present, numbers as floats (None -> NaN), flags as object True/False/None.

    Records of failed cells hold None where a number would be; after this every summary and
    plot can use NaN-aware pandas operations without special cases.
    """
    df = df.copy()
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in BOOLEAN:
        df[col] = df[col].map(lambda v: None if v is None or v != v else bool(v)).astype(object)
    for col in ("problem", "method", "pattern", "dtype", "mode", "status", "data"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["status"] = df["status"].fillna("ok")
    df["mode"] = df["mode"].fillna("gradient")
    df["pattern"] = df["pattern"].fillna("full")
    return df.reset_index(drop=True)


def _read_trajectories(run_dir: Path, records: pd.DataFrame) -> pd.DataFrame:
    store = _store()
    if store is not None and hasattr(store, "load_trajectories"):
        return store.load_trajectories(run_dir)
    path = run_dir / "trajectories.parquet"
    if path.exists():
        return pd.read_parquet(path)
    # records that still carry their trajectory inline (as run_family returns them)
    if "trajectory" in records:
        rows = [row for t in records["trajectory"].dropna() for row in t]
        if rows:
            return pd.DataFrame(rows)
    return pd.DataFrame(columns=["cell_id", "step", "loss", "params"])


def _config_name(run_dir: Path, manifest: dict) -> str | None:
    config = run_dir / "config.yaml"
    if config.exists():
        try:
            import yaml

            name = (yaml.safe_load(config.read_text()) or {}).get("name")
            if name:
                return str(name)
        except Exception:  # a report must not die on a config it only reads a name from
            pass
    # the store's manifest keeps it under "run"; older or hand-made ones at the top
    nested = [manifest.get(k) for k in ("run", "config")]
    names = [manifest.get("config_name")] + [
        v.get("config_name") or v.get("name") for v in nested if isinstance(v, dict)
    ]
    return next((str(n) for n in names if n), None)


def read_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory")
    records = normalize(_read_records(run_dir))
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return Run(
        path=run_dir,
        records=records,
        trajectories=_read_trajectories(run_dir, records),
        manifest=manifest,
        config_name=_config_name(run_dir, manifest),
    )
