"""Ground-truth circuits of compiled models, and a harness that scores discovery methods.

    circuit = model.circuit()                        # structural, head granularity
    circuit = model.circuit("matrix")                # W_Q/W_K/W_V/W_O and W_in/W_out nodes
    functional = model.circuit(functional=True)      # edges whose patch changes the output
    score_circuit(edge_attribution_patching(model), functional).roc_auc

The structural circuit: an edge (source, destination, input) is in it when the source
writes residual dimensions the destination's input reads with a non-zero weight, on a
path from the embeddings to the output (network.py). The functional circuit keeps the
structural edges whose patch alone (patching.py: the destination's input gets the
source's contribution from a corrupted input, everything else clean) changes the decoded
output on some tried pair; it depends on the corruption (pairs.py: same-length resampling
keeps the length, so heads that only count it drop out), so it carries its pairs, and
for each edge the share of pairs it changes and one that shows it. Structural contains
functional: outside the structural circuit a patch adds exactly zero.

Modules: network (nodes, reads and writes, candidate and structural edges), pairs,
patching (edge patching in `forward_numpy`), circuit (the record, name maps, exports),
alignment (model nodes <-> RASP nodes), scoring (ROC AUC, AP, P/R/F1, ROC picture),
methods (activation patching; edge attribution patching in JAX). docs/circuits.md.
"""

from __future__ import annotations

import time
from types import MappingProxyType

from rasp_compiler.circuits.alignment import alignment_of
from rasp_compiler.circuits.circuit import Alignment, Circuit
from rasp_compiler.circuits.methods import (
    EdgeScores,
    activation_patching,
    edge_attribution_patching,
)
from rasp_compiler.circuits.network import (
    GRANULARITIES,
    Edge,
    ModelNode,
    Network,
    check_granularity,
    network_of,
    parse_edge,
)
from rasp_compiler.circuits.pairs import (
    ABLATIONS,
    DEFAULT_SAMPLES,
    PairSample,
    check_ablation,
    make_pairs,
)
from rasp_compiler.circuits.patching import EdgeEffect, PatchExample, edge_effects
from rasp_compiler.circuits.scoring import CircuitScore, roc_auc, score_circuit
from rasp_compiler.errors import InvalidInputError


def circuit(model, granularity: str = "head", *, functional: bool = False, inputs=None,
            corrupt=None, ablation: str = "resample", samples: int | None = None,
            seed: int = 0) -> Circuit:
    """The circuit of `model` (a CompiledModel, or a CompressedModel with linear reads).

    `granularity`: "head", "component" or "matrix" (network.py). Without `functional`, the
    structural circuit (from the weights alone). With `functional=True`, the edges whose
    patch alone changes the decoded output on some pair: `ablation` "resample" (the
    source's output on `corrupt[i]`, a same-length corrupted `inputs[i]`), "zero" or
    "mean"; pairs default to every pair when there are few, else 256 random ones drawn
    with `seed`; `samples=n` asks for n random ones (pairs.py); the result says which
    (`circuit.pairs.describe()`).
    """
    granularity = check_granularity(granularity)
    check_ablation(ablation)
    if not functional and (inputs is not None or corrupt is not None or samples is not None
                           or ablation != "resample"):
        raise InvalidInputError(
            "inputs, corrupt, samples and ablation choose the pairs of a functional circuit; "
            "pass functional=True with them (the structural circuit comes from the weights alone)"
        )
    started = time.perf_counter()
    network = network_of(model, granularity)
    structural = network.structural()
    fields = dict(
        program=network.name, granularity=granularity, structural_edges=tuple(structural),
        candidates=tuple(network.candidates()), model_nodes=tuple(network.nodes),
        alignment=alignment_of(network),
        layer_heads=tuple(layer.heads for layer in network.shape.layers),
        layer_mlps=tuple(bool(layer.mlp_hidden) for layer in network.shape.layers),
    )
    if not functional:
        return Circuit(edges=tuple(structural), nodes=_nodes(network, structural),
                       seconds=time.perf_counter() - started, **fields)
    pairs = make_pairs(network.compiled, inputs, corrupt, ablation=ablation, samples=samples,
                       seed=seed)
    effects = edge_effects(network, structural, pairs, ablation)
    kept = [edge for edge in structural if effects[edge].changed]
    return Circuit(edges=tuple(kept), nodes=_nodes(network, kept), functional=True,
                   ablation=ablation, pairs=pairs, effects=MappingProxyType(effects),
                   seconds=time.perf_counter() - started, **fields)


def _nodes(network: Network, edges) -> tuple[str, ...]:
    used = {name for edge in edges for name in (edge.source, edge.destination)}
    return tuple(node.name for node in network.nodes if node.name in used)


__all__ = [
    "ABLATIONS",
    "Alignment",
    "Circuit",
    "CircuitScore",
    "DEFAULT_SAMPLES",
    "Edge",
    "EdgeEffect",
    "EdgeScores",
    "GRANULARITIES",
    "ModelNode",
    "PairSample",
    "PatchExample",
    "activation_patching",
    "circuit",
    "edge_attribution_patching",
    "make_pairs",
    "parse_edge",
    "roc_auc",
    "score_circuit",
]
