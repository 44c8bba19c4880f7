"""Pictures (PNG/SVG) of a compiled model: attention heatmaps and the program graph.

matplotlib is an optional extra (`pip install 'rasp_compiler[plots]'`), imported
only here, only when a heatmap is asked for. The graph is laid out by Graphviz's
`dot` (a system package: apt-get install graphviz), run only when it is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rasp_compiler.diagnostics.colours import weights_cmap
from rasp_compiler.diagnostics.layer_plan import layer_plan_report
from rasp_compiler.diagnostics.patterns import head_matrix, ideal_pattern
from rasp_compiler.errors import InvalidInputError, MissingDependencyError, SaveError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.model.hooks import hook
from rasp_compiler.model.records import require_compilation


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "pictures need matplotlib: pip install 'rasp_compiler[plots]' (or pip install "
            "matplotlib); the HTML report works without it"
        ) from exc
    return plt


def head_patterns(model, tokens: Sequence) -> list[dict]:
    """For each head: its name, title, the compiled pattern and (with the program) the ideal."""

    tokens = list(tokens)
    _, cache = model.run_with_cache([tokens])
    length = len(tokens) + 1
    evaluation = None
    record = model.compilation  # a loaded model has no program: no ideal patterns
    if record is not None:
        evaluation = evaluate_all(record.graph, tokens, causal=model.causal)
    out = []
    for layer in model.info.layers:
        patterns = cache[hook(layer.index, "attn.hook_pattern")][0]
        for head in layer.heads:
            ideal = None
            if evaluation is not None:
                ideal = ideal_pattern(head.kind, head_matrix(record, head.label, evaluation),
                                      length, record.ops.attention[head.label].bos_share)
            out.append({
                "name": head.name,
                "title": f"{head.name}: {head.label} <- {head.expression}",
                "compiled": np.asarray(patterns[head.index, :length, :length]),
                "ideal": ideal,
            })
    return out


def attention_heatmaps(model, tokens: Sequence, path) -> Path:
    """One row per head: the ideal pattern (from the evaluator) beside the compiled one.

    The figure is sized to its content: square cells of a fixed size, each row titled
    with the head and its selector (wrapped to the row's width), both axes labelled
    with position and token, the weights written in the cells while they fit, and a
    causal model's masked cells (key after query) hatched."""
    import textwrap

    plt = _pyplot()
    heads = head_patterns(model, tokens)

    labels = ["0:BOS"] + [f"{i}:{t}" for i, t in enumerate(tokens, start=1)]  # as the explorer
    n = len(labels)
    cell = 0.36  # inches per pattern cell
    side = max(1.6, n * cell)
    width = 2 * side + 2.4
    title_chars = int(width * 11)
    titles = [textwrap.wrap(h["title"], title_chars) or [""] for h in heads]
    row_heights = [side + 1.1 + 0.2 * len(lines) for lines in titles] or [1.0]
    fig = plt.figure(figsize=(width, sum(row_heights) + 0.5), layout="constrained")
    fig.suptitle("\n".join(textwrap.wrap(
        f"{model.name} on {list(tokens)}: each head's ideal pattern (left) and compiled "
        f"pattern (right); weight 0 white to 1 blue", int(width * 9))), fontsize=10)
    if not heads:
        fig.text(0.5, 0.4, "this model has no attention heads", ha="center", fontsize=10)
    rows = fig.subfigures(len(row_heights), 1, height_ratios=row_heights, squeeze=False)[:, 0]
    for row, head, lines in zip(rows, heads, titles):
        row.suptitle("\n".join(lines), fontsize=8.5, ha="left", x=0.02)
        axes = row.subplots(1, 2)
        for ax, (name, matrix) in zip(axes, (("ideal", head["ideal"]), ("compiled", head["compiled"]))):
            ax.set_title(name if matrix is not None else "ideal: needs the program", fontsize=8.5)
            if matrix is None:
                ax.axis("off")
                continue
            ax.imshow(matrix, vmin=0, vmax=1, cmap=weights_cmap())
            ax.set_xticks(range(n), labels, fontsize=7, rotation=90 if n > 8 else 0)
            ax.set_yticks(range(n), labels, fontsize=7)
            ax.set_xlabel("key (position:token)", fontsize=7.5)
            ax.set_ylabel("query (position:token)", fontsize=7.5)
            for q in range(n):
                for k in range(n):
                    if model.causal and k > q:
                        ax.add_patch(plt.Rectangle((k - 0.5, q - 0.5), 1, 1, fill=False,
                                                   hatch="///", edgecolor="#bbbbbb", lw=0))
                    elif n <= 10 and matrix[q, k] >= 0.005:
                        ax.text(k, q, f"{matrix[q, k]:.2f}".rstrip("0").rstrip("."),
                                ha="center", va="center", fontsize=6,
                                color="white" if matrix[q, k] > 0.6 else "black")
    path = Path(path)
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)  # nothing cut off
    except OSError as exc:  # e.g. a full disk or a read-only file: say which file
        raise SaveError(f"cannot write the picture to {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return path


EMBEDDINGS = -1  # node_layers' key for the embeddings (layers count from 0)


def node_layers(model) -> dict[str, int]:
    """The layer computing each node (EMBEDDINGS: embeddings and free forms of them)."""
    layers: dict[str, int] = {}
    record = model.compilation
    if record is None:  # a loaded model: no program graph to place
        return layers
    graph, plan = record.graph, record.schedule
    for label in graph.order:
        if label in plan.time:
            layer = plan.layer_of(label)
            layers[label] = EMBEDDINGS if layer is None else layer
    for layer in model.info.layers:
        for head in layer.heads:
            layers.setdefault(head.selector, layer.index)
    for label in reversed(graph.order):  # folded Maps, sub-selectors: their reader's layer
        if label not in layers:
            users = [layers[u] for u in graph.users(label) if u in layers]
            if users:
                layers[label] = min(users)
    return layers


GRAPH_FORMATS = ("png", "svg", "pdf")
LAYER_COLOURS = ("#e8e3f7", "#dbe8fb", "#dff2df", "#fdf0d5", "#fbe0e0", "#e0f4f4", "#f3e5f5")


def _dot_text(text: str) -> str:
    """A DOT string literal's content: quotes and backslashes escaped, newlines as \\n."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def graph_dot(model) -> str:
    """The program graph as Graphviz DOT, laid out left to right by layer: one cluster
    per layer (and one for the embeddings), SOps as boxes and selectors as ellipses, each labelled
    with its name, kind and where it lives in the model (the head or MLP)."""

    record = require_compilation(model, "graph_picture", does="draws the RASP program's graph")
    graph = record.graph
    layers = node_layers(model)
    places = {node.label: node for node in layer_plan_report(model).nodes}
    ids = {label: f"n{i}" for i, label in enumerate(graph.order)}
    lines = ["digraph program {", "  rankdir=LR; newrank=true; nodesep=0.25; ranksep=0.55;",
             '  graph [fontname="Helvetica", fontsize=12, labeljust=l];',
             '  node [fontname="Helvetica", fontsize=10, style="rounded,filled", '
             'fillcolor=white, penwidth=1.2];',
             '  edge [color="#555555", arrowsize=0.7];',
             f'  label="{_dot_text(model.output)}: the program by layer (left to right); '
             f'boxes are SOps, ellipses selectors"; labelloc=t;']
    for layer in sorted(set(layers.values())):
        colour = LAYER_COLOURS[(layer + 1) % len(LAYER_COLOURS)]
        title = "embeddings" if layer == EMBEDDINGS else f"layer {layer}"
        cluster = "embeddings" if layer == EMBEDDINGS else layer
        lines.append(f'  subgraph cluster_{cluster} {{ label="{title}"; style="filled,rounded"; '
                     f'color="#aaaaaa"; fillcolor="{colour}";')
        for label in graph.order:
            if layers.get(label) == layer:
                lines.append("    " + _dot_node(graph, label, ids[label], places.get(label)))
        lines.append("  }")
    for label in graph.order:
        if label not in layers:  # not needed by the output: outside every layer
            lines.append("  " + _dot_node(graph, label, ids[label], places.get(label)))
    for src, dst in graph.graph.edges:
        lines.append(f"  {ids[src]} -> {ids[dst]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(graph, label: str, node_id: str, place) -> str:
    expr = graph.expr(label)
    is_sop = isinstance(expr, rasp.SOp)
    text = f"{label}\n{type(expr).__name__}"
    if place is not None and place.place in ("head", "mlp", "head+mlp", "folded"):
        text += f"\n{place.place}: {place.where.split(' (')[0]}"[:60]
    shape = "box" if is_sop else "ellipse"
    return f'{node_id} [shape={shape}, label="{_dot_text(text)}"];'


def graph_picture(model, path) -> Path:
    """The program's dependency graph (PNG, SVG or PDF by suffix), laid out by Graphviz's
    `dot`: layers left to right, labels inside their nodes, edges routed around nodes."""
    import shutil
    import subprocess

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in GRAPH_FORMATS:
        raise InvalidInputError(f"graph_picture writes {', '.join(GRAPH_FORMATS)}; "
                                f"{path.name} has the suffix .{fmt}")
    text = graph_dot(model)
    dot = shutil.which("dot")
    if dot is None:
        raise MissingDependencyError(
            "graph_picture lays the graph out with Graphviz's `dot`, which is not installed: "
            "apt-get install graphviz (or brew install graphviz); graph_dot(model) gives the "
            "DOT text without it")
    options = ["-Gdpi=110"] if fmt == "png" else []
    result = subprocess.run([dot, f"-T{fmt}", *options, "-o", str(path)], input=text,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SaveError(f"Graphviz's dot could not draw {path}: {result.stderr.strip()}")
    return path
