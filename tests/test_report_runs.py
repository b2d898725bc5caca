"""Reports of runs that are not whole (empty, interrupted, still going) and of the environment
they ran in: every worker of every segment as a table, the rest of the manifest without them."""

from __future__ import annotations

import re

import pytest
from test_report import family

from harness.cli import main
from harness.report import write_report
from harness.report.plots_speed import measured_peak
from helpers import write_run


@pytest.fixture(scope="module")
def fifteen() -> list[dict]:
    """15 cells of a run that set out to measure 162."""
    sizes = ((64, 2), (128, 2), (256, 2), (512, 2), (1024, 2))
    return [r for n, d in sizes for r in family("linear", n=n, d=d)]


def verdict_of(text: str) -> str:
    return text.split("## Verdict", 1)[1].split("\n## ", 1)[0]


def test_an_empty_run_dir_that_latest_points_at_reports(tmp_path, capsys):
    # Ctrl-C just after the run began: config and manifest written, no record
    run = write_run(tmp_path, [], cells=162, state="unfinished")
    assert (tmp_path / "latest").resolve() == run.resolve()
    assert main(["report", str(tmp_path / "latest")]) == 0
    assert str(tmp_path / "latest" / "report.html") in capsys.readouterr().out
    verdict = verdict_of((run / "report.md").read_text())
    assert "**0 of 162 cells: not finished (still running, or stopped without finishing)**" in verdict
    assert "agrees" not in verdict  # nothing measured: no claim about gradients


def test_an_interrupted_run_says_so_in_its_verdict(tmp_path, fifteen):
    run = write_run(tmp_path, fifteen, cells=162, state="interrupted")
    text = write_report(run)[0].read_text()
    verdict = verdict_of(text)
    assert "**15 of 162 cells: interrupted**; 15 ok." in verdict
    assert "15 cells: 15 ok" not in verdict
    assert "Every measured gradient agrees" in verdict


def test_an_empty_interrupted_run_reports(tmp_path):
    run = write_run(tmp_path, [], cells=162, state="interrupted")
    text = write_report(run)[0].read_text()
    assert "**0 of 162 cells: interrupted**; none measured." in verdict_of(text)
    assert "## All cells" in text and "failed:" not in text


def test_a_partial_run_still_going(tmp_path, fifteen):
    run = write_run(tmp_path, fifteen, cells=162, state="unfinished")
    assert "**15 of 162 cells: not finished" in verdict_of(write_report(run)[0].read_text())


def test_a_finished_run_is_not_called_partial(tmp_path, fifteen):
    run = write_run(tmp_path, fifteen, cells=15)
    assert "15 cells: 15 ok." in verdict_of(write_report(run)[0].read_text())


# -- the environment ---------------------------------------------------------------------------------


def ray_worker(i: int, host: str, probe: float) -> dict:
    """A worker as the Ray executor records it, Ray's own fields included."""
    return {
        "worker": i,
        "node": "f" * 56,
        "gpu_id": str(i),
        "pid": 4000 + i,
        "host": host,
        "node_ip": "10.0.0.1",
        "device": "cuda",
        "device_name": "NVIDIA H100",
        "threads": 1,
        "cuda_visible_devices": str(i),
        "bandwidth_probe_gbps": probe,
        "bandwidth_probe_kind": "cuda device-to-device copy",
    }


SEGMENTS = [
    {
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:01:00+00:00",
        "interrupted": True,
        "executor": "ray",
        "workers": [ray_worker(0, "gpu-a", 3000.0), ray_worker(1, "gpu-a", 3100.0)],
    },
    {
        "started_at": "2026-01-01T01:00:00+00:00",
        "finished_at": "2026-01-01T01:05:00+00:00",
        "interrupted": False,
        "executor": "ray",
        "workers": [ray_worker(0, "gpu-b", 3300.0)],
    },
]
EXECUTOR = {
    "executor": "ray",
    "address": "local",
    "cluster_resources": {"node:__internal_head__": 1.0, "GPU": 2.0},
    "workers": SEGMENTS[1]["workers"],
}
TABLE_HEAD = "| worker | node / host | device | device_name | threads | gpu_id | probe GB/s |"


def environment_of(text: str) -> str:
    return text.split("## Environment", 1)[1].split("\n## ", 1)[0]


