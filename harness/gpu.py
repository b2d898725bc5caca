"""What timing on a GPU needs beyond a synchronized timer: warm-up, an L2 flush, TF32 state, and
measured peak bandwidths (a copy, and a read: the floor) to set achieved GB/s against.

Everything here also runs on the CPU, where it means the nearest honest thing (a host memory copy
for the bandwidth, a large buffer zeroed to evict the caches), and says so in what it returns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

FLUSH_BYTES = 256 * 2**20  # what triton's do_bench zeroes between reps: above any L2 (H100: 50 MB)
# per buffer of the copy probe: far above the caches (20x an H100's L2; on the CPU a copy writes
# as much as it reads, and 256 MiB took 1.7 to 4 s on the 2-core CPU under load, too long for every
# run's manifest: 64 MiB read 13.5 GB/s there, as 1 GiB did)
PROBE_BYTES = {"cuda": 1024 * 2**20, "cpu": 64 * 2**20}
# The read probe (the floor) reads more. On CUDA a sum's fixed costs (its second pass, launch, the
# last wave) weigh on 1 GiB: on an H200 a 1 GiB sum read 3.75 TB/s, while 2.56 GB read 4.29 and
# 25.6 GB 4.41 TB/s, and the fused gradient over 25.6 GB reached 3.97, a floor it beat. 8 GiB
# takes about 2 ms; at most a sixteenth of the device's memory. On the CPU a sum must outgrow the
# last-level cache, which a VM may report at hundreds of MiB: the 2-core machine's 480 MiB L3 read
# 52 GB/s over 64 MiB and 24 GB/s over 256 MiB or more. Twice the L3, within READ_PROBE_CPU_BYTES.
READ_PROBE_CUDA_BYTES = 8 * 2**30
READ_PROBE_CPU_BYTES = (64 * 2**20, 512 * 2**20)  # 512 MiB: 0.5 s of one thread at 12 GB/s
PROBE_REPS = 5

WARM_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def local_devices() -> tuple[str, ...]:
    """The device types this process can run cells on: the CPU, and CUDA where torch sees it."""
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(device: str | torch.device, dtypes: Iterable[torch.dtype] = WARM_DTYPES) -> float:
    """Seconds spent making the device's lazy state before anything is timed.

    The first CUDA call creates the context (100 to 500 ms) and the first matmul of a dtype
    creates cuBLAS (and cuBLASLt) handles and workspaces: a tiny mm and mv per dtype takes them
    out of the first timed call. On the CPU there is nothing lazy worth the name: returns 0.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return 0.0
    start = time.perf_counter()
    for dtype in dtypes:
        a = torch.ones(16, 16, dtype=dtype, device=device)
        v = torch.ones(16, dtype=dtype, device=device)
        (a @ a).sum()
        torch.addmv(v, a, v)
        (a.T @ v).sum()
    torch.cuda.synchronize(device)
    return time.perf_counter() - start


class L2Flush:
    """Zeroes `buffer` when called: evicts whatever the device's caches held."""

    def __init__(self, device: torch.device, nbytes: int):
        self.buffer = torch.empty(nbytes, dtype=torch.uint8, device=device)

    def __call__(self) -> None:
        self.buffer.zero_()


def l2_flusher(device: str | torch.device, nbytes: int = FLUSH_BYTES) -> Callable[[], None]:
    """A callable that evicts the device's caches by zeroing an nbytes buffer; call it between
    samples so that no sample reads its inputs from a cache the previous one filled.

    On the CPU it zeroes a host buffer, which evicts L2 and L3 the same way (the default
    256 MiB costs about 10 ms per call there: pass less, twice the last-level cache suffices).
    """
    return L2Flush(torch.device(device), nbytes)


def tf32_state() -> dict:
    """Whether float32 matmuls and convolutions may round to TF32 (10-bit mantissa): part of
    what a float32 CUDA timing and its error mean. Readable on CPU builds as well."""
    matmul = torch.backends.cuda.matmul
    return {
        "tf32_matmul": matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        # the per-backend setting of torch >= 2.9 ("ieee", "tf32" or "none" = follow the above)
        "fp32_precision_matmul": getattr(matmul, "fp32_precision", None),
    }


def _copy_seconds(dst: torch.Tensor, src: torch.Tensor) -> float:
    if dst.is_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    dst.copy_(src)
    return time.perf_counter() - t0


