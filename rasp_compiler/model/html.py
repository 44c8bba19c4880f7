"""Notebook summaries: the compact HTML that Jupyter (and VS Code, Colab, ...) shows as
an object's `_repr_html_()`, for `CompiledModel`, `CompressedModel`, the selector report
and the layout. Every string from the program is escaped. No IPython import: the notebook
calls the plain method. The explorer inline (`model.show`) is explorer/notebook.py."""

from __future__ import annotations

import html
from typing import Iterable, Sequence

from rasp_compiler.errors import counted

STYLE = ("font-family: Helvetica, Arial, sans-serif; font-size: 13px; line-height: 1.35; "
         "max-width: 100%; overflow-wrap: anywhere")
TABLE = "border-collapse: collapse; margin: 4px 0; font-size: 12px"
CELL = "border: 1px solid #d4d8dd; padding: 2px 6px; text-align: left; vertical-align: top"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    head = "".join(f'<th style="{CELL}; background: #f1f3f5">{_e(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{CELL}">{_e(c)}</td>' for c in row) + "</tr>"
                   for row in rows)
    return f'<table style="{TABLE}"><tr>{head}</tr>{body}</table>'


def _facts(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f'<tr><th style="{CELL}; color: #555; font-weight: normal">{_e(k)}</th>'
                   f'<td style="{CELL}">{_e(v)}</td></tr>' for k, v in pairs)
    return f'<table style="{TABLE}">{rows}</table>'


def _box(title: str, *parts: str) -> str:
    return (f'<div style="{STYLE}"><div style="font-weight: bold; font-size: 14px">'
            f'{_e(title)}</div>{"".join(parts)}</div>')


def _titled(model) -> str:
    """The program's name, and its output SOp's label where that differs."""
    return model.name if model.name == model.output else f"{model.name} (output {model.output})"


def model_facts(model) -> list[tuple[str, str]]:
    info = model.info
    facts = [
        ("depth", f"{counted(model.depth, 'layer')} (lower bound {model.lower_bound})"),
        ("heads per layer", ", ".join(str(len(layer.heads)) for layer in info.layers) or "-"),
        ("MLP widths", ", ".join(str(layer.mlp_hidden) for layer in info.layers) or "-"),
        ("residual width", str(model.layout.width)),
        ("vocab", " ".join(map(str, model.vocab))),
        ("max_seq_len", str(model.max_seq_len)),
        ("parameters", f"{model.parameter_count():,}"),
        ("attention", "causal" if model.causal else "bidirectional"),
    ]
    if model.source is not None:
        facts.append(("program", str(model.source)))
    if model.compilation is None:
        facts.append(("program", "not in this session (a loaded model)"))
    if info.warnings:
        facts.append(("warnings", f"{len(info.warnings)} (model.warnings)"))
    return facts


def layer_rows(model) -> list[tuple[str, str, str]]:
    """(layer, part, what it computes) for every head and MLP part."""
    rows = []
    for layer in model.info.layers:
        for head in layer.heads:
            rows.append((f"layer {layer.index}", f"{head.name} {head.kind}",
                         f"{head.label} <- {head.selector}: {head.expression}"))
        for part in layer.mlp:
            rows.append((f"layer {layer.index}",
                         f"MLP [{part.start}:{part.stop}] {part.construction}",
                         ", ".join(part.units) or ", ".join(part.outputs)))
        if not layer.heads and not layer.mlp:
            rows.append((f"layer {layer.index}", "-", "(empty)"))
    return rows


def compiled_model_html(model) -> str:
    return _box(f"CompiledModel {_titled(model)}",
                _facts(model_facts(model)),
                _table(("layer", "head / MLP", "computes"), layer_rows(model)),
                '<div style="color: #555; font-size: 12px">model.show(tokens) opens the '
                'explorer here; model.layer_plan_report() and model.selector_report() say more.'
                '</div>')


def compressed_model_html(model) -> str:
    info = model.info
    facts = [("compression", f"residual {model.d_model} -> {model.d} dimensions, "
                             f"{'nonlinear' if model.readers else 'linear'} reads"),
             ("training", f"{info.steps:,} of {info.max_steps:,} steps (stopped: "
                          f"{info.stopped}), {info.seconds:.1f} s"),
             ("agreement with the exact model", f"{info.agreement:.2%} of positions "
                                                f"(in training)")]
    return _box(f"CompressedModel {_titled(model)}, compressed",
                _facts(facts + model_facts(model.base)),
                '<div style="color: #555; font-size: 12px">model.show(tokens) opens the '
                'explorer here, with the interference matrix.</div>')


def selector_report_html(report) -> str:
    rows = [(e.selector, e.written, e.normal_form, f"{e.construction}: {e.cost}",
             "; ".join(e.flags) or "-", ", ".join(e.heads)) for e in report]
    flagged = sum(1 for e in report if e.flags)
    return _box(f"Selector report: {len(rows)} selector{'s' * (len(rows) != 1)}, "
                f"{flagged} flagged",
                _table(("selector", "written", "normal form", "construction", "flags", "heads"),
                       rows) if rows else "<div>(no selectors)</div>")


def layout_html(layout) -> str:
    rows = []
    for layer in layout.layers:
        for head in layer["heads"]:
            rows.append((f"layer {layer['index']}", f"{head['name']} {head['kind']}",
                         f"{head['writes']} <- {head['expression']}"))
        for part in layer["mlp"]:
            rows.append((f"layer {layer['index']}",
                         f"MLP [{part['start']}:{part['stop']}] {part['construction']}",
                         f"{', '.join(part['units']) or '-'} -> "
                         f"{', '.join(part['outputs']) or '-'}"))
    nodes = [(n.label, n.kind, n.place, n.where) for n in layout.nodes]
    return _box(f"Layout: depth {layout.depth} (lower bound {layout.lower_bound})",
                _table(("layer", "head / MLP", "computes"), rows),
                _table(("node", "kind", "place", "where"), nodes))
