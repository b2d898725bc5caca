"""The gradbench command: exit codes, one-line errors, the seed post reproduced, resume after
SIGKILL and Ctrl-C of a real process, repeatability."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import harness
from harness.cli import main
from harness.runs.config import load_config
from harness.runs.grid import expand
from harness.runs.store import load_trajectories, read_jsonl

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "experiments/seed.yaml"
TINY = "timing: {min_run_time_s: 0.005, rounds: 3}\n"
# the in-process executor: these tests are of the command and the run directory; Ray has its own
LOCAL = ["--executor", "local"]


def run_dir_of(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    return run_dir


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed")
    assert main(["run", str(SEED), *LOCAL, "--out", str(out)]) == 0
    return run_dir_of(out)


# --- bad input: exit 2, one line naming the file and the field, no traceback -----------------

GOOD = "problems: {linear: {n: [8], d: [2]}}\n"
BAD = [
    ("missing file", None, "no such file"),
    ("invalid yaml", "problems: [linear\n", "line 2: invalid YAML"),
    ("unknown key", GOOD + "dtype: [float32]\n", "dtype: unknown key"),
    ("unknown problem", "problems: {quadratic: {n: [8]}}\n", "problems.quadratic: unknown problem"),
    ("unknown method", GOOD + "methods: [manual, symbolic]\n", "methods[1]: unknown method"),
    ("unknown pattern", GOOD + "patterns: [microbatches:2]\n", "patterns[0]: unknown pattern"),
    ("unknown dtype", GOOD + "dtypes: [float128]\n", "dtypes[0]: unknown dtype"),
    ("zero size", "problems: {linear: {n: [0], d: [2]}}\n", "problems.linear.n: sizes must be >= 1, got 0"),
    (
        "negative size",
        "problems: {linear: {n: [8], d: -1}}\n",
        "problems.linear.d: sizes must be >= 1, got -1",
    ),
    ("microbatch:0", GOOD + "patterns: [microbatch:0]\n", "patterns[0]: pattern 'microbatch:0'"),
    ("k > n", GOOD + "patterns: [uneven:9]\n", "problems.linear.n: uneven:9 needs k <= n, got n=8"),
    ("empty grid", "problems: {scalar: {}}\npatterns: [microbatch:2]\n", "problems: empty grid"),
    ("plugin missing", GOOD + "plugins: [gone.py]\n", "plugins[0]:"),
    ("plugin not importing", GOOD + "plugins: [bad.py]\n", "plugins[0]:"),
    ("python tag", "problems: !!python/object/apply:os.getcwd []\n", "line 1: invalid YAML"),
]


@pytest.mark.parametrize(("case", "text", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2_with_one_line(tmp_path, capsys, case, text, words):
    path = tmp_path / "x.yaml"
    if text is not None:
        path.write_text(text)
    (tmp_path / "bad.py").write_text("import not_a_module_anywhere\n")
    assert main(["run", str(path), *LOCAL, "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: {words}" in err, err
    assert not (tmp_path / "results").exists()


def test_unwritable_output_directory_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    config = tmp_path / "x.yaml"
    config.write_text(GOOD)
    assert main(["run", str(config), *LOCAL, "--out", str(tmp_path / "file/results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {tmp_path}/file/results: cannot write" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--resume", "nowhere"], "--resume nowhere: nowhere: not a run directory"),
        ([*LOCAL, "--num-gpus", "4"], "--num-gpus: only with --executor ray"),
        (["--workers", "0"], "--workers: must be at least 1, got 0"),
        (["--workers", "-3"], "--workers: must be at least 1, got -3"),
        (["--num-gpus", "-1"], "--num-gpus: must be at least 0, got -1"),
        (["--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (["--executor", "dask"], "argument --executor: invalid choice: 'dask'"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, args, words):
    config = tmp_path / "x.yaml"
    config.write_text(GOOD)
    try:
        code = main(["run", str(config), *args])
    except SystemExit as exc:  # argparse's own checks leave through SystemExit
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_report_and_compare_of_a_missing_run_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


# --- the seed post ---------------------------------------------------------------------------


def by_problem(frame, problem, method):
    (row,) = frame[(frame["problem"] == problem) & (frame["method"] == method)].to_dict("records")
    return row


def test_seed_reproduces_the_post(seed_run):
    frame = harness.load(seed_run)
    assert len(frame) == 13 and frame["cell_id"].is_unique
    for method in ("manual", "autograd"):
        assert by_problem(frame, "chain", method)["grad_preview"] == [6.0, 6.0, 6.0]
        vjp = by_problem(frame, "vjp", method)
        assert vjp["output_preview"] == pytest.approx([2252.8] * 3, rel=1e-6)
        assert vjp["grad_preview"] == pytest.approx([204.8, 2048.0, 0.2048], rel=1e-6)
        weights = by_problem(frame, "weightsum", method)
        assert weights["final_params"] == pytest.approx([0.1] * 4) and weights["final_loss"] == pytest.approx(
            4.8
        )
    steps = load_trajectories(seed_run).merge(frame[["cell_id", "problem", "method"]], on="cell_id")

    def trajectory(problem, method):
        return steps[(steps["problem"] == problem) & (steps["method"] == method)].sort_values("step")

    # the 0-d loop: loss 1.0, then 0.9604; the post's loop prints every 10th from step 1
    loss = trajectory("scalar", "autograd")["loss"].tolist()
    assert [round(x, 4) for x in loss[:2]] == [1.0, 0.9604]
    assert [round(x, 4) for x in loss[1:92:10]] == [
        0.9604, 0.6412, 0.4281, 0.2858, 0.1908, 0.1274, 0.0850, 0.0568, 0.0379, 0.0253,
    ]  # fmt: skip
    # the post's numpy descent: epochs 1, 3, ..., 11 print w after the update
    w = [p[0] for p in trajectory("linear1d_post", "numpy")["params"]]
    assert [round(x, 3) for x in w[0:11:2]] == [1.200, 1.872, 1.980, 1.997, 1.999, 2.000]
    numpy = by_problem(frame, "linear1d_post", "numpy")
    assert numpy["status"] == "mismatch" and numpy["diagnosis"].startswith("4.000x the reference")
    # the autograd descent: epochs 1, 11, ..., 41
    autograd = trajectory("linear1d", "autograd")
    assert [round(p[0], 3) for p in autograd["params"][0:41:10]] == [0.300, 1.665, 1.934, 1.987, 1.997]
    # printed with 8 decimals: 0.00006770 is 6.7705e-05 rounded, so compare as the post printed
    losses = [round(x, 8) for x in autograd["loss"][0:41:10]]
    post = [30.0, 1.16278565, 0.04506890, 0.00174685, 0.00006770]
    if by_problem(frame, "linear1d", "autograd")["device"] == "cpu":
        assert losses == post  # the post ran on a CPU: the same float32 arithmetic, the same digits
    else:  # a GPU rounds float32 otherwise (an H200 gave 1.16278577): a few ulps, 2^-24 each, of
        # the loss and of its residual w x - y; late in the descent the residual is 0.008 out of
        # w x = 8, so an ulp of the terms (5e-7) moves the loss, 7e-5, by 2 x 0.008 x 5e-7 = 8e-9
        assert losses == pytest.approx(post, rel=8 * 2.0**-24, abs=8 * 8e-9)


def test_seed_run_directory(seed_run):
    manifest = json.loads((seed_run / "manifest.json").read_text())
    assert manifest["run"]["config_name"] == "seed" and manifest["run"]["cells"] == 13
    assert manifest["status_counts"] == {"ok": 12, "mismatch": 1} and manifest["versions"]["torch"]
    assert (seed_run / "records.parquet").exists() and (seed_run / "trajectories.parquet").exists()
    assert (seed_run.parent / "latest").resolve() == seed_run.resolve()


def test_strict_exits_1_on_the_posts_mismatch_and_resume_of_a_done_run_runs_nothing(seed_run, capsys):
    before = read_jsonl(seed_run / "records.jsonl")
    assert main(["run", str(SEED), *LOCAL, "--resume", str(seed_run), "--strict"]) == 1
    assert "0 of 13 cells to run" in capsys.readouterr().err
    assert read_jsonl(seed_run / "records.jsonl") == before


def test_resume_with_another_config_exits_2(seed_run, tmp_path, capsys):
    other = tmp_path / "seed.yaml"
    other.write_text(SEED.read_text().replace("seed: 0", "seed: 7"))
    (tmp_path / "plugins").mkdir()
    for plugin in ("post_numpy.py", "seed_post.py"):  # the plugins seed.yaml lists
        (tmp_path / "plugins" / plugin).write_text((ROOT / "experiments/plugins" / plugin).read_text())
    assert main(["run", str(other), *LOCAL, "--resume", str(seed_run)]) == 2
    assert "is not the run's" in capsys.readouterr().err


def test_report_and_compare_of_a_run_with_itself(seed_run, capsys):
    assert main(["report", str(seed_run)]) == 0
    assert main(["compare", str(seed_run), str(seed_run)]) == 0


def test_dry_run_lists_cells_and_skips_and_runs_nothing(tmp_path, capsys):
    config = tmp_path / "both.yaml"
    config.write_text(GOOD + "devices: [cpu, cuda]\nmethods: [manual, numpy]\n")
    assert main(["run", str(config), "--dry-run", "--device", "cpu", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "2 cells to run in 1 families; 0 combinations skipped" in out
    if not torch.cuda.is_available():  # cuda cells where no worker has CUDA: skipped, and listed
        assert main(["run", str(config), "--dry-run", "--out", str(tmp_path / "r")]) == 0
        out = capsys.readouterr().out
        assert "2 cells to run in 1 families; 2 combinations skipped" in out
        assert "linear n=8 d=2 float32 full gradient manual: no worker has a cuda device here" in out
    assert not (tmp_path / "r").exists()


def test_seed_runs_every_cell_on_any_machine(capsys):
    # numpy runs on the CPU only: in a GPU run its cells go to the CPU, not away, as a family of
    # their own beside the post's other 1-d family, which runs on the GPU
    assert main(["run", str(SEED), "--dry-run"]) == 0
    families = 7 if torch.cuda.is_available() else 6
    assert f"13 cells to run in {families} families; 0 combinations skipped" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_where_there_is_none_exits_2(tmp_path, capsys):
    for args in (["--device", "cuda"], ["--device", "cuda", "--dry-run"]):
        assert main(["run", str(SEED), *LOCAL, *args, "--out", str(tmp_path / "r")]) == 2
        assert "--device cuda: no worker has a cuda device here" in capsys.readouterr().err
    only_cuda = tmp_path / "cuda.yaml"
    only_cuda.write_text(GOOD + "devices: [cuda]\n")
    assert main(["run", str(only_cuda), *LOCAL, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "problems: empty grid: all 2 combinations are skipped, e.g. no worker has a cuda device" in err
    assert not (tmp_path / "r").exists()


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for words in ("linear ", "n, d; random", "autograd_grad", "microbatch:k", "bfloat16", "quick.yaml"):
        assert words in out
    # each method's own first docstring line; a GPU machine's config seen from a CPU is not "invalid"
    assert "  function       The problem's `function_loss` (a user's torch.autograd.Function)" in out
    assert "type(object)" not in out
    if not torch.cuda.is_available():
        assert "lm-head.yaml         21 cells on CUDA workers (none here): softmax" in out


def test_the_same_config_twice_gives_the_same_cells_and_agreement(tmp_path):
    config = tmp_path / "twice.yaml"
    config.write_text(
        "problems: {linear: {n: [64], d: [3]}, mlp: {n: [32], d: [2], h: [4]}}\n"
        "methods: [manual, autograd]\npatterns: [full, microbatch:2]\n" + TINY
    )
    frames = []
    for out in ("a", "b"):
        assert main(["run", str(config), *LOCAL, "--out", str(tmp_path / out)]) == 0
        frames.append(harness.load(run_dir_of(tmp_path / out)).sort_values("cell_id").reset_index(drop=True))
    a, b = frames
    same = ["cell_id", "seed", "rel_err", "max_abs_err", "scale", "f64_rel_err", "agree", "grad_preview"]
    assert len(a) == 8 and a[same].equals(b[same])


# --- stopping a real process, and resuming it --------------------------------------------------

# on the CPU wherever it runs: on a GPU these families finish before the signal can land
SLOW = (
    "name: slow\ndevices: [cpu]\nproblems: {linear: {n: [2000], d: [8, 16]}}\nmethods: [manual, autograd]\n"
    "patterns: [full, nozero:2]\ndtypes: [float32, float64]\ntiming: {min_run_time_s: 0.15, rounds: 3}\n"
)


def start_and_stop(tmp_path: Path, sig: int) -> tuple[subprocess.Popen, Path, Path, list[dict]]:
    """Start `gradbench run` on a slow config, and send `sig` once two families are recorded."""
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW)
    out = tmp_path / "results"
    # local: a driver killed with SIGKILL would leave a Ray instance of its own running
    cmd = [sys.executable, "-m", "harness.cli", "run", str(config), *LOCAL, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        records = list(out.glob("*/records.jsonl"))
        if records and len(read_jsonl(records[0])) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    proc.wait(timeout=60)
    run_dir = run_dir_of(out)
    return proc, config, run_dir, read_jsonl(run_dir / "records.jsonl")


def check_resumed(config: Path, run_dir: Path, early: list[dict]) -> None:
    lines = read_jsonl(run_dir / "records.jsonl")
    ids = [r["cell_id"] for r in lines]
    assert len(ids) == len(set(ids)), "a finished cell ran twice"
    assert set(ids) == {c.cell_id for c in expand(load_config(config)).cells}
    later = {r["cell_id"]: r for r in lines}
    assert all(later[r["cell_id"]]["started_at"] == r["started_at"] for r in early)
    assert len(harness.load(run_dir)) == 16


@pytest.mark.slow
def test_sigkill_halfway_then_resume(tmp_path, capsys):
    proc, config, run_dir, early = start_and_stop(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert 4 <= len(early) < 16 and not (run_dir / "records.parquet").exists()
    assert len(harness.load(run_dir)) == len(early)  # a killed run reads as far as it got
    assert main(["run", str(config), *LOCAL, "--resume", str(run_dir)]) == 0
    assert f"{16 - len(early)} of 16 cells to run" in capsys.readouterr().err
    check_resumed(config, run_dir, early)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_then_resume(tmp_path):
    proc, config, run_dir, early = start_and_stop(tmp_path, signal.SIGINT)
    err = proc.stderr.read()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and 4 <= len(early) < 16
    assert len(harness.load(run_dir)) == len(early) and (run_dir / "records.parquet").exists()
    assert json.loads((run_dir / "manifest.json").read_text())["interrupted"] is True
    command = shlex.split(err.strip().splitlines()[-1])
    # the command as it was run here (from ROOT), `python -m harness.cli`: one that works without
    # an install; the interpreter relative to the working directory when it lies inside it
    python = Path(sys.executable)
    shown = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else sys.executable
    prefix = [shown, "-m", "harness.cli"]
    assert command == [*prefix, "run", str(config), "--resume", str(run_dir), *LOCAL]
    assert main(command[len(prefix) :]) == 0
    check_resumed(config, run_dir, early)
    # every invocation is a segment: what ran where, and whether it was stopped
    manifest = json.loads((run_dir / "manifest.json").read_text())
    first, second = manifest["segments"]
    assert (first["interrupted"], second["interrupted"]) == (True, False)
    assert first["finished_at"] <= second["started_at"] <= second["finished_at"]
    for segment in (first, second):
        assert segment["executor"] == "local"
        (worker,) = segment["workers"]
        assert worker["device"] == "cpu" and worker["threads"] >= 1 and worker["bandwidth_probe_gbps"] > 0
        assert all(isinstance(v, (str, int, float, bool, type(None))) for v in worker.values())
    assert first["workers"][0]["pid"] != second["workers"][0]["pid"]  # another process ran it
    assert "torch_threads" not in manifest and manifest["driver_torch_threads"] >= 1
    assert os.path.getmtime(run_dir / "records.parquet") >= os.path.getmtime(run_dir / "records.jsonl")


# --- the commands it prints, and a reader that leaves early ------------------------------------


@pytest.mark.slow
def test_dry_run_into_a_pipe_its_reader_closed_exits_quietly():
    """`gradbench run X --dry-run | head`: 141 (SIGPIPE's status, as Unix tools give), no traceback."""
    cmd = [sys.executable, "-m", "harness.cli", "run", str(SEED), "--dry-run"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the interpreter is even up: its first write finds no reader
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_the_command_printed_is_the_one_that_was_run(tmp_path, monkeypatch):
    from harness.invocation import gradbench_command

    clone = tmp_path / "clone"
    script = clone / ".venv/bin/gradbench"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert gradbench_command(str(script), cwd=clone) == [".venv/bin/gradbench"]
    assert gradbench_command(".venv/bin/gradbench", cwd=clone) == [".venv/bin/gradbench"]
    assert gradbench_command(str(script), cwd=tmp_path / "elsewhere") == [str(script)]
    python = clone / ".venv/bin/python"
    assert gradbench_command(str(ROOT / "harness/cli.py"), str(python), clone) == [
        ".venv/bin/python",
        "-m",
        "harness.cli",
    ]
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")  # activated: on PATH
    assert gradbench_command(str(script), cwd=tmp_path) == ["gradbench"]


@pytest.mark.slow
def test_after_a_run_from_the_venvs_script_the_printed_report_command_works(tmp_path):
    """As after `make bench` in a fresh clone: `.venv/bin/gradbench` run from the clone, no
    `gradbench` on PATH; the command the run prints must run as printed."""
    clone = tmp_path / "clone"
    script = clone / ".venv/bin/gradbench"
    script.parent.mkdir(parents=True)
    # what pip writes for the `gradbench` entry point
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom harness.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    (clone / "tiny.yaml").write_text(
        "problems: {linear: {n: [16], d: [2]}}\nmethods: [manual, autograd]\n" + TINY
    )
    # the checkout first, then whatever path the packages already came from (a machine without a
    # venv keeps them on PYTHONPATH)
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath}
    run = [".venv/bin/gradbench", "run", "tiny.yaml", *LOCAL, "--out", "results"]
    done = subprocess.run(run, cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("report with: ")]
    command = line.removeprefix("report with: ")
    assert shlex.split(command)[:2] == [".venv/bin/gradbench", "report"]
    report = subprocess.run(
        command, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr
    run_dir = run_dir_of(clone / "results")
    assert (run_dir / "report.html").is_file() and str(run_dir.relative_to(clone)) in report.stdout


def test_make_bench_ends_with_the_report_of_its_run():
    recipe = subprocess.run(  # under `make test` a nested make would name its directory: not here
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "bench", "OUT=somewhere"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert recipe[-2].startswith(".venv/bin/gradbench run experiments/quick.yaml --out somewhere")
    assert recipe[-1] == ".venv/bin/gradbench report somewhere/latest"
