"""Calibrate agreement tolerances: the worst normwise error of correct gradients, per dtype.

For every problem x method x pattern x dtype at small and middle sizes (3 seeds), the large
problems at n = 1e6 (manual and autograd, full and microbatch:4, one seed; the mlp and logistic full only),
correct gradients written unusually (einsum, another summation order) and correct gradients at
or near the optimum (tests/plugins/correct_unusual.py), prints per dtype and per kind of case
the largest rel_err over its tolerance, and over the conditioned error model (the tolerance
without harness/agreement.py's TOL_FACTOR): TOL_FACTOR comes from this table.

    PYTHONPATH=. .venv/bin/python benchmarks/calibrate_tolerances.py [--big] [--seeds 3]
"""

import argparse
import time
from pathlib import Path

import torch

import harness.cell
from harness import Cell, TimingOptions, run_family
from harness.cell import DTYPES
from harness.plugins import load_plugin
from harness.tolerance import TOL_FACTOR

# agreement only: the memory a step allocates is not what this measures, and tracing it at the
# dispatcher costs more than the check itself
harness.cell.peak_bytes = lambda fn, device: (None, "unmeasured")
load_plugin(Path(__file__).resolve().parent.parent / "tests" / "plugins" / "correct_unusual.py")

SMALL = {
    "chain": [{"n": 3}, {"n": 1000}],
    "vjp": [{"n": 3}, {"n": 10_000}],
    "scalar": [{}],
    "weightsum": [{"n": 4}, {"n": 10_000}],
    "linear1d": [{"n": 4}, {"n": 10_000}],
    "linear": [{"n": 4, "d": 3}, {"n": 4096, "d": 64}],
    "logistic": [{"n": 4, "d": 3}, {"n": 4096, "d": 64}],
    "mlp": [{"n": 8, "d": 3, "h": 5}, {"n": 4096, "d": 32, "h": 64}],
}
UNUSUAL = {
    "linear_einsum": [{"n": 4, "d": 3}, {"n": 4096, "d": 64}],
    "linear_reversed": [{"n": 4, "d": 3}, {"n": 4096, "d": 64}],
    "mlp_einsum": [{"n": 8, "d": 3, "h": 5}, {"n": 4096, "d": 32, "h": 64}],
}
OPTIMUM = {
    "linear_optimum": [{"n": 4, "d": 3}, {"n": 4096, "d": 64}],
    "linear1d_optimum": [{"n": 4}, {"n": 10_000}],
    "logistic_optimum": [{"n": 1024, "d": 3}, {"n": 4096, "d": 16}],  # separable if smaller: no optimum
    "mlp_optimum": [{"n": 8, "d": 3, "h": 5}, {"n": 4096, "d": 32, "h": 64}],
}
BIG = {
    "chain": [{"n": 1_000_000}],
    "linear1d": [{"n": 1_000_000}],
    "linear": [{"n": 1_000_000, "d": 8}],
    "vjp": [{"n": 1_000_000}],
    "logistic": [{"n": 1_000_000, "d": 8}],
    "mlp": [{"n": 1_000_000, "d": 4, "h": 8}],
    "linear_reversed": [{"n": 1_000_000, "d": 8}],
    "linear_optimum": [{"n": 1_000_000, "d": 8}],
    "linear1d_optimum": [{"n": 1_000_000}],
    "logistic_optimum": [{"n": 1_000_000, "d": 8}],
}
METHODS = ["manual", "autograd", "autograd_grad", "func", "numpy"]
PATTERNS = ["full", "zero", "microbatch:4", "uneven:3", "nozero:3", "retain:2"]


def grid(big: bool, seeds: int):
    """(kind, problem, sizes, methods, patterns, seeds) to run."""
    for kind, table in (("plain", SMALL), ("unusual", UNUSUAL), ("optimum", OPTIMUM)):
        for problem, sizes in table.items():
            for s in sizes:
                yield kind, problem, s, METHODS, PATTERNS, range(seeds)
    if big:
        for problem, sizes in BIG.items():
            kind = "optimum" if "optimum" in problem else "unusual" if "reversed" in problem else "plain"
            patterns = (
                ["full"] if problem in ("mlp", "logistic", "logistic_optimum") else ["full", "microbatch:4"]
            )
            for s in sizes:
                yield f"{kind} n=1e6", problem, s, ["manual", "autograd"], patterns, range(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="include n = 1e6")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared machine: 1)")
    parser.add_argument("--only", nargs="+", help="these problems alone")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    worst: dict[tuple[str, str], tuple[float, str]] = {}  # (dtype, kind) -> (rel_err / tol, where)
    alarms, cells_run, start = [], 0, time.time()
    for kind, problem, sizes, methods, patterns, seeds in grid(args.big, args.seeds):
        if args.only and problem not in args.only:
            continue
        for dtype in args.dtypes:
            for pattern in patterns:
                for seed in seeds:
                    cells = [
                        Cell(problem, m, pattern=pattern, dtype=dtype, seed=seed, **sizes) for m in methods
                    ]
                    cells = [c for c in cells if not c.skip_reason()]
                    for r in run_family(cells, timing=TimingOptions(rounds=0)):
                        if r["status"] not in ("ok", "mismatch"):
                            print(f"  {problem} {sizes} {r['method']} {pattern}: {r['error']}", flush=True)
                            continue
                        cells_run += 1
                        where = (
                            f"{problem} {sizes} {r['method']} {pattern} seed {seed}: rel_err "
                            f"{r['rel_err']:.2e} tol {r['tol']:.2e} condition {r['condition']:.3g}"
                        )
                        if r["status"] == "mismatch":
                            alarms.append(f"{dtype} {where}: {r['diagnosis']}")
                        ratio = r["rel_err"] / r["tol"]
                        key = (dtype, kind.split()[0])
                        if key not in worst or ratio > worst[key][0]:
                            worst[key] = (ratio, where)
        print(f"done {kind} {problem} {sizes} ({time.time() - start:.0f} s)", flush=True)
    print(f"\n{cells_run} correct cells, {len(alarms)} false alarms")
    for a in alarms:
        print("  FALSE ALARM", a)
    print("\n| dtype | case | worst rel_err / tol | / (tol / TOL_FACTOR) | worst cell |")
    print("| --- | --- | --- | --- | --- |")
    for (dtype, kind), (ratio, where) in sorted(worst.items()):
        factor = TOL_FACTOR[DTYPES[dtype]]
        print(f"| {dtype} | {kind} | {ratio:.3f} | {ratio * factor:.2f} | {where} |")
    print(f"({time.time() - start:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
