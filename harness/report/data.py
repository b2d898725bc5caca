"""A run directory read back for reporting: records, trajectories, manifest and config.

Reports only read, and only through the run store (`harness.runs.store`), which reads a run that
is going, was killed or finished alike: records.parquet when it is current, else records.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..runs import store
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
    config: dict = field(default_factory=dict)

    @property
    def catalog(self) -> Catalog:
        """What the run's methods, patterns and problems declared of themselves."""
        return Catalog.of_run(self.manifest)

    @cached_property
    def cost_models(self) -> list:
        """Each method's cost model per shape family (costmodel.py), fitted once per report."""
        from .costmodel import cost_models

        problems = problem_rows(self.records)
        return cost_models(problems, self.catalog.baseline(problems["method"]))

    @property
    def run_id(self) -> str:
        ids = self.records["run_id"].dropna().unique() if len(self.records) else []
        return str(ids[0]) if len(ids) else self.path.name

    @property
    def config_name(self) -> str | None:
        name = self.config.get("name") or (self.manifest.get("run") or {}).get("config_name")
        return str(name) if name else None

    @property
    def plugins(self) -> list[str]:
        """The plugin files the run was made with: absolute paths, as its config.yaml holds them."""
        return [str(p) for p in self.config.get("plugins") or []]

    @property
    def planned(self) -> int | None:
        """How many cells the run set out to measure, from its manifest."""
        cells = (self.manifest.get("run") or {}).get("cells")
        return int(cells) if isinstance(cells, (int, float)) else None

    @property
    def state(self) -> str:
        """'finished', 'interrupted' (Ctrl-C), or 'unfinished' (still going, or killed): from the
        last segment of a resumed run where the manifest has segments, else from its top level."""
        segments = self.manifest.get("segments") or []
        last = segments[-1] if segments and isinstance(segments[-1], dict) else self.manifest
        if last.get("interrupted"):
            return "interrupted"
        return "finished" if last.get("finished_at") else "unfinished"


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Every record column present, numbers as floats (None -> NaN), flags as object True/False/None.

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


def read_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory")
    run = store.RunStore(run_dir)
    records = normalize(store.load(run_dir))
    return Run(
        path=run_dir,
        records=records,
        trajectories=store.load_trajectories(run_dir),
        manifest=_or_empty(run.manifest),
        config=_or_empty(run.config) or {},
    )


def _or_empty(read) -> dict:
    """What `read` gives, or {} where the file is missing (a run directory copied in part)."""
    try:
        return read() or {}
    except FileNotFoundError:
        return {}


def problem_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The problems' records without the layers' (`kind` "layer"), whose times are paired with
    their own autograd and reported in the Layers section, not beside a manual gradient."""
    return df[df["kind"] != "layer"] if "kind" in df else df
