"""`gradbench report RUN_DIR`: the run's plugins loaded (their report sections with them), plots
into RUN_DIR/plots, then report.md and report.html."""

from __future__ import annotations

import warnings
from pathlib import Path

from . import catalog, layers, plots_numerics, plots_run, plots_speed  # noqa: F401 (layers: its section)
from . import plotting as P
from .blocks import Plot
from .data import read_run
from .document import build
from .render import to_html, to_markdown
from .sections import build_sections, load_plugins

PLOTS = (*plots_speed.PLOTS, *plots_numerics.PLOTS, *plots_run.PLOTS)


def make_plots(run, out: Path) -> list[Plot]:
    """Every plot the run has data for. A plot that raises is reported as not drawn, with the
    error, and warned about: one broken figure must not cost the whole report."""
    plots = []
    for fn in PLOTS:
        try:
            with P.rc_context(P.RC):
                plots.append(fn(run, out))
        except Exception as exc:  # noqa: BLE001 - reported in the document and as a warning
            warnings.warn(f"plot {fn.__name__} failed: {type(exc).__name__}: {exc}", stacklevel=2)
            plots.append(Plot(fn.__name__, fn.__name__, skipped=f"failed: {type(exc).__name__}: {exc}"))
    return plots


def write_report(run_dir: str | Path) -> list[Path]:
    """Write RUN_DIR/report.md, RUN_DIR/report.html and RUN_DIR/plots/*.png; return their paths."""
    run = read_run(run_dir)
    notes = load_plugins(run)  # first: the catalog then holds what its plugins declare
    with catalog.active(run.catalog):
        sections, failed = build_sections(run)
        plots = make_plots(run, run.path / "plots")
        doc = build(run, plots, sections, notes + failed)
    md, page = run.path / "report.md", run.path / "report.html"
    md.write_text(to_markdown(doc, run.path), encoding="utf-8")
    page.write_text(to_html(doc), encoding="utf-8")
    return [md, page, *(p.path for p in plots if p.path)]
