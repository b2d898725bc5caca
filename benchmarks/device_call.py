"""The one prepared call for a lent GPU machine: the whole suite, then gpu-check, then the fused
kernel's floor and the LM head, each step's lines written to summary.md as it ends, within a
budget (a device call may last 10 minutes; a session has about 15, the machine's start included).

    source .device-deps/setup.sh && python3 benchmarks/device_call.py --out "$OUT" --budget 540
    .venv/bin/python benchmarks/device_call.py --smoke --out /tmp/device-smoke   # on a CPU, tiny

`--out` receives at most 7 files (a device call brings back 8): summary.md, a log per step,
gpu-check's summary and its sweep's records.parquet; run directories stay under `--work`.

    1. tests          pytest, the whole suite, with the 25 slowest tests listed (what makes the
                      suite slower on a GPU machine than on a CPU: the answer starts there)
    2. gpu-check      benchmarks/gpu_check.py --no-tests: the sweep, the seed post, do_bench, the
                      crossover (its own summary.md, folded into this one)
    3. fused floor    benchmarks/fused_floor.py --device cuda: the Triton kernel against the read floor
    4. LM head        benchmarks/softmax_head.py at n = 8192, d = 4096, c = 32000 and 128256, bfloat16

A step past its share of the budget is stopped as by Ctrl-C (a sweep keeps its finished cells),
and the next one still runs; the summary says what each step took and how it ended.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check import Summary, sh  # noqa: E402

# (name, share of the budget it may take at most, command); shares are of the whole budget, and
# a step may also use what the ones before it left
STEPS = {
    "tests": 0.45,
    "gpu-check": 0.35,
    "fused floor": 0.08,
    "LM head": 0.12,
}


def commands(work: Path, smoke: bool) -> dict[str, list[str]]:
    if smoke:  # the same steps, sized for a CPU: each is a real run of its script
        return {
            "tests": ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=5", "tests/test_check.py"],
            "gpu-check": ["benchmarks/gpu_check.py", "--smoke", "--out", str(work / "gpu-check")],
            "fused floor": ["benchmarks/fused_floor.py", "--n", "65536", "--d", "16", "--reps", "2"],
            "LM head": [
                "benchmarks/softmax_head.py", "--n", "512", "--d", "32", "--c", "256",
                "--seconds", "0.05", "--rounds", "3",
            ],
        }  # fmt: skip
    return {
        "tests": ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=25", "-rfE"],
        "gpu-check": ["benchmarks/gpu_check.py", "--no-tests", "--out", str(work / "gpu-check")],
        "fused floor": ["benchmarks/fused_floor.py", "--device", "cuda", "--dtypes", "float32,bfloat16"],
        "LM head": [
            "benchmarks/softmax_head.py", "--device", "cuda", "--dtype", "bfloat16",
            "--d", "4096", "--c", "32000", "128256", "--seconds", "0.5",
        ],
    }  # fmt: skip


def outcome(name: str, text: str) -> list[str]:
    """What the summary keeps of a step's output: pytest's counts, slowest tests and failures;
    a benchmark's tables."""
    lines = text.splitlines()
    if name == "tests":
        counts = next((x for x in reversed(lines) if re.search(r"\d+ (passed|failed)", x)), "no counts")
        slow = [x for x in lines if re.match(r"\s*\d+\.\d+s (call|setup|teardown)", x)]
        failed = [x for x in lines if x.startswith(("FAILED", "ERROR"))]
        return [f"  - {counts}", *[f"  - {x}" for x in failed], "  - slowest:", *[f"    {x}" for x in slow]]
    if name == "gpu-check":
        return []  # its own summary.md is folded in whole
    kept = [x for x in lines if x.startswith(("|", "#", "function against", "fused"))]
    return [f"  {x}" for x in (kept or lines[-12:])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "device-call")
    ap.add_argument("--work", type=Path, default=Path("/tmp/device-call"), help="run directories")
    ap.add_argument("--budget", type=float, default=540, help="seconds for all the steps together")
    ap.add_argument("--smoke", action="store_true", help="the same steps, tiny, on a CPU")
    ap.add_argument("--only", nargs="+", choices=list(STEPS), help="run these steps only")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    say = Summary(args.out / "summary.md")
    began = time.perf_counter()
    todo = {k: v for k, v in commands(args.work, args.smoke).items() if not args.only or k in args.only}
    spent_share = 0.0
    for name, command in todo.items():
        left = args.budget - (time.perf_counter() - began)
        spent_share += STEPS[name]
        allowed = min(left, args.budget * spent_share - (time.perf_counter() - began))
        if allowed < 10:
            say.add(f"- {name}: not run ({left:.0f} s of the budget left)")
            continue
        code, text, wall = sh(*command, timeout=allowed)
        (args.out / f"{name.replace(' ', '-')}.log").write_text(text + "\n")
        say.add(f"- {name}: exit {code} in {wall:.0f} s (allowed {allowed:.0f} s)", *outcome(name, text))
        check = args.work / "gpu-check"
        if name == "gpu-check" and (check / "summary.md").exists():
            say.add(*[f"  {x}" for x in (check / "summary.md").read_text().splitlines()[1:]])
            shutil.copy(check / "summary.md", args.out / "gpu-check-summary.md")
            sweeps = sorted((check / "sweep").glob("*/records.parquet"))
            if sweeps:
                shutil.copy(sweeps[-1], args.out / "sweep-records.parquet")
    say.add("", f"total {time.perf_counter() - began:.0f} s of a {args.budget:.0f} s budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
