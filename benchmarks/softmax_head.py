"""The chunked linear cross-entropy Function against autograd and the manual gradient: peak
memory and time of one gradient of softmax regression, as the harness measures them.

    .venv/bin/python benchmarks/softmax_head.py                          # CPU: n 8192, d 256, c 4096
    .venv/bin/python benchmarks/softmax_head.py --data padded weighted   # ignored targets; one loss a row
    python3 benchmarks/softmax_head.py --device cuda --dtype bfloat16 \
        --d 4096 --c 32000 128256                                        # an LLM head on a GPU

Each row is one cell of a `harness.check` run with timing: the methods take turns round by round
(their time ratios are paired), peak memory is one step's (live torch tensors on the CPU, CUDA's
peak allocated on a GPU), and every gradient is checked against the float64 reference as usual.
`set-up` is the harness's own cost of the family (data, the float64 reference and its tolerance):
the closed-form term spread keeps it near a few gradients' time instead of n x d x c numbers.

Targets of the Function against autograd: peak memory at most 1/4 on the CPU at n = 8192,
d = 256, c = 4096, at no more than 1.5x autograd's time; at no more than 1.2x on a GPU at LLM-head
sizes. Not part of `make test`: a benchmark, and it wants a quiet machine.
"""

from __future__ import annotations

import argparse

import torch

import harness

METHODS = ["manual", "autograd", "function"]
TIME_TARGET = {"cpu": 1.5, "cuda": 1.2}
MEMORY_TARGET = 0.25


def rows(n, d, c, data: str, dtype: str, device: str, seconds: float, rounds: int) -> list[dict]:
    result = harness.check(
        "softmax",
        n=n,
        d=d,
        c=c,
        data=data,
        methods=METHODS,
        patterns=["full"],
        dtypes=[dtype],
        devices=[device],
        timing={"min_run_time_s": seconds, "rounds": rounds, "profile": False},
    )
    result.assert_ok()
    return result.records.to_dict("records")


def table(records: list[dict], device: str) -> str:
    by = {r["method"]: r for r in records}
    auto = by["autograd"]
    lines = [
        "| method | peak memory | vs autograd | time per gradient | vs autograd (paired) | rel_err (tol) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in METHODS:
        r = by[m]
        memory = r["peak_bytes"] / auto["peak_bytes"]
        ratio = r["vs_manual"] / auto["vs_manual"]  # both paired with manual, round by round
        lines.append(
            f"| {m} | {r['peak_bytes'] / 2**20:.1f} MiB | {memory:.3f}x | {r['time_median_s'] * 1e3:.2f} ms "
            f"| {ratio:.2f}x | {r['rel_err']:.1e} ({r['tol']:.1e}) |"
        )
    f = by["function"]
    memory, time = f["peak_bytes"] / auto["peak_bytes"], f["vs_manual"] / auto["vs_manual"]
    ok = memory <= MEMORY_TARGET and time <= TIME_TARGET[device]
    lines += [
        "",
        f"function against autograd: memory {memory:.3f}x (target <= {MEMORY_TARGET}), time {time:.2f}x "
        f"(target <= {TIME_TARGET[device]}): {'met' if ok else 'NOT met'}; set-up {f['setup_s']:.1f} s "
        f"({f['setup_s'] / auto['time_median_s']:.0f} autograd gradients)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--c", type=int, nargs="+", default=[4096])
    parser.add_argument(
        "--data",
        nargs="+",
        default=["random", "padded"],
        choices=["random", "padded", "weighted"],
        help="data sets: every label valid; ignore_index on padding and prompt rows; a weight a row",
    )
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per method")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    for c in args.c:
        for data in args.data:
            print(f"\n### softmax n = {args.n}, d = {args.d}, c = {c}, {data}, {args.dtype}, {where}\n")
            found = rows(args.n, args.d, c, data, args.dtype, args.device, args.seconds, args.rounds)
            print(table(found, args.device))


if __name__ == "__main__":
    main()
