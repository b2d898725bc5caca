"""The A/A benchmark of `gradbench compare` on this machine: a table of how often unchanged reruns
are flagged and how often planted slow-downs are caught, with the shipped defaults.

    .venv/bin/python benchmarks/aa_compare.py [--runs 5] [--trials 10] [--plants 2x 1.25x func]
                                              [--config benchmarks/aa.yaml] [--out DIR] [--again]

1. `--runs` unchanged runs of the config (`gradbench run CONFIG --executor local`, the command a
   user's CI runs), every pair compared (compare_runs, what `gradbench compare` runs): the false
   alarms, pairs that would exit 1.
2. Planted slow-downs, `--trials` runs each: the same config with a plugin that replaces a built-in
   on purpose (benchmarks/aa_plugins/): `linear` whose manual gradient does its work twice (2x) or
   takes a quarter longer (1.25x), and `func` taking a quarter longer (func). The manual ones move
   the baseline that every other method's `vs_manual` is paired with; `func` is a method that is
   not the baseline. Each planted run is compared with the unchanged run made nearest in time:
   caught when compare would exit 1; "only planted" counts the pairs where every cell it flags is
   a planted one; "passed, saying it cannot tell" the pairs that exit 0 but say they cannot catch
   a quarter slower (a miss without it is silent); "change" is the median over pairs of the
   planted cells' change against their family and the run, as compare measured it.
`--again --out DIR` makes no runs: it judges those an earlier campaign left in DIR with the rule
of the code at hand, to see what a change of the rule does on the same runs.
Runs take turns (2x, 1.25x, func, and an unchanged one every other turn) so that all meet the
same machine. The load average is printed before and after: on a shared machine it is half the
result.

Targets with the shipped defaults on a 2-core machine: at most 1 of 10 unchanged pairs flagged,
the 2x slow-down always caught, the 1.25x one at least 8 times in 10. Not part of `make test`: it
takes 5 to 10 minutes.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from harness.report import compare_runs

HERE = Path(__file__).resolve().parent
PLANTS = {  # name: (plugin file, the cells it slows, what it does)
    "2x": ("linear_manual_2x.py", ("linear", "manual"), "linear's manual gradient, its work done twice"),
    "1.25x": ("linear_manual_125.py", ("linear", "manual"), "linear's manual gradient, a quarter longer"),
    "func": ("func_125.py", (None, "func"), "func (not the baseline), a quarter longer"),
}
TARGETS = {"unchanged": "at most 1 of 10", "2x": "all", "1.25x": "at least 8 of 10", "func": "—"}
GRADBENCH = [sys.executable, "-m", "harness.cli"]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def planted_config(config: Path, plugin: str, out: Path) -> Path:
    """The config with one more plugin, written beside the runs (plugin paths made absolute)."""
    data = yaml.safe_load(config.read_text())
    plugins = [str((config.parent / p).resolve()) for p in data.get("plugins") or []]
    data["plugins"] = [*plugins, str(HERE / "aa_plugins" / plugin)]
    path = out / f"{config.stem}-{Path(plugin).stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(config: Path, out: Path) -> Path:
    """One `gradbench run`; the run directory it made."""
    before = set(out.glob("*/")) if out.exists() else set()
    cmd = [*GRADBENCH, "run", str(config), "--executor", "local", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    made = [p for p in out.glob("*/") if p not in before and not p.is_symlink()]
    if len(made) != 1:
        raise RuntimeError(f"{config}: expected one new run directory in {out}, found {len(made)}")
    return made[0]


def planted_cells(table, slows: tuple[str | None, str]):
    problem, method = slows
    cells = table["method"] == method
    return cells & table["cell"].str.startswith(f"{problem} ") if problem else cells


def made_runs(args, out: Path) -> dict[str, list[Path]]:
    """The unchanged and planted runs, taking turns; or, with --again, those a campaign left in out."""
    names = ["unchanged", *args.plants]
    if args.again:
        return {name: sorted(p for p in (out / name).glob("2*/") if not p.is_symlink()) for name in names}
    configs = {"unchanged": args.config}
    configs |= {name: planted_config(args.config, PLANTS[name][0], out) for name in args.plants}
    runs: dict[str, list[Path]] = {name: [] for name in configs}
    turns = max(args.runs, args.trials)
    for i in range(turns):
        for name, config in configs.items():
            wanted = args.runs if name == "unchanged" else args.trials
            if len(runs[name]) < math.ceil((i + 1) * wanted / turns):  # spread evenly over the turns
                runs[name].append(run(config, out / name))
                print(f"  {name} run {len(runs[name])} done, load {load()}", file=sys.stderr)
    return runs


def tally(runs: dict[str, list[Path]], plants: list[str], out: Path) -> tuple[list[tuple], list[float]]:
    """The table's rows, and the noise floor σ of each unchanged pair."""
    rows = []
    base = runs["unchanged"]
    pairs = list(itertools.combinations(base, 2))
    compared = [compare_runs(a, b, out=out / "compare") for a, b in pairs]
    flagged = sum(c.exit_code == 1 for c in compared)
    blind = sum(bool(c.blind) for c in compared)
    sigmas = [c.noise.sigma for c in compared if c.noise and c.noise.sigma]
    rows.append(("unchanged (A/A)", len(pairs), flagged, "—", blind, "—", TARGETS["unchanged"]))
    for name in plants:
        caught = only = told = 0
        changes = []
        for i, new in enumerate(runs[name]):
            c = compare_runs(base[i * len(base) // len(runs[name])], new, out=out / "compare")
            planted = planted_cells(c.table, PLANTS[name][1])
            flags = c.table["regression"]
            caught += c.exit_code == 1
            told += c.exit_code == 0 and bool(c.blind)
            only += bool(flags[planted].any() and not flags[~planted].any())
            changes += list(c.table.loc[planted, "change"].dropna())
        change = f"{np.median(changes):.2f}x" if changes else "—"
        what = f"{name}: {PLANTS[name][2]}"
        rows.append((what, len(runs[name]), caught, only, told, change, TARGETS[name]))
    return rows, sigmas


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="unchanged runs (every pair compared)")
    p.add_argument("--trials", type=int, default=10, help="runs of each planted slow-down")
    p.add_argument("--plants", nargs="*", default=list(PLANTS), choices=list(PLANTS))
    p.add_argument("--config", type=Path, default=HERE / "aa.yaml")
    p.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    p.add_argument("--again", action="store_true", help="judge the runs an earlier campaign left in --out")
    args = p.parse_args(argv)
    if args.again and args.out is None:
        p.error("--again judges the runs of an earlier campaign: name its folder with --out")
    out = args.out or Path(tempfile.mkdtemp(prefix="aa-compare-"))
    out.mkdir(parents=True, exist_ok=True)
    load_before, began = load(), time.time()
    runs = made_runs(args, out)
    load_after = load()
    rows, sigmas = tally(runs, args.plants, out)

    minutes = (time.time() - began) / 60
    print(f"gradbench compare, A/A and planted slow-downs: {args.config.name}, --executor local")
    if not args.again:
        print(f"machine: {machine()}; load average (1, 5, 15 min) {load_before} before, {load_after} after")
    noise = f"median {100 * np.median(sigmas):.1f}%" if sigmas else "not measured"
    made = sum(len(r) for r in runs.values())
    done = "judged again" if args.again else f"{minutes:.1f} min for"
    print(f"{done} {made} runs; noise floor σ over the A/A pairs: {noise}")
    print(f"runs in {out}\n")
    head = ("runs compared", "pairs", "flagged (exit 1)", "only planted", "passed, saying it cannot tell")
    print(f"| {' | '.join(head)} | change | target |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for what, n, hit, only, told, change, target in rows:
        only = only if only == "—" else f"{only} of {n}"
        print(f"| {what} | {n} | {hit} of {n} | {only} | {told} of {n} | {change} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
