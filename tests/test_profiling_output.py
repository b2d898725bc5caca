"""What gradbench's profiling leaves on stderr: Kineto's `USDT: ... profiler_start/stop` lines, which
torch 2.13 writes from C++ at every start and stop, are dropped; every other line stays."""

import os
import sys

import torch
from torch.autograd.profiler import profile

import harness
from harness.profiling import kineto_lines_dropped, profile_step


def test_torch_alone_prints_the_lines_that_are_dropped(capfd):
    """Without the filter the lines are there: the test below is not passing on an empty stderr."""
    with profile(use_kineto=True):
        torch.ones(3).sum()
    err = capfd.readouterr().err
    assert "profiler_start" in err and "profiler_stop" in err


def test_a_profiled_step_prints_no_kineto_line_and_keeps_the_steps_own_output(capfd):
    def step():
        torch.ones(64, 64).sum()
        os.write(2, b"from the step, on fd 2\n")
        print("from the step, through sys.stderr", file=sys.stderr)

    p = profile_step(step, lambda: None, torch.device("cpu"))
    err = capfd.readouterr().err
    assert p.steps == 1 and p.ops > 0
    assert "USDT" not in err and "profiler_st" not in err
    assert err.splitlines() == ["from the step, on fd 2", "from the step, through sys.stderr"]


def test_other_lines_written_while_the_filter_holds_fd_2_are_written_back_in_order(capfd):
    os.write(2, b"before\n")
    with kineto_lines_dropped():
        os.write(2, b"USDT:2026-12-03 07:14:24 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"a warning from C++\n")
        os.write(2, b"USDT:2026-12-03 07:14:24 1:1 SyncActivityProfilerHandler.cpp:59] profiler_stop\n")
        os.write(2, b"another, unfinished")
    os.write(2, b" line\nafter\n")
    assert capfd.readouterr().err.splitlines() == [
        "before",
        "a warning from C++",
        "another, unfinished line",
        "after",
    ]


def test_stderr_is_restored_after_an_exception_inside():
    before = os.fstat(2)
    try:
        with kineto_lines_dropped():
            raise ValueError("inside")
    except ValueError:
        pass
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)


def test_harness_check_with_timing_prints_no_kineto_line(capfd):
    harness.check("linear", n=200, d=4, methods=["manual", "autograd"], dtypes=["float32"], timing=True)
    assert "USDT" not in capfd.readouterr().err
