"""Shared test constants: tiny timing so tests check behaviour, not speed."""

from pathlib import Path

from harness import TimingOptions

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"

# agreement only, or the least timing that still exercises the interleaved rounds
NO_TIMING = TimingOptions(rounds=0)
TINY_TIMING = TimingOptions(min_run_time_s=0.003, rounds=3, warmup=2)
