"""pytest-benchmark of one gradient step per method, for linear, logistic and mlp at three sizes.

`make microbench` runs it and saves the run under results/pytest-benchmark/; `make
microbench-compare` runs it again against the last saved run and fails on a median 10% slower.
Each benchmark group is one problem at one size, so each table compares the methods side by
side. Steps are built as the harness builds them (method class -> instance, pattern "full" -> step), so
what is timed here is what `gradbench run` times.

Not part of `make test` (testpaths = ["tests"]). Environment:
    MICROBENCH_THREADS   torch threads (default 2, the CI machine's cores): always set on purpose
    MICROBENCH_DEVICE    cpu or cuda (default cuda when available)
"""

from __future__ import annotations

import os

import pytest
import torch

import harness  # noqa: F401  (registers every method, fused included)
from harness.methods import get_method
from harness.patterns import parse_pattern
from harness.problems import get_problem

THREADS = int(os.environ.get("MICROBENCH_THREADS", "2"))
DEVICE = os.environ.get("MICROBENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
DTYPE = torch.float32
WARMUP = 3  # calls before timing: lazy init, the allocator's caches, and the compile of `compiled`

# small: the fixed overhead of a method; large: memory traffic (X of 1e6 x 64 fp32 is 256 MB)
SIZES = {
    "linear": [{"n": 1_000, "d": 16}, {"n": 100_000, "d": 64}, {"n": 1_000_000, "d": 64}],
    "logistic": [{"n": 1_000, "d": 16}, {"n": 100_000, "d": 64}, {"n": 1_000_000, "d": 64}],
    "mlp": [
        {"n": 1_000, "d": 16, "h": 32},
        {"n": 10_000, "d": 64, "h": 64},
        {"n": 100_000, "d": 64, "h": 64},
    ],
}
METHODS = ["manual", "autograd", "func", "compiled", "fused"]
# torch.compile costs ~20 s for its first graph on the 2-core CPU and a few s per further shape:
# `compiled` runs at the middle size of each problem only
COMPILED_SIZE = 1


def _label(sizes: dict) -> str:
    """{"n": 100000, "d": 64} -> "n=1e5 d=64": powers of ten from 1e4 up written short."""
    short = lambda v: f"1e{len(str(v)) - 1}" if v >= 10_000 and str(v).rstrip("0") == "1" else str(v)
    return " ".join(f"{k}={short(v)}" for k, v in sizes.items())


CASES = [
    pytest.param(problem, sizes, method, id=f"{problem}-{_label(sizes).replace(' ', '-')}-{method}")
    for problem, grid in SIZES.items()
    for i, sizes in enumerate(grid)
    for method in METHODS
    if method != "compiled" or i == COMPILED_SIZE
]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


_DATA: dict = {}


def _inputs(problem_name: str, sizes: dict):
    """Problem, params and data on the device, drawn once per (problem, sizes) and shared by
    the methods of a group, as run_family shares them."""
    key = (problem_name, tuple(sizes.items()))
    if key not in _DATA:
        _DATA.clear()  # one large X at a time: the groups run in order
        problem = get_problem(problem_name)(**sizes)
        params, data = problem.make(torch.Generator().manual_seed(0))
        on = lambda t: {k: v.to(DEVICE, DTYPE) for k, v in t.items()}
        _DATA[key] = (problem, on(params), on(data))
    return _DATA[key]


@pytest.mark.parametrize(("problem_name", "sizes", "method_name"), CASES)
def test_gradient_step(benchmark, problem_name, sizes, method_name):
    problem, params, data = _inputs(problem_name, sizes)
    method = get_method(method_name)
    reason = method.skip_reason(type(problem), DTYPE, torch.device(DEVICE).type)
    if reason:
        pytest.skip(reason)
    step = parse_pattern("full").bind(method(problem, params, data))
    if DEVICE.startswith("cuda"):
        inner = step

        def step():  # pytest-benchmark does not synchronize CUDA: the step ends when the GPU is done
            inner()
            torch.cuda.synchronize()

    for _ in range(WARMUP):
        step()

    benchmark.group = f"{problem_name} {_label(sizes)}"
    itemsize = torch.empty((), dtype=DTYPE).element_size()
    benchmark.extra_info.update(
        threads=torch.get_num_threads(),
        device=DEVICE,
        dtype=str(DTYPE).removeprefix("torch."),
        min_bytes=problem.min_bytes(itemsize),  # achieved GB/s = min_bytes / time
    )
    benchmark(step)
