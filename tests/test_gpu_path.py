"""GPU-path helpers: what runs on the CPU is tested here; CUDA-only behaviour is marked `gpu`."""

import math
import time

import pytest
import torch

from harness import Cell, TimingOptions, gpu, run_family

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_warm_up_is_a_no_op_on_cpu():
    assert gpu.warm_up("cpu") == 0.0


def test_tf32_state_reads_the_flags():
    state = gpu.tf32_state()
    assert state["tf32_matmul"] is torch.backends.cuda.matmul.allow_tf32
    assert state["tf32_cudnn"] is torch.backends.cudnn.allow_tf32
    assert state["float32_matmul_precision"] == torch.get_float32_matmul_precision()


def test_tf32_state_follows_a_change():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # what allows TF32 on CUDA
        assert gpu.tf32_state()["float32_matmul_precision"] == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_bandwidth_probe_on_cpu_is_a_named_host_copy():
    probe = gpu.bandwidth_probe("cpu", nbytes=8 * 2**20)
    assert probe["bandwidth_probe_kind"] == "cpu host memory copy"
    assert probe["bandwidth_probe_bytes"] == 8 * 2**20
    # any machine copies 16 MiB at more than 0.1 GB/s and less than 10 TB/s
    assert 0.1 < probe["bandwidth_probe_gbps"] < 10_000


def test_l2_flusher_zeroes_its_buffer():
    flush = gpu.l2_flusher("cpu", nbytes=2**20)
    buf = flush.buffer
    assert buf.numel() == 2**20
    buf.fill_(7)
    flush()
    assert int(buf.max()) == 0


def test_flushed_call_times_flush_before_every_call_and_time_only_the_call():
    calls = []
    times = gpu.flushed_call_times(
        lambda: calls.append("fn"), 3, lambda: (calls.append("flush"), time.sleep(0.1)), "cpu"
    )
    assert calls == ["flush", "fn"] * 3
    assert len(times) == 3
    assert all(0 <= t < 0.1 for t in times)  # the append, not the flush's 0.1 s sleep


@pytest.mark.gpu
@needs_cuda
def test_warm_up_takes_lazy_init_out_of_the_first_matmul():
    gpu.warm_up("cuda")
    a = torch.randn(256, 256, device="cuda")
    torch.cuda.synchronize()
    first = gpu.flushed_call_times(lambda: a @ a, 1, lambda: None, "cuda")[0]
    later = min(gpu.flushed_call_times(lambda: a @ a, 5, lambda: None, "cuda"))
    assert first < 10 * later + 1e-3  # no cuBLAS handle made inside the timed call


@pytest.mark.gpu
@needs_cuda
def test_bandwidth_probe_on_cuda():
    probe = gpu.bandwidth_probe("cuda", nbytes=256 * 2**20)
    assert probe["bandwidth_probe_kind"] == "cuda device-to-device copy"
    assert 50 < probe["bandwidth_probe_gbps"] < 20_000
    assert math.isfinite(probe["bandwidth_probe_gbps"])


@pytest.mark.gpu
@needs_cuda
def test_l2_flush_makes_a_cached_read_slower():
    # 8 MB fits any recent L2: read warm it is faster than read after a 256 MB flush
    x = torch.randn(2 * 2**20, device="cuda")
    flush = gpu.l2_flusher("cuda")
    read = lambda: x.sum()
    gpu.warm_up("cuda")
    warm = sorted(gpu.flushed_call_times(read, 20, lambda: None, "cuda"))[10]
    cold = sorted(gpu.flushed_call_times(read, 20, flush, "cuda"))[10]
    assert cold > warm


@pytest.mark.skipif(
    "flush_l2" not in TimingOptions.__dataclass_fields__, reason="measure.py has no flush_l2 yet"
)
def test_run_family_times_cold_calls_with_flush_l2():
    from harness.measure import FLUSHED_CALLS

    cells = [Cell(problem="linear", method=m, n=1000, d=16) for m in ("manual", "fused")]
    timing = TimingOptions(min_run_time_s=0.003, rounds=3, warmup=2, flush_l2=True)
    for r in run_family(cells, timing=timing):
        assert r["status"] == "ok"
        assert r["samples"] == 3
        assert 1 <= r["inner"] <= FLUSHED_CALLS
        assert r["time_median_s"] < 0.01  # the 256 MB flush (~20 ms on a CPU) is not in the time
