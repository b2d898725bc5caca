"""`make gpu-check`: one command for a GPU machine, one table at the end.

    1. the tests that need CUDA            pytest -m gpu
    2. the GPU sweep                       experiments/gpu-check.yaml (linear, logistic, d = 64,
                                           n = 1e4 ... 1e8, float32 and bfloat16, every method)
    3. the seed post, replayed             experiments/seed.yaml (its numpy cell on the CPU)
    4. an independent timer                triton.testing.do_bench of the n = 1e8 linear manual
                                           gradient beside gradbench's median of the same cell

Runs with a plain `python3` (no .venv): `make gpu-check PY=python3`. `--smoke` runs a tiny CPU
version of 2 to 4 (what the test suite checks on machines without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.report.tables import markdown_table  # noqa: E402
from harness.runs.store import load  # noqa: E402

SMOKE_CONFIG = """name: gpu-check-smoke
methods: [manual, autograd, fused]
dtypes: [float32]
timing: {min_run_time_s: 0.01, rounds: 3}
problems: {linear: {n: [1000, 4000], d: [8]}}
"""


def sh(*args: str, timeout: float) -> tuple[int, str, float]:
    began = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    text = (out.stdout + out.stderr).strip()
    return out.returncode, text, time.perf_counter() - began


def run_config(config: Path, out: Path, executor: str, timeout: float) -> tuple[Path | None, str, float]:
    code, text, wall = sh(
        "-m", "harness.cli", "run", str(config), "--out", str(out), "--executor", executor, timeout=timeout
    )
    runs = sorted(p for p in out.glob("*") if p.is_dir() and not p.is_symlink())
    tail = "\n".join(text.splitlines()[-4:])
    return (runs[-1] if runs else None), f"exit {code}: {tail}", wall


def independent_time(n: int, d: int, device: str) -> tuple[float | None, str]:
    """Median seconds of the linear manual gradient, built as the harness builds it, timed by
    triton's do_bench (CUDA events, L2 flushed between reps) or, without triton, by
    torch.utils.benchmark."""
    import torch

    from harness.methods import get_method
    from harness.patterns import parse_pattern
    from harness.problems import get_problem

    problem = get_problem("linear")(n=n, d=d)
    params, data = problem.make(torch.Generator(device).manual_seed(0))
    step = parse_pattern("full").bind(get_method("manual")(problem, params, data))
    if device == "cuda":
        from triton.testing import do_bench

        return do_bench(step, warmup=25, rep=100, return_mode="median") / 1e3, "triton do_bench"
    from torch.utils.benchmark import Timer

    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=0.2).median, "torch.utils.benchmark"


def sweep_table(records: pd.DataFrame) -> pd.DataFrame:
    g = records[records["mode"] == "gradient"]
    rows = []
    for (problem, dtype, pattern, n), cells in g.groupby(["problem", "dtype", "pattern", "n"], sort=True):
        row = {"problem": problem, "dtype": dtype, "pattern": pattern, "n": f"{n:.0e}"}
        for _, r in cells.iterrows():
            ms = r["time_median_s"] * 1e3 if r["time_median_s"] == r["time_median_s"] else None
            mark = "" if r["agree"] is True else " ✗"
            row[r["method"]] = f"{ms:.3g} ms{mark}" if ms else r["status"]
        gbps = cells.set_index("method")["achieved_gbps"]
        row["best GB/s"] = f"{gbps.max():.0f}" if gbps.notna().any() else ""
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check")
    ap.add_argument("--executor", default="ray", help="ray (default) or local")
    ap.add_argument("--smoke", action="store_true", help="a tiny CPU run of steps 2 to 4")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = ["# gpu-check", ""]
    device = "cpu" if args.smoke else "cuda"

    if not args.smoke:
        code, text, wall = sh("-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", timeout=240)
        lines += [f"- `pytest -m gpu`: {text.splitlines()[-1] if text else ''} ({wall:.0f} s)"]
    config = ROOT / "experiments" / "gpu-check.yaml"
    if args.smoke:
        config = args.out / "gpu-check-smoke.yaml"
        config.write_text(SMOKE_CONFIG)
    sweep, said, wall = run_config(config, args.out / "sweep", args.executor, timeout=420)
    lines += [f"- sweep {config.name}: {said.splitlines()[0]} ({wall:.0f} s)"]
    seed, said, seed_wall = run_config(
        ROOT / "experiments" / "seed.yaml", args.out / "seed", args.executor, 180
    )
    if seed is not None:
        s = load(seed)
        on = ", ".join(f"{m} on {d}" for m, d in sorted(set(zip(s["method"], s["device"]))))
        counts = s["status"].value_counts().to_dict()
        lines += [f"- seed.yaml: {len(s)} cells {counts} ({on}) ({seed_wall:.0f} s)"]
    if sweep is None:
        print("\n".join([*lines, "", "no sweep run directory: see above"]))
        return 1
    records = load(sweep)
    manifest = json.loads((sweep / "manifest.json").read_text())
    workers = (manifest.get("executor") or {}).get("workers") or []
    cards = sorted({str(w.get("device_name")) for w in workers if w.get("device") == device})
    probes = [w.get("bandwidth_probe_gbps") for w in workers if w.get("bandwidth_probe_gbps")]
    eff = manifest.get("efficiency") or {}
    lines += [
        f"- card: {', '.join(cards) or records['device_name'].dropna().iloc[0]}; copy probe "
        f"{max(probes) if probes else float('nan'):.0f} GB/s; torch {manifest['versions'].get('torch')}",
        f"- agreement: {int((records['agree'] == True).sum())} of {len(records)} cells agree",  # noqa: E712
        f"- sweep efficiency: {eff.get('overall')} (time inside timed measurement over wall, per "
        f"worker: {[w.get('efficiency') for w in eff.get('workers', [])]})",
    ]
    n_big = int(records["n"].max())
    big = records[
        (records["problem"] == "linear") & (records["n"] == n_big) & (records["dtype"] == "float32")
        & (records["method"] == "manual") & (records["pattern"] == "full")
    ]  # fmt: skip
    if len(big):
        mine = float(big["time_median_s"].iloc[0])
        theirs, timer = independent_time(n_big, int(big["d"].iloc[0]), device)
        lines += [
            f"- linear n={n_big:.0e} manual float32: gradbench median {mine * 1e3:.3f} ms, {timer} "
            f"{theirs * 1e3:.3f} ms ({mine / theirs:.3f}x)"
        ]
    table = sweep_table(records)
    text = "\n".join([*lines, "", markdown_table(table) if len(table) else "(no gradient cells)"])
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    return 0 if os.environ.get("GPU_CHECK_STRICT") is None or (records["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
