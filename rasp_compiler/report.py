"""A self-contained HTML report of a compiled model, viewable offline.

Heatmaps are HTML tables with coloured cells (no images, no scripts, no
external files), so the report needs no plotting library.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
table.heat { border-collapse: collapse; margin: 0.3em 1.5em 1em 0; display: inline-table; }
table.heat td, table.heat th { width: 2.2em; height: 1.6em; text-align: center; font-size: 10px; }
table.heat th { font-weight: normal; color: #555; }
table.grid { border-collapse: collapse; font-size: 12px; }
table.grid td, table.grid th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
.head { margin-bottom: 1.5em; }
"""


def _heat_table(matrix: np.ndarray, labels: list[str], caption: str) -> str:
    rows = [f"<caption>{html.escape(caption)}</caption>",
            "<tr><th>q \\ k</th>" + "".join(f"<th>{html.escape(l)}</th>" for l in labels) + "</tr>"]
    for label, row in zip(labels, matrix):
        cells = []
        for value in row:
            shade = int(255 - 200 * float(np.clip(value, 0, 1)))
            text_colour = "#fff" if value > 0.6 else "#000"
            cells.append(f'<td style="background: rgb({shade},{shade},255); color: {text_colour}" '
                         f'title="{value:.6f}">{value:.2f}</td>')
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    return '<table class="heat">' + "".join(rows) + "</table>"


def _grid(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="grid"><tr>{head}</tr>{body}</table>'


def html_report(model, tokens: Sequence, path) -> Path:
    """Write the report for the input `tokens` to `path` and return the path."""
    from rasp_compiler.pictures import head_patterns

    tokens = list(tokens)
    labels = ["BOS"] + [str(t) for t in tokens]
    outputs = model.run([tokens])[0]
    parts = [
        f"<h1>{html.escape(model.output)}</h1>",
        f"<p>{html.escape(repr(model))}</p>",
        f"<p>Input: <code>{html.escape(str(tokens))}</code> &rarr; output: "
        f"<code>{html.escape(str(outputs))}</code></p>",
        "<h2>Layout</h2>",
        f"<pre>{html.escape(str(model.layout_report()))}</pre>",
        "<h2>Residual stream</h2>",
        _grid(["dims", "SOp", "values", "written by", "read by"],
              [[f"{e.start}:{e.stop}", e.owner, ", ".join(map(str, e.values[:12])),
                e.written_by, ", ".join(e.read_by)] for e in model.residual_map().entries]),
        "<h2>Selectors</h2>",
        f"<pre>{html.escape(str(model.selector_report()))}</pre>",
    ]
    if model.compilation is not None:  # the checks compare with the program
        parts += ["<h2>Checks on this input</h2>",
                  f"<pre>{html.escape(str(model.check_patterns([tokens])))}</pre>",
                  f"<pre>{html.escape(str(model.read_back([tokens])))}</pre>"]
    parts.append("<h2>Attention heads</h2>")
    for head in head_patterns(model, tokens):
        tables = ""
        if head["ideal"] is not None:
            tables += _heat_table(head["ideal"], labels, "ideal (from the evaluator)")
        tables += _heat_table(head["compiled"], labels, "compiled")
        parts.append(f'<div class="head" id="{head["name"]}"><h3>{html.escape(head["title"])}</h3>'
                     f"{tables}</div>")
    document = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(model.output)}: compiled model report</title>"
                f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(path)
    path.write_text(document, encoding="utf-8")
    return path
