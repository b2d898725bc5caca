"""Whether the timings of two runs can be compared: the settings a time depends on beyond the
cell (device model, threads per worker, executor, torch version, config), read from each run's
records and manifest; `gradbench compare` names every one the runs differ in, first."""

from __future__ import annotations

from .data import Run


def _run_settings(run: Run) -> dict[str, str]:
    """What a timing depends on beyond the cell: device model, threads per worker, executor,
    torch version, config hash ('' where the run does not say)."""
    r, man = run.records, run.manifest
    timed = r[r["time_median_s"].notna()] if "time_median_s" in r else r
    info = man.get("run") if isinstance(man.get("run"), dict) else {}
    executor = man.get("executor")
    executor = executor.get("executor") if isinstance(executor, dict) else executor
    versions = man.get("versions") if isinstance(man.get("versions"), dict) else {}

    def values(col):
        vals = sorted(
            {str(int(v) if isinstance(v, float) and v.is_integer() else v) for v in timed[col].dropna()}
        )
        return ", ".join(vals)

    return {
        "device model": values("device_name") if "device_name" in timed else "",
        "threads per worker": values("threads") if "threads" in timed else "",
        "executor": str(info.get("executor") or executor or ""),
        "torch": str(versions.get("torch") or ""),
        "config hash": str(info.get("config_hash") or ""),
    }


def incomparable(base: Run, new: Run) -> list[str]:
    """One line per setting the two runs differ in that makes their timings incomparable."""
    sb, sn = _run_settings(base), _run_settings(new)
    return [
        f"{what}: {sb[what]} (base) vs {sn[what]} (new)"
        for what in sb
        if sb[what] and sn[what] and sb[what] != sn[what]
    ]
