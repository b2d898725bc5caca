"""Report sections beyond the generic ones, added by plugins.

A section is a function of the read run that returns a `Section` (its title, its blocks, and
sentences for the verdict), or None where it does not apply to that run: it decides that itself,
from the run's records, manifest or config. A plugin registers one on import:

    from harness.report import Para, Section, register_section

    @register_section
    def my_check(run):
        if "my_problem" not in set(run.records["problem"]):
            return None
        return Section("My check", [Para("...")], verdict=["My check: 3 of 3 hold."])

The report loads the plugins listed in the run's config.yaml, so a plugin's section appears in
the report of every run made with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from ..plugins import PluginError, load_plugin
from ..registry import Registry
from .data import Run


@dataclass
class Section:
    title: str  # its heading in the report
    blocks: list  # what follows the heading
    verdict: list[str] = field(default_factory=list)  # sentences added to the report's verdict


SectionFn = Callable[[Run], "Section | None"]
SECTIONS: Registry[SectionFn] = Registry("report section")


def register_section(fn: SectionFn | None = None, *, name: str | None = None, replace: bool = False):
    """Register `fn` (a decorator, bare or with name=/replace=) under its name. A name taken by
    another definition is refused, naming both, unless replace=True says it is on purpose; the
    same definition met again (a copy of the plugin file loaded from elsewhere) replaces it."""

    def add(fn: SectionFn) -> SectionFn:
        return SECTIONS.add(name or fn.__name__, fn, replace=replace)

    return add(fn) if fn is not None else add


def section_names() -> list[str]:
    return [name for name, _ in SECTIONS.items()]


def load_plugins(run: Run) -> list[str]:
    """Import the plugins the run was made with (absolute paths in its config.yaml), so their
    sections are registered; a sentence for each one that could not be loaded."""
    notes = []
    for path in run.plugins:
        try:
            load_plugin(path)
        except PluginError as exc:
            notes.append(f"{exc}; its report sections are not in this report.")
    return notes


def build_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The sections that apply to this run, by name, and a note for each that
    raised: one broken section must not cost the whole report."""
    built, notes = [], []
    for key, fn in SECTIONS.items():
        try:
            section = fn(run)
        except Exception as exc:  # noqa: BLE001 - said in the report and warned about
            warnings.warn(f"report section {key} failed: {type(exc).__name__}: {exc}", stacklevel=2)
            notes.append(f"Section {key} failed: {type(exc).__name__}: {exc}")
            continue
        if section is not None:
            built.append(section)
    return built, notes


__all__ = ["Section", "build_sections", "load_plugins", "register_section", "section_names"]
