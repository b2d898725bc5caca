"""The `gradbench` command: run | report | compare | list | crossover.

Exit codes: 0 done; 1 a --strict run with failed cells, or a regression found by compare; 2 bad
input (config, arguments, paths), told in one line that names the file and the field; 130 a run
stopped by Ctrl-C, after keeping every finished cell and printing the command that resumes it.

This module imports little at the top: a Ctrl-C while torch or Ray loads is the command's to
handle (one line, exit 130), not a traceback out of an import.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .runs import sigint

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, like every other bad input (argparse would print its usage first)."""
        self.exit(2, f"gradbench: error: {' '.join(message.split())}\n")


def main(argv: list[str] | None = None) -> int:
    """The command; as the installed script (argv None) a run stopped by Ctrl-C leaves without
    the interpreter's teardown (see sigint.flush_and_leave)."""
    with sigint.installed():
        try:
            code = _main(argv)
        except KeyboardInterrupt:
            print("gradbench: interrupted", file=sys.stderr)
            code = 130
    if argv is None and code == 130:
        sigint.flush_and_leave(code)
    return code


# The errors a user's input causes, by the module that defines each: caught where loaded (a module
# not imported raised none), so that `report` and `list` need not import what `run` needs (torch).
USER_ERRORS = {
    "harness.runs.errors": "BadInput",
    "harness.runs.config": "ConfigError",
    "harness.plugins": "PluginError",
}


def _user_errors() -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], name) for m, name in USER_ERRORS.items() if m in sys.modules)


def _main(argv: list[str] | None) -> int:
    args = _parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    try:
        status = args.command(args)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"gradbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _reader_gone() -> int:
    """The reader of stdout left (`gradbench run X --dry-run | head`): stop quietly, as Unix tools
    do, with the status a shell gives a process that SIGPIPE ended (128 + 13). What is still
    buffered goes to /dev/null, else the interpreter's last flush prints a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _cmd_run(args) -> int:
    from .runs.command import cmd_run

    return cmd_run(args)


LIGHT = ("report", "compare", "list", "crossover")  # commands that take no executor options


def _parser(words: list[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser for the command line `words`. `run`'s executor options come from the
    registered executors, whose modules import torch: they are left out when `words` name
    another command (None: the whole parser)."""
    p = _Parser(prog="gradbench", description="Hand-written gradients against autograd.")
    sub = p.add_subparsers(required=True, metavar="{run,report,compare,list,crossover}")
    run = sub.add_parser("run", help="run the cells of a config into a run directory")
    run.add_argument("config", type=Path, metavar="CONFIG")
    run.add_argument("--out", type=Path, default=Path("results"), help="where run directories go")
    if not words or words[0] not in LIGHT:
        _executor_arguments(run)
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="run only the cells RUN_DIR lacks")
    run.add_argument("--dry-run", action="store_true", help="list the cells and skipped combinations")
    run.add_argument("--strict", action="store_true", help="exit 1 when any cell is not ok")
    run.add_argument(
        "--device", choices=("cpu", "cuda"), help="run every cell there (default: the config's `devices`)"
    )
    run.set_defaults(command=_cmd_run)
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
    _crossover_parser(sub)
    return p


def _executor_arguments(run: argparse.ArgumentParser) -> None:
    """--executor and the flags of every registered executor, each saying which take it."""
    from .runs.command import DEFAULT_EXECUTOR
    from .runs.executor import executor_kinds

    kinds = executor_kinds()
    run.add_argument(
        "--executor",
        choices=list(kinds),
        default=DEFAULT_EXECUTOR,
        help="; ".join(f"{k.name}: {k.help}" for k in kinds.values()),
    )
    added = set()
    for kind in kinds.values():
        for option in kind.options:
            if option.flag not in added:
                added.add(option.flag)
                takes = ", ".join(n for n, k in kinds.items() if option.flag in {o.flag for o in k.options})
                run.add_argument(option.flag, type=option.type, help=f"{option.help} ({takes} only)")


# --- report, compare, list --------------------------------------------------------------------