def bandwidth_probe_gbps(
    device: str | torch.device, nbytes: int | None = None, reps: int = PROBE_REPS
) -> float:
    """Peak memory bandwidth measured on the device: the best of `reps` copies of nbytes into a
    buffer already touched, counted as 2 * nbytes / time (each byte read once and written once),
    as bandwidth tests count a device-to-device copy. On the CPU it is a host memory copy with
    torch's threads. An eager gradient's achieved_gbps counts only the bytes it must read, so
    this is the ceiling it is set against."""
    device = torch.device(device)
    n = (nbytes or PROBE_BYTES.get(device.type, PROBE_BYTES["cpu"])) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.zeros(n, dtype=torch.float32, device=device)  # touched: no page faults timed
    dst.copy_(src)  # the copy kernel's own first call
    synchronize(device)
    best = min(_copy_seconds(dst, src) for _ in range(reps))
    return 2 * n * 4 / best / 1e9


def _read_seconds(src: torch.Tensor) -> float:
    if src.is_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        src.sum()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    src.sum()
    return time.perf_counter() - t0


def read_probe_gbps(device: str | torch.device, nbytes: int | None = None, reps: int = PROBE_REPS) -> float:
    """The read floor: the best of `reps` sums over nbytes, counted as nbytes / time (each byte
    read once, nothing written). A one-pass gradient reads its inputs once and writes almost
    nothing, so this, not the copy, is the bandwidth it can reach (`floor_fraction`)."""
    device = torch.device(device)
    n = (nbytes or read_probe_bytes(device)) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    src.sum()  # the reduction kernel's own first call
    synchronize(device)
    best = min(_read_seconds(src) for _ in range(reps))
    del src
    if device.type == "cuda":
        torch.cuda.empty_cache()  # give the probe's gigabytes back for the cells
    return n * 4 / best / 1e9


def read_probe_bytes(device: str | torch.device) -> int:
    device = torch.device(device)
    if device.type == "cuda":
        return min(READ_PROBE_CUDA_BYTES, torch.cuda.get_device_properties(device).total_memory // 16)
    low, high = READ_PROBE_CPU_BYTES
    return min(max(low, 2 * last_level_cache_bytes()), high)


def last_level_cache_bytes() -> int:
    """The largest CPU cache Linux reports for cpu0 (sysfs; 0 where there is none to read)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes, default=0)


def _key(device: str | torch.device) -> str:
    """'cuda' and 'cuda:0' name one device where 0 is the current one: one probe for both."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


@functools.cache
def _read_probe(key: str, nbytes: int | None) -> float:
    return read_probe_gbps(key, nbytes)


def read_floor_gbps(device: str | torch.device) -> float:
    """The read probe of `device`, measured once per process (the executor's `bandwidth_probe`
    already measured it in a worker): what run_family sets each achieved_gbps against."""
    return _read_probe(_key(device), None)


@functools.cache
def bandwidth_probe(device: str | torch.device, nbytes: int | None = None) -> dict:
    """The copy and read probes as manifest fields, naming what was measured; once per process
    and device."""
    device = torch.device(device)
    size = nbytes or PROBE_BYTES.get(device.type, PROBE_BYTES["cpu"])
    cuda = device.type == "cuda"
    return {
        "bandwidth_probe_gbps": bandwidth_probe_gbps(device, size),
        "bandwidth_probe_bytes": size,
        "bandwidth_probe_kind": "cuda device-to-device copy" if cuda else "cpu host memory copy",
        "bandwidth_probe_device": str(device),
        "read_probe_gbps": _read_probe(_key(device), nbytes),
        "read_probe_bytes": nbytes or read_probe_bytes(device),
        "read_probe_kind": "cuda sum of a device buffer" if cuda else "cpu sum of a host buffer",
    }


def flushed_call_times(
    fn: Callable[[], None], calls: int, flush: Callable[[], None], device: str | torch.device
) -> list[float]:
    """Seconds of each of `calls` calls of fn, the caches flushed before each and the flush kept
    out of the time: CUDA events around the call on a GPU (as do_bench), a synchronized
    perf_counter on the CPU. A block timer cannot do this: it would time the flush too."""
    device = torch.device(device)
    times = []
    for _ in range(calls):
        flush()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times
