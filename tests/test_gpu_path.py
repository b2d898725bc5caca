"""GPU-path helpers: what runs on the CPU is tested here; CUDA-only behaviour is marked `gpu`."""

import math
import time

import pytest
import torch

from harness import Cell, TimingOptions, gpu, run_family
from harness.measure import interleaved
from harness.problems import get_problem

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


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])])
def test_every_timed_step_is_warmed_itself_before_timing(device, monkeypatch):
    # warming other shapes does not warm a step: on CUDA each kernel's module loads at its
    # first launch (a 256x256 matmul took 24.6 ms once after a warm-up on 16x16, 10 us after).
    # So every step, and the forward, is called `warmup` times before the first timed call.
    from harness import cell as cell_module

    calls = {"loss": 0}
    seen_at_timing = {}
    problem_cls = get_problem("linear")
    original_loss = problem_cls.loss

    def counted_loss(self, p, data):
        calls["loss"] += 1
        return original_loss(self, p, data)

    def spy(fns, *args, **kwargs):
        seen_at_timing["loss"] = calls["loss"]
        return interleaved(fns, *args, **kwargs)

    monkeypatch.setattr(problem_cls, "loss", counted_loss)
    monkeypatch.setattr(cell_module, "interleaved", spy)
    timing = TimingOptions(min_run_time_s=0.003, rounds=2, warmup=3)
    cells = [Cell("linear", m, device=device, n=333, d=7) for m in ("autograd", "func")]
    records = run_family(cells, timing=timing)
    assert [r["status"] for r in records] == ["ok", "ok"]
    # autograd and func each ran their step 3 times, and the forward 3 times, before timing
    assert seen_at_timing["loss"] >= 3 * 3


@pytest.mark.gpu
@needs_cuda
def test_bandwidth_probe_on_cuda():
    probe = gpu.bandwidth_probe("cuda", nbytes=256 * 2**20)
    assert probe["bandwidth_probe_kind"] == "cuda device-to-device copy"
    assert 50 < probe["bandwidth_probe_gbps"] < 20_000
    assert math.isfinite(probe["bandwidth_probe_gbps"])


@pytest.mark.gpu
@needs_cuda
def test_l2_flush_evicts_the_whole_l2_and_never_makes_a_read_faster():
    # what is true on every card: the flush writes more than L2 holds (H100 50 MB, H200 60 MB),
    # so nothing a call left there survives it; and a read after it is no faster than a warm one.
    # (That it is slower is not: an 8 MB read is launch-bound on an H200, 11 us cold, 17 us warm.)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    flush = gpu.l2_flusher("cuda")
    assert flush.buffer.numel() >= 2 * l2
    x = torch.randn(max(1, l2 // 2 // 4), device="cuda")  # half of L2, in float32
    read = lambda: x.sum()
    gpu.warm_up("cuda")
    read()
    # Both ways the GPU is kept busy (a spin that touches no memory) while the host queues the
    # read, so the events time the read alone. Behind nothing, the start event would fire at once
    # and the time include the host launching the read: an H200 gave 53 us "warm" against 19 us
    # cold, the flush's kernel having hidden that launch in the cold case.
    spin = lambda: torch.cuda._sleep(1_000_000)  # about 0.5 ms of clock cycles
    warm = sorted(gpu.flushed_call_times(read, 21, spin, "cuda"))[10]
    cold = sorted(gpu.flushed_call_times(read, 21, lambda: (flush(), spin()), "cuda"))[10]
    assert cold > 0.8 * warm


@pytest.mark.skipif(
    "flush_l2" not in TimingOptions.__dataclass_fields__, reason="measure.py has no flush_l2 yet"
)
def test_run_family_times_cold_calls_with_flush_l2():
    from harness.measure import FLUSHED_CALLS

    cells = [Cell(problem="linear", method=m, n=1000, d=16) for m in ("manual", "fused")]
    timing = TimingOptions(min_run_time_s=0.003, rounds=3, warmup=2, flush_l2=True)
    records = run_family(cells, timing=timing)
    flush = gpu.l2_flusher("cpu")
    flush()
    flush_s = min(gpu.flushed_call_times(flush, 3, lambda: None, "cpu"))
    for r in records:
        assert r["status"] == "ok"
        assert r["samples"] == 3
        assert 1 <= r["inner"] <= FLUSHED_CALLS
        # the 256 MB flush (~20 ms on a quiet CPU) is not in the time: compared as a ratio, since
        # on a loaded machine both grow. A CPU call right after a flush still pays part of it:
        # the flush's dirty cache lines are written back to memory during the call (measured
        # under load: 35 ms calls after 71 ms flushes), so the bound is one whole flush
        assert r["time_median_s"] < flush_s