def test_every_segment_of_a_resumed_run_has_its_workers_table(tmp_path, fifteen):
    manifest = {"versions": {"torch": "2.9"}, "git_commit": "abc123", "tf32_matmul": False}
    manifest.update(executor=EXECUTOR, segments=SEGMENTS)
    run = write_run(tmp_path, fifteen, manifest=manifest)
    env = environment_of(write_report(run)[0].read_text())
    assert env.count(TABLE_HEAD) == 2
    assert (
        "**Segment 1 of 2**: 2026-01-01T00:00:00+00:00 to 2026-01-01T00:01:00+00:00, "
        "executor `ray`, interrupted." in env
    )
    assert "**Segment 2 of 2**" in env and ", finished." in env
    assert "| 0 | gpu-a | cuda | NVIDIA H100 | 1 | 0 | 3e+03 |" in env
    assert "| 1 | gpu-a | cuda | NVIDIA H100 | 1 | 1 | 3.1e+03 |" in env
    assert "| 0 | gpu-b | cuda | NVIDIA H100 | 1 | 0 | 3.3e+03 |" in env
    # the rest of the manifest as keys and values, without the workers or Ray's bookkeeping
    for row in ("| versions.torch | 2.9 |", "| git_commit | abc123 |", "| tf32_matmul | False |"):
        assert row in env
    assert "| executor.executor | ray |" in env
    assert "__internal_head__" not in env and "cuda_visible_devices" not in env and "{" not in env
    assert measured_peak(manifest) == 3300.0  # the best probe of any segment


def test_without_segments_the_executors_workers_are_the_table(tmp_path, fifteen):
    local = {"worker": "local", "node": "box", "device": "cpu", "device_name": "Xeon", "threads": 1}
    manifest = {"executor": {"executor": "local", "workers": [{**local, "bandwidth_probe_gbps": 39.3}]}}
    run = write_run(tmp_path, fifteen, manifest=manifest)
    env = environment_of(write_report(run)[0].read_text())
    assert env.count(TABLE_HEAD) == 1
    assert "| local | box | cpu | Xeon | 1 |  | 39.3 |" in env
    assert re.search(r"\*\*Workers\*\*: \S+ to 2026-01-01T00:00:00\+00:00, executor `local`, finished\.", env)


# -- the section registry ------------------------------------------------------------------------------


def test_a_section_name_registered_twice_is_refused_naming_both(monkeypatch):
    from harness.report import sections

    monkeypatch.setattr(sections.SECTIONS, "_items", {})

    @sections.register_section(name="check")
    def one(run):
        return None

    def two(run):
        return sections.Section("Check", [])

    with pytest.raises(ValueError) as err:
        sections.register_section(two, name="check")
    message = str(err.value)
    assert "'check'" in message and message.count("test_report_runs.py:") == 2
    sections.register_section(two, name="check", replace=True)
    assert sections.SECTIONS.get("check") is two


def test_a_plugins_section_appears_in_its_runs_report_and_a_broken_one_is_said(
    tmp_path, fifteen, monkeypatch
):
    from harness.report import sections

    monkeypatch.setattr(sections.SECTIONS, "_items", dict(sections.SECTIONS._items))  # the plugin's stay here
    plugin = tmp_path / "my_section.py"
    plugin.write_text(
        "from harness.report import Para, Section, register_section\n\n\n"
        "@register_section\n"
        "def my_count(run):\n"
        "    text = f'{len(run.records)} records.'\n"
        "    return Section('My count', [Para(text)], verdict=['My count: fine.'])\n\n\n"
        "@register_section\n"
        "def my_broken(run):\n"
        "    raise RuntimeError('no such column')\n"
    )
    run = write_run(tmp_path / "out", fifteen, plugins=[plugin])
    with pytest.warns(UserWarning, match="my_broken failed"):
        text = write_report(run)[0].read_text()
    assert "## My count\n\n15 records." in text and "- My count: fine." in verdict_of(text)
    assert "Section my_broken failed: RuntimeError: no such column" in text
    plugin.unlink()  # a run directory read where its plugin is not
    monkeypatch.setattr(sections.SECTIONS, "_items", {})
    text = write_report(run)[0].read_text()
    assert "plugin file does not exist; its report sections are not in this report." in text
