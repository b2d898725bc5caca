"""A Document as report.md (images linked from plots/) and as one self-contained report.html
(images embedded as base64 PNG, CSS inline, no scripts, no external resources)."""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

from . import blocks as D
from .tables import html_table, markdown_table


def to_markdown(doc: D.Document, base: Path) -> str:
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, D.Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, D.Para):
            out += [b.text, ""]
        elif isinstance(b, D.Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, D.Table):
            if b.note:
                out += [b.note, ""]
            out += [markdown_table(b.df)]
        elif isinstance(b, D.Image):
            rel = Path(os.path.relpath(b.plot.path, base)).as_posix()
            out += [f"![{b.plot.title}]({rel})", ""]
        elif isinstance(b, D.Code):
            out += ["```", b.text, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """HTML of a paragraph: escaped, then **bold** and `code`."""
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1240px; margin: 24px auto; padding: 0 20px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.8em; }
h3 { margin-top: 1.3em; }
code { background: #f2f2f4; padding: 0 3px; border-radius: 3px; font-size: 0.92em; }
.scroll { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d8d8dc; padding: 3px 8px; text-align: left; vertical-align: top;
         white-space: nowrap; }
td.wrap { white-space: normal; min-width: 260px; }
th { background: #f4f4f6; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
td.good { color: #17692b; font-weight: 600; }
td.bad { color: #b3261e; font-weight: 600; }
td.near { color: #8a5a00; }
figure { margin: 18px 0 28px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
nav { font-size: 13px; color: #555; }
nav a { margin-right: 10px; }
details summary { cursor: pointer; color: #1f5fa8; }
ul.verdict li { margin: 3px 0; }
"""


def to_html(doc: D.Document) -> str:
    sections = [b.text for b in doc.blocks if isinstance(b, D.Heading) and b.level == 2]
    nav = " ".join(f'<a href="#{_slug(t)}">{html.escape(t)}</a>' for t in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
        f"<nav>{nav}</nav>",
    ]
    first_bullets = True
    for b in doc.blocks:
        if isinstance(b, D.Heading):
            tag = f"h{b.level}"
            parts.append(f'<{tag} id="{_slug(b.text)}">{html.escape(b.text)}</{tag}>')
        elif isinstance(b, D.Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, D.Bullets):
            cls = ' class="verdict"' if first_bullets else ""
            first_bullets = False
            parts.append(f"<ul{cls}>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, D.Table):
            if b.note:
                parts.append(f"<p>{_inline(b.note)}</p>")
            table = f'<div class="scroll">{html_table(b.df)}</div>'
            if b.collapsed:
                table = f"<details><summary>{len(b.df)} rows</summary>{table}</details>"
            parts.append(table)
        elif isinstance(b, D.Image):
            data = base64.b64encode(Path(b.plot.path).read_bytes()).decode("ascii")
            alt = html.escape(b.plot.title)
            parts.append(
                f'<figure id="{_slug(b.plot.name)}"><img alt="{alt}" src="data:image/png;base64,{data}">'
                f"<figcaption>{alt} · plots/{html.escape(Path(b.plot.path).name)}</figcaption></figure>"
            )
        elif isinstance(b, D.Code):
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
