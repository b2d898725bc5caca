"""DataFrames as markdown, HTML and fixed-width text tables.

pandas' `to_markdown` needs `tabulate`, which the project does not depend on; these few lines
do the same for the string tables a report shows (summaries format their numbers first).
"""

from __future__ import annotations

import html

import pandas as pd

# cells of the seed replay and compare tables that start with these get a colour in HTML
MARKS = {"✓": "good", "✗": "bad", "≈": "near"}
WRAP = 48  # characters above which an HTML cell may wrap


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = [str(c) for c in df.columns]

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(esc(_cell(v)) for v in row) + " |")
    return "\n".join(lines) + "\n"


def html_table(df: pd.DataFrame, cls: str = "") -> str:
    if df.empty:
        return "<p><em>(none)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            text = _cell(v)
            mark = next((c for m, c in MARKS.items() if text.startswith(m)), None)
            # short cells (numbers, names) stay on one line; long prose may wrap
            classes = [c for c in (mark, "wrap" if len(text) > WRAP else "") if c]
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls_attr = f' class="{cls}"' if cls else ""
    return f"<table{cls_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def text_table(df: pd.DataFrame, max_width: int = 60) -> str:
    """Fixed-width columns for a terminal; long cells are cut to max_width."""
    if df.empty:
        return "  (none)"
    cols = [str(c) for c in df.columns]
    rows = [[_cell(v)[:max_width] for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join("  " + line.rstrip() for line in out)
