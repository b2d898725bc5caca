"""How measurements fill a record (its columns are defined in schema.py)."""

from __future__ import annotations

import os
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone

import torch

from .agreement import Agreement
from .env import device_name
from .measure import paired_ratio, summarize
from .problems.base import Tensors

PREVIEW = 8  # values of the gradient and the output kept in each record


def identity(cell) -> dict:
    """The identity columns of a cell (a harness.Cell): its fields, its id and its pattern's k."""
    return {"cell_id": cell.cell_id, **asdict(cell), "k": cell.k, "kind": cell.kind}


def where_columns(device: torch.device, threads: int, context: dict | None = None) -> dict:
    """The columns of where a family ran, which each of its records holds; `context` (the
    executor's run_id, gpu_id, node, worker) over the defaults."""
    return {
        "device": device.type,
        "device_name": device_name(device),
        "threads": threads,
        "gpu_id": None,
        "node": None,
        "worker": None,
        "attempts": 1,
        **(context or {}),
    }


def finish_family(records: dict, cells, began: float) -> list[dict]:
    """A family's records in the cells' order, each with its end, the family's wall time since
    `began` (perf_counter), and `mismatch` for an ok cell that disagrees."""
    finished, wall_s = now(), time.perf_counter() - began
    for r in records.values():
        r["finished_at"] = r["finished_at"] or finished
        r["family_wall_s"] = wall_s
        if r["status"] == "ok" and r.get("agree") is False:
            r["status"] = "mismatch"
    return [records[c.method] for c in cells]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def preview(t: Tensors | torch.Tensor) -> list[float]:
    flat = (
        torch.cat([v.detach().reshape(-1)[:PREVIEW].cpu().double() for v in t.values()])
        if isinstance(t, dict)
        else t.detach().reshape(-1)[:PREVIEW].cpu().double()
    )
    return [float(x) for x in flat[:PREVIEW]]


def flat_params(p: Tensors) -> list[float]:
    return [float(x) for x in torch.cat([v.detach().reshape(-1).cpu().double() for v in p.values()])]


def status_of(exc: BaseException) -> str:
    oom = isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)
    return "oom" if oom else "error"


def _library_roots() -> tuple[str, ...]:
    roots = set()
    for base in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for kind in ("stdlib", "platstdlib", "purelib", "platlib"):
            path = sysconfig.get_path(kind, vars={"base": base, "platbase": base})
            if path:
                roots.add(os.path.realpath(path) + os.sep)
    return tuple(roots)


_LIBRARIES = _library_roots()


def raised_at(exc: BaseException) -> str | None:
    """`file.py:42`: the innermost frame of exc's traceback in the project's or a plugin's code,
    not in torch, numpy or the standard library, where whoever reads the error can act on it."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = frame.filename
        if path.startswith("<"):  # generated code: torch.compile's, exec'd strings
            continue
        full = os.path.realpath(path)
        parts = set(full.split(os.sep))
        if full.startswith(_LIBRARIES) or {"site-packages", "dist-packages"} & parts:
            continue
        return f"{os.path.basename(path)}:{frame.lineno}"
    return None


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (torch's messages run over several, with hints)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def fail(record: dict, exc: BaseException) -> None:
    # where the user can act: the line the exception names (a Function's backward, for an error
    # of autograd's engine), the innermost project frame of its cause (the user's backward, for
    # an error the harness re-raised naming its Function), else of the exception itself
    where = getattr(exc, "where", None) or (exc.__cause__ is not None and raised_at(exc.__cause__))
    where = where or raised_at(exc)
    error = one_line(exc) + (f" ({where})" if where else "")
    record.update(status=status_of(exc), error=error, finished_at=now())
    if record["status"] == "oom" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def agreement_fields(a: Agreement, preview: list) -> dict:
    """The verdict: `agree` is the cell's dtype within its tolerance and, where the method has a
    float64 twin (`f64_checked`), its formula right in float64; for a user's Function, its
    forward's loss right and its backward scaled by grad_output too."""
    fields = {
        "rel_err": a.rel_err,
        "max_abs_err": a.max_abs_err,
        "scale": a.scale,
        "cosine": a.cosine,
        "agree": a.agree,
        "diagnosis": a.diagnosis,
        "f64_rel_err": a.twin.rel_err if a.twin is not None else None,
        "f64_checked": a.twin is not None,
        "f64_note": a.twin_skipped,
        "grad_preview": preview,
    }
    if a.forward is not None:
        fields.update(
            loss_value=a.forward.value,
            loss_reference=a.forward.reference,
            loss_rel_err=a.forward.rel_err,
            loss_tol=a.forward.tol,
            loss_agree=a.forward.agree,
        )
    if a.grad_output is not None:
        fields["grad_output_scale"] = a.grad_output.scale
    return fields


def timing_fields(
    records: dict,
    samples: dict[str, list[float]],
    floor: int | None,
    forward_samples: list[float] | None,
    baseline: str | None,
) -> None:
    """The raw per-round per-call times of each method (and of the loss alone), and what is
    derived from them: statistics (measure.summarize), the ratio paired round by round with the
    baseline method's (`vs_manual`), the costs. `floor` is the least bytes a gradient must move."""
    manual = samples.get(baseline) if baseline else None
    forward_s = summarize(forward_samples)["time_median_s"] if forward_samples else None
    for name, times in samples.items():
        stats = summarize(times)
        ratio = paired_ratio(times, manual) if manual is not None else (None, None, None)
        t = stats["time_median_s"]
        records[name].update(
            stats,
            time_samples_s=[float(x) for x in times],
            forward_samples_s=[float(x) for x in forward_samples] if forward_samples else None,
            vs_manual=ratio[0],
            vs_manual_lo=ratio[1],
            vs_manual_hi=ratio[2],
            forward_median_s=forward_s,
            cost_ratio=t / forward_s if forward_s else None,
            achieved_gbps=floor / t / 1e9 if floor and t > 0 else None,
        )


def floor_fractions(records: dict, read_gbps: Callable[[], float]) -> None:
    """Each achieved_gbps over the read floor (`read_gbps()`, called only when a record has one)."""
    if not any(r.get("achieved_gbps") for r in records.values()):
        return
    read = read_gbps()
    for r in records.values():
        if r.get("achieved_gbps") and read > 0:
            r["floor_fraction"] = r["achieved_gbps"] / read
