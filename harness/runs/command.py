"""`gradbench run`: a config's cells through an executor into a run directory, stoppable by
Ctrl-C at any moment (exit 130, the finished cells kept, the command that resumes printed).

Each invocation, the first and every `--resume`, is a segment of the run, recorded in
manifest.json as {started_at, finished_at, interrupted, executor, workers: [rows]}.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from ..gpu import local_devices
from ..invocation import gradbench_command
from ..schema import SIZE_NAMES, STATUSES
from . import sigint
from .config import load_config
from .efficiency import sweep_efficiency
from .errors import BadInput
from .eta import family_cost
from .executor import executor_kinds
from .grid import Grid, expand
from .store import RunStore

DEFAULT_EXECUTOR = "ray"
__all__ = ["DEFAULT_EXECUTOR", "BadInput", "cmd_run"]


def cmd_run(args) -> int:
    config = load_config(args.config)
    kind = _executor_kind(args)
    store = _open_resumed(args.resume, config) if args.resume else None
    done = store.done_ids() if store else set()
    if args.dry_run:
        _print_dry_run(config, _grid(config, args, local_devices()), done)
        return 0

    started_at, executor, interrupted = _now(), None, False
    try:
        executor = _build(kind, args, config)
        try:
            executor.start()
        except ConnectionError as exc:
            raise BadInput(f"--address {args.address}: cannot connect: {exc}") from None
        sigint.ensure()  # starting Ray may have replaced the handler or swallowed a Ctrl-C
        available = tuple(executor.devices()) or ("cpu",)
        grid = _grid(config, args, available)
        with sigint.held():  # a run directory is whole (config, manifest) or not there
            if store is None:
                store = _create_store(args, config, grid, executor, ", ".join(available))
            _begin_segment(store, started_at, executor)
        todo = run_order(Grid([c for c in grid.cells if c.cell_id not in done], []).families, config.timing())
        print(f"run {store.dir}: {sum(map(len, todo))} of {len(grid.cells)} cells to run", file=sys.stderr)
        _execute(executor, store, todo, config)
    except KeyboardInterrupt:
        sigint.take()
        interrupted = True
    finally:
        with sigint.held(then_raise=False):  # a second Ctrl-C must not tear the shutdown
            rows = _worker_rows(executor)
            if executor is not None:
                with contextlib.suppress(Exception):  # a Ray stopped half-way may fail to stop
                    executor.close()

    with sigint.held(then_raise=False):  # nor the parquet files, nor the summary
        if store is None:
            print("gradbench: interrupted before anything was written", file=sys.stderr)
            return 130
        interrupted = interrupted or sigint.received()
        records = store.finish()
        counts = records["status"].value_counts().to_dict() if len(records) else {}
        efficiency = sweep_efficiency(records)
        _end_segment(store, rows, interrupted)
        store.update_manifest(
            finished_at=_now(), interrupted=interrupted, status_counts=counts, efficiency=efficiency
        )
        _print_summary(records, store.dir)
        _print_efficiency(efficiency)
        if interrupted or sigint.received():
            print(f"interrupted; resume with:\n  {_resume_command(args, store.dir)}", file=sys.stderr)
            return 130
    return 1 if args.strict and (records["status"] != "ok").any() else 0


def _executor_kind(args):
    """The registered executor asked for, after checking the flags given belong to it."""
    kinds = executor_kinds()
    kind = kinds[args.executor]
    for other in kinds.values():
        for option in other.options:
            value = getattr(args, option.dest, None)
            if value is None:
                continue
            if option.flag not in {o.flag for o in kind.options}:
                raise BadInput(f"{option.flag}: only with --executor {other.name}")
            if option.minimum is not None and value < option.minimum:
                raise BadInput(f"{option.flag}: must be at least {option.minimum}, got {value}")
    return kind


def _build(kind, args, config):
    try:
        return kind.build(args, config)
    except ImportError as exc:
        raise BadInput(f"--executor {kind.name}: not available ({exc})") from None
    except ValueError as exc:  # flags that contradict each other
        raise BadInput(f"--executor {kind.name}: {exc}") from None


def _grid(config, args, available: tuple[str, ...]) -> Grid:
    if args.device and args.device not in available:
        raise BadInput(f"--device {args.device}: no worker has a {args.device} device here")
    return expand(config, available, device=args.device)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _open_resumed(run_dir: Path, config) -> RunStore:
    try:
        store = RunStore.open(run_dir)
    except FileNotFoundError as exc:
        raise BadInput(f"--resume {run_dir}: {exc}") from None
    made_by = store.manifest().get("run", {}).get("config_hash")
    if made_by != config.hash:
        raise BadInput(
            f"{config.path}: config hash {config.hash} is not the run's {made_by}: resume with the config "
            f"the run was made from ({run_dir / 'config.yaml'} is a copy)"
        )
    return store


def _create_store(args, config, grid: Grid, executor, device: str) -> RunStore:
    from ..env import manifest

    run = {
        "config": str(config.path),
        "config_name": config.name,
        "config_hash": config.hash,
        "executor": args.executor,
        "device": device,
        "created_at": _now(),
        "cells": len(grid.cells),
        "families": len(grid.families),
        "skipped": len(grid.skipped),
    }
    skipped = [
        {"cell_id": c.cell_id, **{k: v for k, v in asdict(c).items() if v is not None}, "reason": why}
        for c, why in grid.skipped
    ]
    info = {**manifest(), "run": run, "executor": executor.describe(), "segments": [], "skipped": skipped}
    info.update(grid.declared())
    try:
        return RunStore.create(args.out, config.name, config.hash, config.resolved(), info)
    except OSError as exc:
        why = exc.strerror or exc
        raise BadInput(f"--out {args.out}: cannot write a run directory there: {why}") from None


# --- segments: what ran where, invocation by invocation -----------------------------------------


def _worker_rows(executor) -> list[dict]:
    """Plain rows: scalars only, one per worker that came up."""
    if executor is None:
        return []
    scalar = (str, int, float, bool, type(None))
    return [{k: v for k, v in row.items() if isinstance(v, scalar)} for row in executor.worker_rows()]


def _begin_segment(store: RunStore, started_at: str, executor) -> None:
    segment = {
        "started_at": started_at,
        "finished_at": None,
        "interrupted": None,
        "executor": executor.name,
        "workers": _worker_rows(executor),
    }
    manifest = store.manifest()
    resumed = {"resumed": [*manifest.get("resumed", []), started_at]} if manifest.get("segments") else {}
    store.update_manifest(segments=[*manifest.get("segments", []), segment], **resumed)


def _end_segment(store: RunStore, rows: list[dict], interrupted: bool) -> None:
    segments = store.manifest().get("segments") or []
    if not segments or segments[-1]["finished_at"] is not None:
        return  # stopped before this segment began
    segments[-1].update(finished_at=_now(), interrupted=interrupted, workers=rows or segments[-1]["workers"])
    store.update_manifest(segments=segments)


# --- running, with progress -------------------------------------------------------------------


def run_order(families: list[list], timing) -> list[list]:
    """Families whose method compiles first, then the rest longest first (their expected cost),
    in config order among equals. A compile is the largest and least predictable cost of a run
    (2 to 12 s on a CPU, as torch's compile cache is warm or cold), so the time left learns it
    early instead of at half way; and longest first leaves the workers' last families short,
    so fewer workers idle at the end and the time left ends on families it predicts well."""

    def key(family):
        cost = family_cost(family, timing)
        return (cost.compile_key is None, -(cost.fixed_s + cost.data_s))

    return sorted(families, key=key)


def _execute(executor, store: RunStore, families, config) -> None:
    """Run the families, appending each one's records as it finishes."""
    from .progress import RunProgress, worker_count

    with RunProgress(families, config.timing(), worker_count(executor)) as progress:

        def on_records(records: list[dict]) -> None:
            with sigint.held():  # a family's records are written whole or not at all
                store.append(records)
            progress.finished(records)

        # each family needs a worker of its cells' device (queue.py matches them)
        executor.run(families, on_records, config.timing(), {"run_id": store.run_id})
    sigint.check()


def _resume_command(args, run_dir: Path) -> str:
    words = [*gradbench_command(), "run", str(args.config), "--resume", str(run_dir)]
    if args.executor != DEFAULT_EXECUTOR:
        words += ["--executor", args.executor]
    for option in executor_kinds()[args.executor].options:
        value = getattr(args, option.dest, None)
        if value is not None:
            words += [option.flag, str(value)]
    if args.device is not None:
        words += ["--device", args.device]
    if args.strict:
        words.append("--strict")
    return shlex.join(words)


def _print_efficiency(efficiency: dict) -> None:
    """One line: the share of the workers' time spent measuring, and set-up per family."""
    workers = efficiency["workers"]
    if not workers or efficiency["overall"] is None:
        return
    setup = sum(w["setup_s"] for w in workers) / max(1, sum(w["families"] for w in workers))
    each = ", ".join(f"{w['worker'] or 'local'} {w['efficiency']:.0%}" for w in workers if w["efficiency"])
    print(
        f"sweep efficiency: {efficiency['overall']:.0%} of the workers' time inside timed measurement "
        f"({each}); set-up {setup * 1e3:.3g} ms per family"
    )


def _describe_cell(cell) -> str:
    sizes = " ".join(f"{s}={getattr(cell, s)}" for s in SIZE_NAMES if getattr(cell, s) is not None)
    train = f" steps={cell.steps} lr={cell.lr}" if cell.mode == "train" else ""
    return f"{cell.problem} {sizes} {cell.dtype} {cell.pattern} {cell.mode}{train}".replace("  ", " ")


def _print_dry_run(config, grid: Grid, done: set[str]) -> None:
    todo = [c for c in grid.cells if c.cell_id not in done]
    print(f"{config.path}: {config.name}, hash {config.hash}")
    print(f"{len(todo)} cells to run in {len(Grid(todo, []).families)} families", end="")
    print(f" ({len(grid.cells) - len(todo)} already done)" if done else "", end="")
    print(f"; {len(grid.skipped)} combinations skipped")
    for family in Grid(todo, []).families:
        print(f"  {_describe_cell(family[0])}: {' '.join(c.method for c in family)}")
    if grid.skipped:
        print("skipped:")
        for cell, reason in grid.skipped:
            print(f"  {_describe_cell(cell)} {cell.method}: {reason}")


def _print_summary(records, run_dir: Path, shown: int = 20) -> None:
    counts = records["status"].value_counts() if len(records) else {}
    print("cells: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES))
    for status in STATUSES[1:]:
        what = "diagnosis" if status == "mismatch" else "error"
        bad = records[records["status"] == status]
        if len(bad):
            print(f"{status}:")
        for _, r in bad.head(shown).iterrows():
            sizes = " ".join(f"{s}={int(r[s])}" for s in SIZE_NAMES if r.get(s) is not None and r[s] == r[s])
            where = f"{r['problem']} {sizes} {r['dtype']} {r['pattern']} {r['mode']} {r['method']}"
            err = f" rel_err {r['rel_err']:.2e} (tol {r['tol']:.1e})" if status == "mismatch" else ""
            print(f"  {where}:{err} {r[what]}")
        if len(bad) > shown:
            print(f"  ... and {len(bad) - shown} more")
    print(f"records: {run_dir}")
    print(f"report with: {shlex.join([*gradbench_command(), 'report', str(run_dir)])}")
