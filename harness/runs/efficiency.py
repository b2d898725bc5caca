"""The harness's own efficiency, from a run's records: how much of each worker's wall time went
into timed measurement, and what making each family's data and reference cost.

    efficiency = sum over the worker's families of family_timed_s / (last finish - first start)

The rest is set-up (data, the float64 reference, agreement checks, warm-up, compiles), the queue
and the transfer of records.
"""

from __future__ import annotations

import pandas as pd

from ..schema import group

# the identity of a family: a cell's identity without its method (and its id, which has it)
FAMILY = [c for c in group("identity") if c not in ("run_id", "cell_id", "method", "k")] + ["device"]


def sweep_efficiency(records: pd.DataFrame) -> dict:
    """{"workers": [{worker, families, wall_s, timed_s, setup_s, efficiency}], "overall": x}."""
    need = {"family_timed_s", "setup_s", "started_at", "finished_at", "worker"}
    if records.empty or not need <= set(records.columns):
        return {"workers": [], "overall": None}
    df = records.copy()
    df["worker"] = df["worker"].map(lambda w: "" if w is None or w != w else str(w))
    keys = [c for c in FAMILY if c in df.columns]
    families = df.groupby(["worker", *keys], dropna=False, sort=False).agg(
        timed_s=("family_timed_s", "first"),
        setup_s=("setup_s", "first"),
        started=("started_at", "min"),
        finished=("finished_at", "max"),
    )
    rows = []
    for worker, f in families.groupby(level="worker", sort=True):
        start = pd.to_datetime(f["started"], utc=True, format="ISO8601").min()
        end = pd.to_datetime(f["finished"], utc=True, format="ISO8601").max()
        wall = (end - start).total_seconds()
        timed = float(f["timed_s"].fillna(0).sum())
        rows.append(
            {
                "worker": worker,
                "families": int(len(f)),
                "wall_s": round(wall, 3),
                "timed_s": round(timed, 3),
                "setup_s": round(float(f["setup_s"].fillna(0).sum()), 3),
                "setup_s_per_family": round(float(f["setup_s"].fillna(0).mean()), 4),
                "efficiency": round(timed / wall, 3) if wall > 0 else None,
            }
        )
    wall = sum(r["wall_s"] for r in rows)
    overall = round(sum(r["timed_s"] for r in rows) / wall, 3) if wall > 0 else None
    return {"workers": rows, "overall": overall}
