"""docs/own-gradient.md, the worked example of a user's own Function, runs as written: its Python
in order, its config is the shipped one, its commands run, and what it says a broken backward
looks like is what the harness says."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

import harness
from harness.cli import main
from helpers import ROOT

DOC = ROOT / "docs" / "own-gradient.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_its_python_runs_in_order_and_its_problem_agrees(monkeypatch):
    monkeypatch.chdir(ROOT)  # its plugin paths are the checkout's
    namespace: dict = {}
    for code in blocks("python"):
        exec(compile(code, str(DOC), "exec"), namespace)
    harness.check("huber_doc", n=9000, d=4, dtypes=["float32", "bfloat16"]).assert_ok()  # three chunks


def test_its_config_is_the_shipped_one():
    (config,) = blocks("yaml")
    assert yaml.safe_load(config) == yaml.safe_load((ROOT / "experiments/huber.yaml").read_text())


def test_its_commands_run(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    lines = [line for block in blocks("sh") for line in block.splitlines() if line.startswith("gradbench ")]
    assert lines
    for line in lines:
        assert main(shlex.split(line.split("#")[0])[1:]) == 0, line


def test_the_broken_backward_reads_as_the_doc_says(monkeypatch):
    monkeypatch.chdir(ROOT)
    from harness.plugins import load_plugin

    load_plugin(Path("experiments/plugins/huber_broken.py"))
    result = harness.check(
        "huber_broken", n=10_000, d=16, patterns=["full", "microbatch:4"], dtypes=["float32"]
    )
    text = " ".join(" ".join(blocks("text")[0].split()).split())
    by = {r["pattern"]: r for _, r in result.records[result.records["method"] == "function"].iterrows()}
    for pattern in ("full", "microbatch:4"):
        assert by[pattern]["diagnosis"] in text, (pattern, by[pattern]["diagnosis"])
    assert result.records.loc[result.records["method"] == "manual", "status"].eq("ok").all()
    with pytest.raises(AssertionError, match="ignores its incoming gradient"):
        result.assert_ok()
