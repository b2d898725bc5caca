"""`make gpu-check`: one command for a GPU machine, one table at the end.

    1. the tests that need CUDA            pytest -m gpu
    2. the GPU sweep                       experiments/gpu-check.yaml (linear, logistic, d = 64,
                                           n = 1e4, 1e6, 1e7, 1e8, float32 and bfloat16, every method)
    3. the seed post, replayed             experiments/seed.yaml (its numpy cell on the CPU)
    4. an independent timer                triton.testing.do_bench of the n = 1e8 linear manual
                                           gradient beside gradbench's median of the same cell
    5. where the time goes                 the sweep's largest overheads explained by their
                                           profiled steps; fused against the read floor
    6. the crossover                       `gradbench crossover`: the n where autograd's overhead
                                           over manual falls under 10% (linear, d = 64, float32)

Runs with a plain `python3` (no .venv): `make gpu-check PY=python3`. `--smoke` runs a tiny CPU
version of 2 to 4 (what the test suite checks on machines without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
    """Run `python args`; past `timeout` it gets SIGINT, as a user's Ctrl-C, so that a run keeps its
    finished cells (exit 130), and SIGKILL 30 s later if it is still there."""
    began = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            text, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                text, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                text, _ = proc.communicate()
            text = f"{text or ''}\n(stopped after {timeout:.0f} s)"
    return proc.returncode, (text or "").strip(), time.perf_counter() - began


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


CROSSOVER = ["--d", "64", "--n-min", "10000", "--n-max", "10000000"]
SMOKE_CROSSOVER = ["--d", "8", "--n-min", "100", "--n-max", "2000", "--rounds", "3", "--min-run-time", "0.01"]


def where_time_goes(records: pd.DataFrame) -> list[str]:
    from harness.report.explain import sentences

    out = [f"- {s}" for s in sentences(records)]  # a line per method
    fused = records[(records["method"] == "fused") & records["floor_fraction"].notna()]
    for (problem, dtype), g in fused.groupby(["problem", "dtype"], sort=True):
        best = g.loc[g["floor_fraction"].idxmax()]
        out.append(
            f"- fused {problem} {dtype}: {best['floor_fraction']:.2f} of the read floor at n={best['n']:.0e}"
        )
    return out


def crossover(device: str, smoke: bool, out: Path) -> list[str]:
    path = out / "crossover.json"
    args = SMOKE_CROSSOVER + ["--max-steps", "2"] if smoke else CROSSOVER
    code, text, wall = sh(
        "-m", "harness.cli", "crossover", "--device", device, *args, "--json", str(path), timeout=150
    )
    if code != 0 or not path.exists():
        return [f"- crossover: exit {code}: {text.splitlines()[-1] if text else ''}"]
    found = json.loads(path.read_text())
    return [f"- crossover on {found['device_name']}: {found['sentence']} ({wall:.0f} s)"]


def cell_text(r: pd.Series) -> str:
    """'2.14 ms memory 0.28': the median, the profiled step's bound and the share of the read
    floor reached; ✗ where the gradient disagrees with the reference."""
    if pd.isna(r["time_median_s"]):  # not timed
        return str(r["status"])
    parts = [f"{r['time_median_s'] * 1e3:.3g} ms"]
    if isinstance(r.get("bound"), str):
        parts.append(r["bound"])
    if pd.notna(r.get("floor_fraction")):
        parts.append(f"{r['floor_fraction']:.2f}")
    return " ".join(parts) + ("" if r["agree"] is True else " ✗")


def sweep_table(records: pd.DataFrame) -> pd.DataFrame:
    g = records[records["mode"] == "gradient"]
    rows = []
    for (problem, dtype, pattern, n), cells in g.groupby(["problem", "dtype", "pattern", "n"], sort=True):
        row = {"problem": problem, "dtype": dtype, "pattern": pattern, "n": f"{n:.0e}"}
        for _, r in cells.iterrows():
            row[r["method"]] = cell_text(r)
        gbps = cells.set_index("method")["achieved_gbps"]
        row["best GB/s"] = f"{gbps.max():.0f}" if gbps.notna().any() else ""
        rows.append(row)
    return pd.DataFrame(rows)


class Summary:
    """The lines said so far, with the sweep's table under them, rewritten to summary.md after
    each step, so that a check stopped part-way still leaves what it found."""

    def __init__(self, path: Path) -> None:
        self.path, self.lines, self.table = path, [], ""
        self.add("# gpu-check", "")

    def add(self, *lines: str) -> None:
        self.lines += lines
        for line in lines:
            print(line, flush=True)
        self.write()

    def write(self) -> None:
        self.path.write_text("\n".join([*self.lines, "", self.table]) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check")
    ap.add_argument("--executor", default="ray", help="ray (default) or local")
    ap.add_argument("--smoke", action="store_true", help="a tiny CPU run of steps 2 to 4")
    ap.add_argument("--no-tests", action="store_true", help="skip step 1 (`make test` runs them too)")
    ap.add_argument("--sweep-timeout", type=float, default=420, help="seconds before the sweep is stopped")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    say = Summary(args.out / "summary.md")
    device = "cpu" if args.smoke else "cuda"

    if not (args.smoke or args.no_tests):
        code, text, wall = sh("-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", timeout=240)
        say.add(f"- `pytest -m gpu`: {text.splitlines()[-1] if text else ''} ({wall:.0f} s)")
    config = ROOT / "experiments" / "gpu-check.yaml"
    if args.smoke:
        config = args.out / "gpu-check-smoke.yaml"
        config.write_text(SMOKE_CONFIG)
    sweep, said, wall = run_config(config, args.out / "sweep", args.executor, timeout=args.sweep_timeout)
    say.add(f"- sweep {config.name}: {said.splitlines()[0]} ({wall:.0f} s)")
    records = load(sweep) if sweep is not None and (sweep / "manifest.json").exists() else None
    if records is None or not len(records):
        say.add("", "no sweep records: see above", "", said)
        return 1
    manifest = json.loads((sweep / "manifest.json").read_text())
    workers = [w for segment in manifest.get("segments") or [] for w in segment.get("workers") or []]
    cards = sorted({str(w.get("device_name")) for w in workers if w.get("device") == device})
    probes = [w.get("bandwidth_probe_gbps") for w in workers if w.get("bandwidth_probe_gbps")]
    reads = [w.get("read_probe_gbps") for w in workers if w.get("read_probe_gbps")]
    eff = manifest.get("efficiency") or {}
    table = sweep_table(records)
    say.table = markdown_table(table) if len(table) else "(no gradient cells)"
    say.add(
        f"- card: {', '.join(cards) or records['device_name'].dropna().iloc[0]}; copy probe "
        f"{max(probes) if probes else float('nan'):.0f} GB/s, read probe (the floor) "
        f"{max(reads) if reads else float('nan'):.0f} GB/s; torch {manifest['versions'].get('torch')}",
        f"- agreement: {int((records['agree'] == True).sum())} of {len(records)} cells agree",  # noqa: E712
        f"- sweep efficiency: {eff.get('overall')} (time inside timed measurement over wall, per "
        f"worker: {[w.get('efficiency') for w in eff.get('workers', [])]})",
        *where_time_goes(records),
    )
    n_big = int(records["n"].max())
    big = records[
        (records["problem"] == "linear") & (records["n"] == n_big) & (records["dtype"] == "float32")
        & (records["method"] == "manual") & (records["pattern"] == "full") & (records["status"] == "ok")
    ]  # fmt: skip
    if len(big):
        mine = float(big["time_median_s"].iloc[0])
        theirs, timer = independent_time(n_big, int(big["d"].iloc[0]), device)
        say.add(
            f"- linear n={n_big:.0e} manual float32: gradbench median {mine * 1e3:.3f} ms, {timer} "
            f"{theirs * 1e3:.3f} ms ({mine / theirs:.3f}x)"
        )
    seed, said, seed_wall = run_config(
        ROOT / "experiments" / "seed.yaml", args.out / "seed", args.executor, 180
    )
    if seed is not None and (seed / "manifest.json").exists():
        s = load(seed)
        on = ", ".join(f"{m} on {d}" for m, d in sorted(set(zip(s["method"], s["device"]))))
        counts = s["status"].value_counts().to_dict()
        say.add(f"- seed.yaml: {len(s)} cells {counts} ({on}) ({seed_wall:.0f} s)")
    else:
        say.add(f"- seed.yaml: {said}")
    say.add(*crossover(device, args.smoke, args.out))
    print("", say.table, sep="\n")
    return 0 if os.environ.get("GPU_CHECK_STRICT") is None or (records["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
