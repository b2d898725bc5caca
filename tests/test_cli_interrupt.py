"""Ctrl-C of a real `gradbench run` on the default Ray executor, at moments of its start: while
Python imports torch, while Ray starts, while the workers start, and once cells are running.
Sent to the process group, as a terminal sends it. Always: exit 130, no traceback, and the
command that resumes the run whenever a run directory was made."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = (
    "name: tiny\nproblems: {linear: {n: [64], d: [2, 4, 8]}}\nmethods: [manual, autograd]\n"
    "timing: {min_run_time_s: 0.2, rounds: 3}\n"
)

pytestmark = pytest.mark.slow


def first_family_recorded(out: Path, proc) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size for p in out.glob("*/records.jsonl")):
            return
        time.sleep(0.05)
    raise AssertionError("no family recorded")


# seconds after launch, or None: once the first family is recorded
@pytest.mark.parametrize("after_s", [0.3, 1.0, 2.0, 4.0, None])
def test_ctrl_c_at_any_moment_of_the_start_exits_130_in_one_line(tmp_path, after_s):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(out)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if after_s is None:
        first_family_recorded(out, proc)
    else:
        time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    runs = [p for p in out.glob("*") if p.is_dir() and not p.is_symlink()] if out.exists() else []
    if not runs:
        assert after_s is not None
        assert err.strip().splitlines()[-1].startswith("gradbench: interrupted"), err
        return
    (run_dir,) = runs
    assert err.strip().splitlines()[-1].split()[-4:] == ["run", str(config), "--resume", str(run_dir)]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["interrupted"] is True and manifest["segments"][-1]["interrupted"] is True
    assert (run_dir / "records.parquet").exists()


def test_a_ctrl_c_where_python_cannot_raise_it_is_quiet_and_raised_at_the_next_check():
    """A SIGINT landing in a callback Python cannot propagate from (filelock's at-fork hook, a
    finalizer) reaches no "Exception ignored" printer; the command still sees it at `check`.
    Any other unraisable error is passed on as before."""
    from harness.runs import sigint

    class Collected:
        def __init__(self, act):
            self.act = act

        def __del__(self):
            self.act()

    def fail():
        raise ValueError("a finalizer's own error")

    printed, before = [], sys.unraisablehook
    sys.unraisablehook = printed.append
    try:
        with sigint.installed():
            Collected(lambda: signal.raise_signal(signal.SIGINT))  # collected at once
            assert sigint.received()
            with pytest.raises(KeyboardInterrupt):
                sigint.check()
            Collected(fail)
    finally:
        sys.unraisablehook = before
    assert [type(u.exc_value) for u in printed] == [ValueError]
