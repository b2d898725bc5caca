"""Calibrate agreement tolerances: the worst normwise error of correct gradients, per dtype.

For every problem x method x pattern x dtype at sizes up to n = 1e6 and a few seeds, prints the
largest rel_err, its ratio to the error model u + u_acc sqrt(L) (u the unit roundoff, u_acc the
accumulator's, L the problem's longest reduction) and to the tolerance in force.
harness/agreement.py's TOL_FACTOR comes from this table.

    .venv/bin/python benchmarks/calibrate_tolerances.py [--big]
"""

import argparse
import time

import torch

from harness import Cell, TimingOptions, run_family
from harness.agreement import error_model
from harness.cell import DTYPES

SIZES = {
    "chain": [{"n": 3}, {"n": 1000}, {"n": 1_000_000}],
    "vjp": [{"n": 3}, {"n": 100_000}],
    "scalar": [{}],
    "weightsum": [{"n": 4}, {"n": 100_000}],
    "linear1d": [{"n": 4}, {"n": 1_000_000}],
    "linear": [{"n": 4, "d": 3}, {"n": 4096, "d": 64}, {"n": 1_000_000, "d": 8}],
    "logistic": [{"n": 4, "d": 3}, {"n": 4096, "d": 64}, {"n": 1_000_000, "d": 8}],
    "mlp": [{"n": 8, "d": 3, "h": 5}, {"n": 4096, "d": 32, "h": 64}, {"n": 1_000_000, "d": 4, "h": 8}],
}
METHODS = ["manual", "autograd", "autograd_grad", "func", "numpy"]
PATTERNS = ["full", "zero", "microbatch:4", "uneven:3", "nozero:3", "retain:2"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="include n = 1e6")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    args = parser.parse_args()
    worst: dict[str, tuple[float, str]] = {}
    worst_tol: dict[str, float] = {}
    start = time.time()
    for problem, grid in SIZES.items():
        for sizes in grid:
            if not args.big and sizes.get("n", 0) >= 1_000_000:
                continue
            for dtype in args.dtypes:
                for pattern in PATTERNS:
                    for seed in range(args.seeds):
                        cells = [
                            Cell(problem, m, pattern=pattern, dtype=dtype, seed=seed, **sizes)
                            for m in METHODS
                        ]
                        cells = [c for c in cells if not c.skip_reason()]
                        for r in run_family(cells, timing=TimingOptions(rounds=0)):
                            if r["status"] not in ("ok", "mismatch"):
                                continue
                            length = max([v for v in sizes.values()] or [1])
                            norm = r["rel_err"] / error_model(DTYPES[dtype], length)
                            where = (
                                f"{problem} {sizes} {r['method']} {pattern} seed {seed}: "
                                f"rel_err {r['rel_err']:.2e} tol {r['tol']:.2e} {r['status']}"
                            )
                            worst_tol[dtype] = max(worst_tol.get(dtype, 0.0), r["rel_err"] / r["tol"])
                            if dtype not in worst or norm > worst[dtype][0]:
                                worst[dtype] = (norm, where)
        print(f"done {problem} ({time.time() - start:.0f} s)", flush=True)
    print(f"{'dtype':<10} {'max rel_err / model':>20} {'max rel_err / tol':>18}  worst cell (by model)")
    for dtype, (norm, where) in worst.items():
        print(f"{dtype:<10} {norm:>20.3f} {worst_tol[dtype]:>18.3f}  {where}")
    print(f"({time.time() - start:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
