"""`gradbench report RUN_DIR`: plots into RUN_DIR/plots, then report.md and report.html."""

from __future__ import annotations

import warnings
from pathlib import Path

from . import catalog, plots_numerics, plots_run, plots_speed
from .data import read_run
from .document import build
from .plotting import Plot
from .render import to_html, to_markdown

PLOTS = (*plots_speed.PLOTS, *plots_numerics.PLOTS, *plots_run.PLOTS)


def make_plots(run, out: Path) -> list[Plot]:
    """Every plot the run has data for. A plot that raises is reported as not drawn, with the
    error, and warned about: one broken figure must not cost the whole report."""
    plots = []
    for fn in PLOTS:
        try:
            plots.append(fn(run, out))
        except Exception as exc:  # noqa: BLE001 - reported in the document and as a warning
            warnings.warn(f"plot {fn.__name__} failed: {type(exc).__name__}: {exc}", stacklevel=2)
            plots.append(Plot(fn.__name__, fn.__name__, skipped=f"failed: {type(exc).__name__}: {exc}"))
    return plots


def write_report(run_dir: str | Path) -> list[Path]:
    """Write RUN_DIR/report.md, RUN_DIR/report.html and RUN_DIR/plots/*.png; return their paths."""
    run = read_run(run_dir)
    plots_dir = run.path / "plots"
    with catalog.active(run.catalog):
        plots = make_plots(run, plots_dir)
        doc = build(run, plots)
    md, page = run.path / "report.md", run.path / "report.html"
    md.write_text(to_markdown(doc, run.path), encoding="utf-8")
    page.write_text(to_html(doc), encoding="utf-8")
    return [md, page, *(p.path for p in plots if p.path)]
