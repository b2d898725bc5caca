"""The `gradbench` command: run | report | compare | list.

Exit codes: 0 done; 1 a --strict run with failed cells, or a regression found by compare; 2 bad
input (config, arguments, paths), told in one line that names the file and the field; 130 a run
stopped by Ctrl-C, after keeping every finished cell and printing the command that resumes it.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from .runs.config import ConfigError, load_config
from .runs.efficiency import sweep_efficiency
from .runs.grid import Grid, expand
from .runs.store import RunStore

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


class BadInput(Exception):
    """An argument or path the user must fix; one line."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .plugins import PluginError

    try:
        return args.command(args)
    except (BadInput, ConfigError, PluginError) as exc:
        print(f"gradbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


DEFAULT_EXECUTOR = "ray"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradbench", description="Hand-written gradients against autograd.")
    sub = p.add_subparsers(required=True, metavar="{run,report,compare,list}")
    run = sub.add_parser("run", help="run the cells of a config into a run directory")
    run.add_argument("config", type=Path, metavar="CONFIG")
    run.add_argument("--out", type=Path, default=Path("results"), help="where run directories go")
    run.add_argument(
        "--executor",
        choices=("ray", "local"),
        default=DEFAULT_EXECUTOR,
        help="ray: one worker per GPU or CPU slot (default); local: in this process, for debugging",
    )
    run.add_argument("--address", help="Ray cluster: auto, ray://host:port (ray only)")
    run.add_argument("--num-gpus", type=int, help="logical GPUs of a fresh local Ray instance (ray only)")
    run.add_argument("--workers", type=int, help="CPU workers when the cluster has no GPU (ray only)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="run only the cells RUN_DIR lacks")
    run.add_argument("--dry-run", action="store_true", help="list the cells and skipped combinations")
    run.add_argument("--strict", action="store_true", help="exit 1 when any cell is not ok")
    run.add_argument(
        "--device", choices=("cpu", "cuda"), help="run every cell there (default: the config's `devices`)"
    )
    run.set_defaults(command=cmd_run)
    report = sub.add_parser("report", help="write report.md, report.html and plots of a run")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.set_defaults(command=cmd_report)
    compare = sub.add_parser("compare", help="time ratios of NEW to BASE, cell by cell; exit 1 on regression")
    compare.add_argument("base", type=Path, metavar="BASE")
    compare.add_argument("new", type=Path, metavar="NEW")
    compare.add_argument("--threshold", type=float, default=1.10)
    compare.set_defaults(command=cmd_compare)
    listing = sub.add_parser("list", help="problems, methods, patterns, dtypes and shipped configs")
    listing.set_defaults(command=cmd_list)
    return p


# --- run ------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    with contextlib.suppress(ValueError):  # Ctrl-C stops a run cleanly even where a shell ignored it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config = load_config(args.config)
    ray_only = {"--address": args.address, "--num-gpus": args.num_gpus, "--workers": args.workers}
    for flag, value in ray_only.items():
        if value is not None and args.executor != "ray":
            raise BadInput(f"{flag}: only with --executor ray")
    store = _open_resumed(args.resume, config) if args.resume else None
    done = store.done_ids() if store else set()
    if args.dry_run:
        _print_dry_run(config, _grid(config, args, _local_devices()), done)
        return 0

    executor = _make_executor(args, config)
    try:
        try:  # a Ray executor finds its devices by starting its workers
            available = _available_devices(executor)
        except ConnectionError as exc:
            raise BadInput(f"--address {args.address}: cannot connect: {exc}") from None
        grid = _grid(config, args, available)
        if store is None:
            store = _create_store(args, config, grid, executor, ", ".join(available))
        else:
            store.update_manifest(resumed=[*store.manifest().get("resumed", []), _now()])
        todo = Grid([c for c in grid.cells if c.cell_id not in done], []).families
        print(f"run {store.dir}: {sum(map(len, todo))} of {len(grid.cells)} cells to run", file=sys.stderr)
        interrupted = _execute(executor, store, todo, config)
    finally:
        executor.close()

    with _sigint_held(then_raise=False):  # a second Ctrl-C must not tear the parquet files
        records = store.finish()
        counts = records["status"].value_counts().to_dict() if len(records) else {}
        efficiency = sweep_efficiency(records)
        store.update_manifest(
            finished_at=_now(), interrupted=interrupted, status_counts=counts, efficiency=efficiency
        )
    _print_summary(records, store.dir)
    _print_efficiency(efficiency)
    if interrupted:
        print(f"interrupted; resume with:\n  {_resume_command(args, store.dir)}", file=sys.stderr)
        return 130
    return 1 if args.strict and (records["status"] != "ok").any() else 0


def _local_devices() -> tuple[str, ...]:
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def _available_devices(executor) -> tuple[str, ...]:
    """The device types the executor's workers have (the CPU always: a GPU run can start CPU
    workers for the cells that run there)."""
    devices = getattr(executor, "devices", None)
    if callable(devices):
        return tuple(devices())
    device = getattr(executor, "device", None)
    return ("cpu", "cuda") if device == "cuda" else ("cpu",)


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


def _make_executor(args, config):
    if args.executor == "local":
        from .runs.local import LocalExecutor

        return LocalExecutor(device=args.device, threads=config.experiment.threads)
    try:
        from .runs.ray_executor import RayExecutor  # imported only when asked for: Ray is heavy
    except ImportError as exc:
        raise BadInput(f"--executor ray: not available ({exc})") from None
    options = dict(
        address=args.address or "local",
        num_gpus=args.num_gpus,
        workers=args.workers,
        threads=config.experiment.threads,
        cell_timeout_s=config.experiment.cell_timeout_s,
    )
    if config.plugin_files:  # workers in other processes import them too
        options["plugins"] = [str(p) for p in config.plugin_files]
    try:
        return RayExecutor(**options)
    except ValueError as exc:  # flags that contradict each other
        raise BadInput(f"--executor ray: {exc}") from None


def _create_store(args, config, grid: Grid, executor, device: str) -> RunStore:
    from .env import manifest

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
    describe = getattr(executor, "describe", None)
    info = {**manifest(), "run": run, "executor": describe() if describe else {}, "skipped": skipped}
    info.update(grid.declared())
    try:
        return RunStore.create(args.out, config.name, config.hash, config.resolved(), info)
    except OSError as exc:
        why = exc.strerror or exc
        raise BadInput(f"--out {args.out}: cannot write a run directory there: {why}") from None


def _execute(executor, store: RunStore, families, config) -> bool:
    """Run the families, appending each one's records as it finishes; True if Ctrl-C stopped it."""
    progress = _progress()
    task = progress.add_task("cells", total=sum(map(len, families)), failed=0)
    with progress:

        def on_records(records: list[dict]) -> None:
            with _sigint_held(then_raise=True):  # a record is written whole or not at all
                store.append(records)
            failed = sum(r["status"] != "ok" for r in records)
            progress.update(task, advance=len(records), failed=progress.tasks[0].fields["failed"] + failed)

        try:
            executor.run(families, on_records, config.timing(), {"run_id": store.run_id})
        except KeyboardInterrupt:
            return True
    return False


@contextlib.contextmanager
def _sigint_held(then_raise: bool):
    """Hold Ctrl-C while the block runs; afterwards raise it (then_raise) or drop it."""
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    except ValueError:  # not the main thread: signals are not ours to hold
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and then_raise:
            raise KeyboardInterrupt


def _resume_command(args, run_dir: Path) -> str:
    words = ["gradbench", "run", str(args.config), "--resume", str(run_dir)]
    for flag in ("executor", "address", "num_gpus", "workers", "device"):
        value = getattr(args, flag)
        if value is not None and not (flag == "executor" and value == DEFAULT_EXECUTOR):
            words += [f"--{flag.replace('_', '-')}", str(value)]
    if args.strict:
        words.append("--strict")
    return shlex.join(words)


def _describe_cell(cell) -> str:
    sizes = " ".join(f"{s}={getattr(cell, s)}" for s in ("n", "d", "h") if getattr(cell, s) is not None)
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


def _progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):  # cells per second, over the last half minute
        def render(self, task):
            return Text(f"{task.speed or 0:.2f} cells/s")

    rate = Rate()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        rate,
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


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


def _print_summary(records, run_dir: Path, shown: int = 20) -> None:
    counts = records["status"].value_counts() if len(records) else {}
    statuses = ("ok", "mismatch", "error", "oom", "timeout")
    print("cells: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in statuses))
    for status in statuses[1:]:
        what = "diagnosis" if status == "mismatch" else "error"
        bad = records[records["status"] == status]
        if len(bad):
            print(f"{status}:")
        for _, r in bad.head(shown).iterrows():
            sizes = " ".join(f"{s}={int(r[s])}" for s in ("n", "d", "h") if r[s] == r[s] and r[s] is not None)
            where = f"{r['problem']} {sizes} {r['dtype']} {r['pattern']} {r['mode']} {r['method']}"
            err = f" rel_err {r['rel_err']:.2e} (tol {r['tol']:.1e})" if status == "mismatch" else ""
            print(f"  {where}:{err} {r[what]}")
        if len(bad) > shown:
            print(f"  ... and {len(bad) - shown} more")
    print(f"records: {run_dir}")


# --- report, compare, list --------------------------------------------------------------------


def _run_dir(path: Path) -> Path:
    if not path.is_dir():
        raise BadInput(f"{path}: no such run directory")
    if not (path / "records.jsonl").exists() and not (path / "records.parquet").exists():
        raise BadInput(f"{path}: not a run directory (no records.jsonl or records.parquet)")
    return path


def cmd_report(args) -> int:
    from .report import write_report

    for path in write_report(_run_dir(args.run_dir)):
        print(path)
    return 0


def cmd_compare(args) -> int:
    from .report import compare_runs

    if args.threshold <= 0:
        raise BadInput(f"--threshold: must be > 0, got {args.threshold}")
    from .report.compare import NothingToCompare

    try:
        result = compare_runs(_run_dir(args.base), _run_dir(args.new), threshold=args.threshold)
    except NothingToCompare as exc:  # one line, exit 2
        raise BadInput(str(exc)) from None
    print(result.text)
    return result.exit_code


def cmd_list(args) -> int:
    from .cell import DTYPES, MODES
    from .methods import get_method, method_names
    from .patterns import pattern_names
    from .problems import get_problem, problem_names

    print("problems (sizes; data sets):")
    for name in problem_names():
        cls = get_problem(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        shape = f"{', '.join(cls.sizes) or '-'}; {', '.join(cls.datasets)}"
        print(f"  {name:<14} {shape:<22} {doc[0] if doc else ''}")
    print("methods:")
    for name in method_names():
        doc = (type(get_method(name)).__doc__ or "").strip().splitlines()
        print(f"  {name:<14} {doc[0] if doc else ''}")
    print(f"patterns: {', '.join(pattern_names())}")
    print(f"dtypes: {', '.join(DTYPES)}")
    print(f"modes: {', '.join(MODES)}")
    folder = Path("experiments") if Path("experiments").is_dir() else EXPERIMENTS
    print(f"configs ({folder}):")
    for path in sorted(folder.glob("*.yaml")):
        try:
            config = load_config(path)
            grid = expand(config, _local_devices())
            print(f"  {path.name:<20} {len(grid.cells)} cells: {', '.join(config.experiment.problems)}")
        except ConfigError as exc:
            print(f"  {path.name:<20} invalid: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
