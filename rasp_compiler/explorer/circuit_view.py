"""The explorer's circuit panel, as JSON-ready data: every node of the model placed on the
layer plan, every structural edge, and which of them the functional circuit keeps, each
kept edge with its effect share and one pair that shows it.

Why its own module: the circuit is measured by patching (rasp_compiler.circuits), not
read off one input's run like the other views, so it has its own cost and its own cap.
The page computes the functional circuit once per model on CIRCUIT_PAIRS random
same-length pairs (seed CIRCUIT_SEED): a few hundredths of a second for the bundled
programs, a few tenths for the deepest, so a page stays fast to write and to serve; the
panel says which pairs were used, and `rasp-compiler circuit PROGRAM --functional`
measures the default (larger) sample. For each kept edge's example pair the page also
shows the corrupt input's own output, so a reader sees the clean output, the corrupt
one, and what patching that single edge does to the clean run.
"""

from __future__ import annotations

from rasp_compiler.errors import RaspCompilerError
from rasp_compiler.explorer.views import show
from rasp_compiler.model.hooks import Slot

CIRCUIT_PAIRS = 64  # the page's cap on the pairs its functional circuit is measured on
CIRCUIT_SEED = 0
GRANULARITY = "head"  # one node per attention head, as the layer plan draws them


def circuit_view(model) -> dict:
    """The circuit panel's data for `model` (a CompiledModel, or a CompressedModel: its
    own circuit where its reads are linear, else its base model's, said in `note`).
    Tokens and values are written as the rest of the page writes them (views.show). A
    model whose circuit cannot be taken gives {"error": why}."""
    from rasp_compiler.circuits import circuit as circuit_of

    note = ""
    try:
        try:
            functional = circuit_of(model, GRANULARITY, functional=True,
                                    samples=CIRCUIT_PAIRS, seed=CIRCUIT_SEED)
        except RaspCompilerError as refusal:
            base = getattr(model, "base", None)
            if base is None:
                raise
            note = f"The circuit shown is the exact (uncompressed) model's: {refusal}"
            model = base
            functional = circuit_of(model, GRANULARITY, functional=True,
                                    samples=CIRCUIT_PAIRS, seed=CIRCUIT_SEED)
    except RaspCompilerError as refusal:
        return {"error": f"no circuit for this model: {refusal}"}
    structural = set(functional.structural_edges)
    kept = set(functional.edges)
    computes = functional.alignment.model_to_rasp
    depth = functional.depth
    columns = [{"position": 0, "name": "embeddings"}]
    for layer in range(depth):
        columns += [{"position": Slot.attention(layer).time, "name": f"layer {layer} attention"},
                    {"position": Slot.mlp(layer).time, "name": f"layer {layer} MLP"}]
    columns.append({"position": 2 * depth + 1, "name": "output"})
    in_structural = {name for edge in structural for name in (edge.source, edge.destination)}
    nodes = [{"name": node.name, "short": node.short, "kind": node.kind, "layer": node.layer,
              "head": node.head, "position": node.position,
              "computes": list(computes.get(node.name, ())),
              "structural": node.name in in_structural,
              "functional": node.name in functional.nodes}
             for node in functional.model_nodes]
    edges = []
    for edge in functional.structural_edges:
        effect = functional.effects[edge]
        example = None
        if edge in kept and effect.example is not None:
            example = _example(effect.example, model)
        edges.append({"name": edge.name, "source": edge.source,
                      "destination": edge.destination, "input": edge.input,
                      "functional": edge in kept, "share": effect.share,
                      "changed": effect.changed, "tried": effect.tried, "example": example})
    return {
        "program": functional.program, "granularity": GRANULARITY,
        "ablation": functional.ablation, "pairs": functional.pairs.describe(),
        "cap": CIRCUIT_PAIRS, "seed": CIRCUIT_SEED, "note": note,
        "candidates": len(functional.candidates), "columns": columns, "nodes": nodes,
        "edges": edges, "seconds": round(functional.seconds, 3),
    }


def _example(example, model) -> dict:
    """One pair that shows an edge: the clean and corrupt inputs, the output of each, and
    the clean run's output with only that edge patched."""
    corrupt_output = None
    if example.corrupt is not None:
        corrupt_output = [show(v) for v in _run(model, example.corrupt)]
    return {
        "clean": [show(t) for t in example.clean],
        "corrupt": None if example.corrupt is None else [show(t) for t in example.corrupt],
        "clean_output": [show(v) for v in example.clean_output],
        "corrupt_output": corrupt_output,
        "patched_output": [show(v) for v in example.patched_output],
    }


def _run(model, tokens) -> list:
    """The model's decoded output on one input: the numpy forward for a compiled model (no
    XLA compilation per length, as the page's other views)."""
    if hasattr(model, "base"):  # a CompressedModel runs its own way
        return model.run([list(tokens)])[0]
    return model.run([list(tokens)], backend="numpy")[0]
