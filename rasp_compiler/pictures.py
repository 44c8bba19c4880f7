"""Pictures (PNG/SVG) of a compiled model: attention heatmaps and the program graph.

matplotlib is an optional extra (`pip install 'rasp_compiler[plots]'`), imported
only here, only when a picture is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rasp_compiler import rasp
from rasp_compiler.errors import MissingDependencyError


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
    from rasp_compiler.diagnostics import head_matrix, ideal_pattern
    from rasp_compiler.evaluator import evaluate_all

    tokens = list(tokens)
    _, cache = model.run_with_cache([tokens])
    length = len(tokens) + 1
    evaluation = None
    record = model.compilation  # a loaded model has no program: no ideal patterns
    if record is not None:
        evaluation = evaluate_all(record.graph, tokens, causal=model.causal)
    out = []
    for layer in model.info.layers:
        patterns = cache[f"blocks.{layer.index - 1}.attn.hook_pattern"][0]
        for head in layer.heads:
            ideal = None
            if evaluation is not None:
                ideal = ideal_pattern(head.kind, head_matrix(record, head.label, evaluation), length)
            out.append({
                "name": head.name,
                "title": f"{head.name}: {head.label} <- {head.expression}",
                "compiled": np.asarray(patterns[head.index, :length, :length]),
                "ideal": ideal,
            })
    return out


def attention_heatmaps(model, tokens: Sequence, path) -> Path:
    """One row per head: the ideal pattern (from the evaluator) beside the compiled one."""
    plt = _pyplot()
    heads = head_patterns(model, tokens)
    labels = ["BOS"] + [str(t) for t in tokens]
    rows = max(1, len(heads))
    side = 1.2 + 0.35 * len(labels)
    fig, axes = plt.subplots(rows, 2, figsize=(2 * side + 0.5, (side + 0.6) * rows), squeeze=False)
    for row, head in enumerate(heads):
        for col, (name, matrix) in enumerate((("ideal", head["ideal"]), ("compiled", head["compiled"]))):
            ax = axes[row][col]
            if matrix is None:
                ax.axis("off")
                ax.set_title("ideal: needs the program", fontsize=8)
                continue
            ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_xlabel("key", fontsize=7)
            ax.set_ylabel("query", fontsize=7)
            ax.set_title(f"{head['name']} {name}", fontsize=8)
        axes[row][0].annotate(head["title"][:110], (0, 1.18), xycoords="axes fraction", fontsize=7)
    if not heads:
        axes[0][0].axis("off")
        axes[0][1].axis("off")
        axes[0][0].set_title("this model has no attention heads", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def node_layers(model) -> dict[str, int]:
    """The layer computing each node (0: embeddings and free forms of them)."""
    layers: dict[str, int] = {}
    record = model.compilation
    if record is None:  # a loaded model: no program graph to place
        return layers
    graph, plan = record.graph, record.schedule
    for label in graph.order:
        if label in plan.time:
            layers[label] = plan.layer_of(label)
    for layer in model.info.layers:
        for head in layer.heads:
            layers.setdefault(head.selector, layer.index)
    for label in reversed(graph.order):  # folded Maps, sub-selectors: their reader's layer
        if label not in layers:
            users = [layers[u] for u in graph.users(label) if u in layers]
            if users:
                layers[label] = min(users)
    return layers


def graph_picture(model, path) -> Path:
    """The program's dependency graph, nodes placed and coloured by layer (PNG or SVG)."""
    from rasp_compiler.records import require_compilation

    record = require_compilation(model, "graph_picture", does="draws the RASP program's graph")
    plt = _pyplot()
    import networkx as nx

    graph = nx.DiGraph(record.graph.graph)
    layers = node_layers(model)
    for label in graph.nodes:
        graph.nodes[label]["layer"] = layers.get(label, -1)
    positions = nx.multipartite_layout(graph, subset_key="layer")
    depth = max(1, model.depth)
    cmap = plt.get_cmap("viridis")
    colors = [cmap(max(layers.get(n, 0), 0) / depth) for n in graph.nodes]
    shapes = {n: "s" if isinstance(record.graph.expr(n), rasp.SOp) else "o" for n in graph.nodes}
    fig, ax = plt.subplots(figsize=(3 + 2.2 * depth, 1 + 0.5 * len(graph)))
    for shape in ("s", "o"):
        nodes = [n for n in graph.nodes if shapes[n] == shape]
        nx.draw_networkx_nodes(graph, positions, nodelist=nodes, node_shape=shape, ax=ax,
                               node_color=[colors[list(graph.nodes).index(n)] for n in nodes],
                               node_size=500)
    nx.draw_networkx_edges(graph, positions, ax=ax, arrows=True, alpha=0.5)
    nx.draw_networkx_labels(graph, {n: (x, y + 0.04) for n, (x, y) in positions.items()},
                            font_size=7, ax=ax)
    ax.set_title(f"{model.output}: squares are SOps, circles selectors; colour and column = layer")
    ax.axis("off")
    path = Path(path)
    fig.savefig(path, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
