"""Calibrate agreement tolerances: the worst normwise error of correct gradients, per dtype.

For every problem x method x pattern x dtype at sizes up to n = 1e6 and a few seeds, prints the
largest rel_err, its ratio to u sqrt(L) (u the unit roundoff, L the problem's longest reduction)
and to the tolerance in force. harness/agreement.py's TOL_FACTOR comes from this table.

    .venv/bin/python benchmarks/calibrate_tolerances.py [--big]
"""

import argparse
import math
import time

import torch

from harness import Cell, TimingOptions, run_family
from harness.agreement import UNIT_ROUNDOFF
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
    args = parser.parse_args()
    worst: dict[str, tuple[float, str]] = {}
    start = time.time()
    for problem, grid in SIZES.items():
        for sizes in grid:
            if not args.big and sizes.get("n", 0) >= 1_000_000:
                continue
            for dtype in DTYPES:
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
                            u = UNIT_ROUNDOFF[DTYPES[dtype]]
                            length = max([v for v in sizes.values()] or [1])
                            norm = r["rel_err"] / (u * math.sqrt(length))
                            where = (
                                f"{problem} {sizes} {r['method']} {pattern} seed {seed}: "
                                f"rel_err {r['rel_err']:.2e} tol {r['tol']:.2e} {r['status']}"
                            )
                            if dtype not in worst or norm > worst[dtype][0]:
                                worst[dtype] = (norm, where)
    print(f"{'dtype':<10} {'max rel_err / (u sqrt L)':>26}  worst cell")
    for dtype, (norm, where) in worst.items():
        print(f"{dtype:<10} {norm:>26.3f}  {where}")
    print(f"({time.time() - start:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
