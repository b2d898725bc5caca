"""Run the examples of one markdown page, in order, in a fresh process: `python doc_examples.py PAGE`.

```yaml``` blocks are configs: each loads with `load_config`, its plugins being the plugin blocks
before it (a ```python``` block that registers something), written where the config names them.
```python``` blocks run in one namespace per page; a plugin block is loaded as a plugin file. The
`gradbench` lines of ```sh``` blocks run as the command would: `run` with `--dry-run`, `report` and
`compare` on tiny runs made here, `list` as is, `crossover` parsed and checked (its measurements
would take minutes); `make` lines with `make -n`. Other lines (ray, python scripts) are skipped.
Prints one line per example, and exits 1 if any failed.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
TINY = """name: tiny
problems:
  linear: {n: [64, 256], d: [4]}
methods: [manual, autograd]
timing: {min_run_time_s: 0.002, rounds: 3, warmup: 1, profile: false}
threads: 1
"""
RUN_DIRS = ("results/latest", "RUN_DIR", "results/<base>", "BASE", "BASE_RUN")
NEW_DIRS = ("results/<new>", "NEW", "NEW_RUN")


def blocks(page: Path) -> list[tuple[str, str, int]]:
    text = page.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)]


def shell_lines(text: str) -> list[str]:
    """Commands of a shell block: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip()]


class Page:
    def __init__(self, page: Path, work: Path):
        self.page, self.work = page, work
        self.namespace: dict = {"__name__": "__doc_example__"}
        self.plugins: list[str] = []  # sources of the plugin blocks met so far
        self.runs: list[Path] = []
        self.count = 0

    def python(self, text: str) -> str:
        from harness.plugins import load_plugin

        self.count += 1
        file = self.work / f"block_{self.count}.py"
        file.write_text(text)
        if "@register_" in text:
            self.plugins.append(text)
            load_plugin(file)
            return "plugin loaded"
        exec(compile(text, str(file), "exec"), self.namespace)
        return "ran"

    def yaml(self, text: str) -> str:
        from harness.runs.config import load_config

        data = yaml.safe_load(text)
        self.count += 1
        folder = self.work / f"config_{self.count}"
        named = data.get("plugins") or []
        if len(named) > len(self.plugins):
            raise AssertionError(f"the config names {len(named)} plugins; the page shows {len(self.plugins)}")
        for rel, source in zip(named, self.plugins[-len(named) :] if named else []):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(source)
        folder.mkdir(exist_ok=True)
        (folder / "config.yaml").write_text(text)
        config = load_config(folder / "config.yaml")
        return f"config {config.name} loads"

    def sh(self, text: str) -> str:
        done = []
        for line in shell_lines(text):
            words = shlex.split(line)
            if words[0] == "gradbench":
                done.append(self.gradbench(words[1:]))
            elif words[0] == "make":
                out = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
                assert out.returncode == 0, out.stderr
                done.append(f"make -n {' '.join(words[1:])}")
        return "; ".join(done) or "no gradbench or make line"

    def gradbench(self, args: list[str]) -> str:
        from harness.cli import _parser, main

        command = args[0]
        if command == "crossover":
            from harness.cli import crossover_measure

            crossover_measure(_parser(args).parse_args(args))
            return "gradbench crossover: arguments checked"
        if command == "run" and "--dry-run" not in args:
            args = [*args, "--dry-run"]
        if command in ("report", "compare"):
            runs = self.tiny_runs(2 if command == "compare" else 1)
            args = [str(runs[0]) if a in RUN_DIRS else str(runs[-1]) if a in NEW_DIRS else a for a in args]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            status = main(args)
        allowed = (0, 1) if command == "compare" else (0,)  # a regression between two runs exits 1
        assert status in allowed, f"gradbench {' '.join(args)}: exit {status}: {err.getvalue()[-500:]}"
        return f"gradbench {command}"

    def tiny_runs(self, count: int) -> list[Path]:
        """`count` runs of a tiny config, for the lines that read run directories."""
        from harness.cli import main

        while len(self.runs) < count:
            config = self.work / "tiny.yaml"
            config.write_text(TINY)
            out = self.work / "results"
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                assert main(["run", str(config), "--executor", "local", "--out", str(out)]) == 0
            self.runs.append((out / "latest").resolve())
        return self.runs


def main(page: Path) -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        checker = Page(page, Path(tmp))
        for lang, text, line in blocks(page):
            run = getattr(checker, lang, None)
            if run is None:  # text, diagrams: nothing to run
                continue
            try:
                said = run(text)
                print(f"ok   {page.name}:{line} {lang}: {said}")
            except Exception:  # noqa: BLE001 - every failure is printed, then the page fails
                failed += 1
                print(f"FAIL {page.name}:{line} {lang}:\n{traceback.format_exc()}")
    return 1 if failed else 0


if __name__ == "__main__":
    import os

    os.chdir(ROOT)  # the pages' paths (experiments/...) are relative to the repository
    sys.exit(main(Path(sys.argv[1]).resolve()))
