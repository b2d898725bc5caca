"""The README is a guide and docs/ the reference, and every example in them runs (doc_examples.py:
configs load, Python runs, `gradbench` lines run dry or on tiny runs), each page in a fresh process
so that what one page registers cannot clash with another's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+\.(?:md|png))(?:#[^)]*)?\)")


@pytest.fixture(scope="module")
def examples() -> dict[Path, subprocess.CompletedProcess]:
    """Every page's examples, two pages at a time (each in its own process)."""

    def run(page: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, str(HERE / "doc_examples.py"), str(page)]
        # one torch thread each: two pages' OpenMP threads on shared cores would wait on each other
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(PAGES, pool.map(run, PAGES)))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_examples_of_a_page_run(page, examples):
    out = examples[page]
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert re.search(r"^ok ", out.stdout, flags=re.M), out.stdout  # each page shows something that runs


def test_the_readme_is_a_guide_of_about_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 210, len(lines)


def test_the_readme_links_every_reference_page():
    linked = {Path(m).as_posix() for m in LINK.findall(README.read_text(encoding="utf-8"))}
    for page in PAGES[1:]:
        assert page.relative_to(ROOT).as_posix() in linked, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_between_pages_resolve(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        path = (page.parent / target).resolve()
        where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        assert path.exists(), f"{page.name}: {where}"