def _run_dir(path: Path) -> Path:
    from .runs.errors import BadInput

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
    from .runs.errors import BadInput

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
    from .gpu import local_devices
    from .layers import get_layer, layer_names
    from .methods import get_method, method_names
    from .patterns import pattern_names
    from .problems import get_problem, problem_names
    from .runs.config import ConfigError, load_config
    from .runs.grid import expand

    print("problems (sizes; data sets):")
    for name in problem_names():
        cls = get_problem(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        shape = f"{', '.join(cls.sizes) or '-'}; {', '.join(cls.datasets)}"
        print(f"  {name:<14} {shape:<22} {doc[0] if doc else ''}")
    print("layers (sizes; methods function, autograd, compiled):")
    for name in layer_names():
        cls = get_layer(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"  {name:<14} {', '.join(cls.sizes) or '-':<22} {doc[0] if doc else ''}")
    print("methods:")
    for name in method_names():
        doc = (get_method(name).__doc__ or "").strip().splitlines()
        print(f"  {name:<14} {doc[0] if doc else ''}")
    print(f"patterns: {', '.join(pattern_names())}")
    print(f"dtypes: {', '.join(DTYPES)}")
    print(f"modes: {', '.join(MODES)}")
    folder = Path("experiments") if Path("experiments").is_dir() else EXPERIMENTS
    print(f"configs ({folder}):")
    for path in sorted(folder.glob("*.yaml")):
        try:
            config = load_config(path)
        except ConfigError as exc:
            print(f"  {path.name:<20} invalid: {exc}")
            continue
        problems = ", ".join([*config.experiment.problems, *config.experiment.layers])
        try:
            print(f"  {path.name:<20} {len(expand(config, local_devices()).cells)} cells: {problems}")
        except ConfigError:  # a GPU machine's config, seen from a CPU: say so, not "invalid"
            try:
                cells = len(expand(config, ("cpu", "cuda")).cells)
                print(f"  {path.name:<20} {cells} cells on CUDA workers (none here): {problems}")
            except ConfigError as exc:
                print(f"  {path.name:<20} invalid: {exc}")
    return 0


# --- crossover ----------------------------------------------------------------------------------


def _crossover_parser(sub) -> None:
    p = sub.add_parser("crossover", help="the n where a method's paired overhead over manual falls under 10%")
    p.add_argument("--problem", default="linear")
    p.add_argument("--d", type=int, default=64, help="features (problems that have d)")
    p.add_argument("--h", type=int, help="hidden units (problems that have h: mlp)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--pattern", default="full")
    p.add_argument("--methods", default="manual,autograd", help="BASELINE,METHOD (default manual,autograd)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda where torch sees one")
    p.add_argument("--n-min", type=int, default=1_000)
    p.add_argument("--n-max", type=int, default=1_000_000)
    p.add_argument("--threshold", type=float, default=1.10, help="ratio the overhead must fall under")
    p.add_argument("--rounds", type=int, default=11, help="paired rounds per measurement (doubled to refine)")
    p.add_argument("--min-run-time", type=float, default=0.2, help="seconds measuring each method per n")
    p.add_argument("--max-steps", type=int, default=10, help="measurements at most (refinements aside)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.set_defaults(command=cmd_crossover)


def cmd_crossover(args) -> int:
    """The bisection (a run: harness.runs.crossover), then the cost model fitted on its own
    measurements and held against its bracket (a report: harness.report.bracket). Bad input is
    told in one line and exits 2, as everywhere in the command."""
    from .report.bracket import model_of
    from .runs.crossover import HEADER, row, search, write_json

    measured: list[dict] = []
    try:
        measure, context, quantum = crossover_measure(args, measured)
    except ValueError as exc:
        print(f"gradbench: error: {exc}", file=sys.stderr)
        return 2
    print(f"crossover of {context['method']} over {context['baseline']} on {context['device_name']}:")
    print(HEADER, flush=True)
    result = search(
        measure,
        args.n_min,
        args.n_max,
        args.threshold,
        args.rounds,
        args.max_steps,
        quantum=quantum,
        on_point=lambda p: print(row(p, args.threshold), flush=True),
    )
    print(result.sentence(f"{context['method']}'s overhead over {context['baseline']}"))
    model = model_of(measured, context["method"], context["baseline"], result.threshold, result.interval)
    if model:
        print(model["sentence"])
    if args.json:
        write_json(result, args.json, context, model)
        print(args.json)
    return 0


def crossover_measure(args, keep: list | None = None) -> tuple:
    """(measure, context, quantum) for `gradbench crossover`'s arguments, every one checked
    before anything runs (ValueError: bad input)."""
    import torch

    from .cell import DTYPES, Cell
    from .env import device_name
    from .runs.crossover import family_measure

    methods = tuple(m.strip() for m in args.methods.split(","))
    if len(methods) != 2:
        raise ValueError(f"--methods: give BASELINE,METHOD, got {args.methods!r}")
    if not 1 <= args.n_min < args.n_max:
        raise ValueError(f"--n-min, --n-max: need 1 <= n-min < n-max, got {args.n_min} and {args.n_max}")
    if args.threshold <= 1 or args.rounds < 3 or args.min_run_time <= 0:
        raise ValueError("--threshold must be > 1, --rounds >= 3, --min-run-time > 0")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for m in methods:  # unknown names, and what cannot run here, are told before anything runs
        cell = Cell(args.problem, m, args.pattern, args.dtype, device, n=args.n_max, d=args.d, h=args.h)
        reason = cell.skip_reason()
        if reason:
            raise ValueError(f"--methods: {m} cannot run: {reason}")
    quantum = Cell(args.problem, methods[0], pattern=args.pattern, n=args.n_max, d=args.d, h=args.h).k
    context = {
        "problem": args.problem,
        "d": args.d,
        "h": args.h,
        "dtype": str(DTYPES[args.dtype]).removeprefix("torch."),
        "pattern": args.pattern,
        "baseline": methods[0],
        "method": methods[1],
        "device": device,
        "device_name": device_name(torch.device(device)),
    }
    measure = family_measure(
        args.problem, args.d, args.dtype, methods, device, args.pattern, args.min_run_time, args.threads,
        keep=keep, h=args.h,
    )  # fmt: skip
    return measure, context, quantum


if __name__ == "__main__":
    sys.exit(main())
