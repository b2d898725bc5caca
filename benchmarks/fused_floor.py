"""The fused gradient against its floor, on this machine: a markdown table.

    .venv/bin/python benchmarks/fused_floor.py [--n 1048576] [--d 64] [--reps 7] [--device cpu|cuda]

The floor is one read of X and y at the read probe's bandwidth (a sum over a buffer far above the
caches, harness.gpu.read_probe_gbps); each row is the best of `--reps` calls, so that load from
elsewhere on a shared machine shows less.

CPU: the row-blocked gradient (harness.methods.fused.blocked_grad) by block size, by how each block
does X^T g (`addmv_` into the accumulator, a `matmul` then an add, or `addmv_` with the residual
written into one buffer reused across blocks), and by thread count; eager manual beside it.
CUDA: the Triton kernel by programs per SM, per dtype, at n >= 1e7 (fills
harness.methods.fused.TRITON_PROGRAMS_PER_SM).

Target (the fused method's): 1.5x the floor on the CPU at n = 2^20, d = 64; 0.95 of the read
floor on a GPU. Not part of `make test`: a benchmark, and it wants a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from harness import gpu
from harness.methods.fused import LINKS, block_rows, blocked_grad, triton_grad

LINEAR = LINKS["linear"]


def best_s(fn, reps: int, device: torch.device) -> float:
    fn()
    gpu.synchronize(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        gpu.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def blocked_matmul(X, y, w, b, rows):
    """Each block's X^T g as a matmul, added to the accumulator."""
    s = LINEAR.numerator / X.shape[0]
    dw = torch.zeros(X.shape[1], dtype=X.dtype)
    db = torch.zeros((), dtype=X.dtype)
    for Xb, yb in zip(X.split(rows), y.split(rows)):
        gb = torch.addmv(b, Xb, w).sub_(yb).mul_(s)
        dw.add_(Xb.T @ gb)
        db.add_(gb.sum())
    return dw, db


def blocked_out(X, y, w, b, rows):
    """addmv_ per block, the residual written into one buffer reused by every block."""
    s = LINEAR.numerator / X.shape[0]
    dw = torch.zeros(X.shape[1], dtype=X.dtype)
    db = torch.zeros((), dtype=X.dtype)
    buf = torch.empty(rows, dtype=X.dtype)
    for Xb, yb in zip(X.split(rows), y.split(rows)):
        gb = buf[: Xb.shape[0]]
        torch.addmv(b, Xb, w, out=gb).sub_(yb).mul_(s)
        dw.addmv_(Xb.T, gb)
        db.add_(gb.sum())
    return dw, db


def manual(X, y, w, b):
    r = X @ w + b - y
    return X.T @ r * (2 / X.shape[0]), r.sum() * (2 / X.shape[0])


def cpu_rows(args, X, y, w, b, floor_s):
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t = best_s(lambda: manual(X, y, w, b), args.reps, X.device)
        out.append(("eager manual", threads, "—", t, t / floor_s))
        for mib in (0.25, 0.5, 1, 2, 4, 8):
            rows = max(256, int(mib * 2**20) // (X.shape[1] * X.element_size()))
            variants = {
                "addmv_": lambda rows=rows: blocked_grad(X, y, w, b, LINEAR, rows),
                "matmul": lambda rows=rows: blocked_matmul(X, y, w, b, rows),
                "addmv_ + out": lambda rows=rows: blocked_out(X, y, w, b, rows),
            }
            for name, fn in variants.items():
                t = best_s(fn, args.reps, X.device)
                out.append((f"blocked {name}", threads, f"{mib:g}", t, t / floor_s))
    return out


def cuda_rows(args, X, y, w, b, floor_s):
    sms = torch.cuda.get_device_properties(X.device).multi_processor_count
    out = []
    for per_sm in (1, 2, 4, 8, 16):
        t = best_s(lambda p=per_sm: triton_grad(X, y, w, b, LINEAR, programs=p * sms), args.reps, X.device)
        out.append((f"triton {str(X.dtype).removeprefix('torch.')}", per_sm, "—", t, t / floor_s))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2**20)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", default="float32", help="comma-separated (cuda: float32,bfloat16)")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"load average {os.getloadavg()[0]:.1f}; n = {args.n}, d = {args.d}, device {device}")
    read = statistics.median(gpu.read_probe_gbps(device) for _ in range(3))
    print(f"read probe (median of 3): {read:.1f} GB/s\n")
    head = "threads" if device.type == "cpu" else "programs/SM"
    print(f"| variant | {head} | block MiB | time | x floor |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        g = torch.Generator(device=device).manual_seed(0)
        X = torch.randn(args.n, args.d, generator=g, device=device).to(dtype)
        y = torch.randn(args.n, generator=g, device=device).to(dtype)
        w = torch.randn(args.d, device=device, dtype=dtype)
        b = torch.zeros(1, device=device, dtype=dtype)
        floor_s = (X.numel() + y.numel()) * X.element_size() / (read * 1e9)
        print(f"| one read of X and y ({name}) | — | — | {floor_s * 1e3:.2f} ms | 1.00 |")
        if device.type == "cpu":
            print(f"| (default block: {block_rows(args.d, X.element_size(), device)} rows) | | | | |")
        rows = (
            cpu_rows(args, X, y, w, b, floor_s)
            if device.type == "cpu"
            else cuda_rows(args, X, y, w, b, floor_s)
        )
        for variant, knob, block, t, ratio in rows:
            print(f"| {variant} | {knob} | {block} | {t * 1e3:.2f} ms | {ratio:.2f} |")


if __name__ == "__main__":
    main()
