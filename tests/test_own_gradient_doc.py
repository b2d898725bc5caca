"""docs/own-gradient.md, the worked example of a user's own Function, shows what ships and what
runs: its plugin files and config are the shipped ones, its problem agrees, and what it says a
broken backward looks like is what the harness says (tests/test_docs.py runs its blocks)."""

import re

import pytest
import yaml

import harness
from harness.plugins import load_plugin
from helpers import ROOT

DOC = ROOT / "docs" / "own-gradient.md"
PLUGINS = ROOT / "experiments" / "plugins"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_its_plugins_and_config_are_the_shipped_ones():
    python = blocks("python")
    assert python[0] == (PLUGINS / "huber.py").read_text()
    assert python[1] == (PLUGINS / "huber_broken.py").read_text()
    (config,) = blocks("yaml")
    assert yaml.safe_load(config) == yaml.safe_load((ROOT / "experiments/huber.yaml").read_text())


def test_its_problem_agrees_in_three_chunks_and_the_broken_backward_reads_as_it_says():
    load_plugin(PLUGINS / "huber.py")
    load_plugin(PLUGINS / "huber_broken.py")
    harness.check("huber", n=9000, d=4, dtypes=["float32", "bfloat16"]).assert_ok()
    result = harness.check(
        "huber_broken", n=10_000, d=16, patterns=["full", "microbatch:4"], dtypes=["float32"]
    )
    said = " ".join(blocks("text")[0].split())
    function = result.records[result.records["method"] == "function"].set_index("pattern")
    for pattern in ("full", "microbatch:4"):
        assert function.loc[pattern, "diagnosis"] in said, pattern
    assert (result.records.loc[result.records["method"] == "manual", "status"] == "ok").all()
    with pytest.raises(AssertionError, match="ignores its incoming gradient"):
        result.assert_ok()
