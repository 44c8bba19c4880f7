"""The model as a graph of residual readers and writers, at three granularities.

A `Network` is what every part of circuits/ works on: the model's weights as numpy
arrays in the haiku layout (`params`, `shape`, what `forward_numpy` runs), the
readout as a matrix `readout_matrix` [D, k] (the output's columns, or for a
compressed model the projection back to them), and the nodes of one granularity
with the residual dimensions each writes and each input reads.

Nodes, in forward order (`ModelNode.position` is the sublayer: 0 the embeddings,
2l+1 layer l's attention, 2l+2 its MLP, 2L+1 the output):

- "head":      embed, pos_embed, blocks.{l}.attn.{h}, blocks.{l}.mlp, output
- "component": embed, pos_embed, blocks.{l}.attn (the layer's heads together),
               blocks.{l}.mlp, output
- "matrix":    embed, pos_embed, blocks.{l}.attn.{h}.q / .k / .v / .o,
               blocks.{l}.mlp.in / .out, output

An edge is (source, destination, input). Residual edges go from a node that writes
the residual (embed, pos_embed, a head or its .o, an attention layer, an MLP or its
.out) to a later node's input that reads it: q, k, v of a head (or of .q, .k, .v),
in of an MLP (or .in) and of the output. At matrix granularity a head also has its
internal edges .q -> .o (input q), .k -> .o (k), .v -> .o (v), and an MLP .in -> .out
(in). The candidate edges are every such pair the layer order allows (the complete
graph a discovery method searches); the weight edges those where the source writes a
dimension the input reads with a non-zero weight (internal edges: both matrices
non-zero); the structural circuit the weight edges on a path from the embeddings to
the output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.model.forward import ModelShape

GRANULARITIES = ("head", "component", "matrix")
INPUTS = ("q", "k", "v", "in")
EMBEDDINGS = ("embed", "pos_embed")
OUTPUT = "output"


class Edge(NamedTuple):
    """One edge: `source` writes what `destination` reads at `input` (q, k, v or in)."""

    source: str
    destination: str
    input: str

    @property
    def name(self) -> str:
        """`source->destination[input]`, e.g. `embed->blocks.1.attn.0[v]`."""
        return f"{self.source}->{self.destination}[{self.input}]"

    def __str__(self) -> str:
        return self.name


EDGE_NAME = re.compile(r"^(?P<source>.+?)->(?P<destination>.+)\[(?P<input>q|k|v|in)\]$")


def parse_edge(text: str) -> Edge | None:
    """The Edge a name `source->destination[input]` spells, or None if it is not one."""
    match = EDGE_NAME.match(text) if isinstance(text, str) else None
    return Edge(match["source"], match["destination"], match["input"]) if match else None


@dataclass(frozen=True)
class ModelNode:
    """One node of the model graph. `kind`: embed, pos_embed, head, attn, mlp, output,
    or at matrix granularity q, k, v, o, mlp.in, mlp.out."""

    name: str
    kind: str
    layer: int | None
    head: int | None
    position: int  # the sublayer, in forward order

    @property
    def short(self) -> str:
        """A short label: L1H0, L1H0.q, A1 (layer 1's attention), MLP1, MLP1.in, ..."""
        if self.kind in EMBEDDINGS or self.kind == OUTPUT:
            return self.name
        if self.kind == "attn":
            return f"A{self.layer}"
        if self.kind in ("mlp", "mlp.in", "mlp.out"):
            return f"MLP{self.layer}" + self.kind[3:]
        base = f"L{self.layer}H{self.head}"
        return base if self.kind == "head" else f"{base}.{self.kind}"


def check_granularity(granularity) -> str:
    if granularity not in GRANULARITIES:
        raise InvalidInputError(
            f"granularity must be one of {', '.join(map(repr, GRANULARITIES))}, got "
            f"{granularity!r}: 'head' has one node per attention head, 'component' one per "
            f"attention layer, 'matrix' one per weight matrix (W_Q, W_K, W_V, W_O, W_in, W_out)"
        )
    return granularity


class Network:
    """A model's weights (numpy, haiku layout) and its nodes at one granularity.

    `params`/`shape` run in `forward_numpy`; `readout_matrix` [D, k] maps the final
    residual to the output's readout columns; `readout` decodes those columns
    (`nearest`: as a compressed model does, the largest column). `model` is the model it
    was built from (a CompiledModel, or a CompressedModel with linear reads), `compiled`
    the CompiledModel (the compressed model's `base`) that encodes inputs and has the info.
    """

    nearest: bool = False
    compiled = None

    def __init__(self, *, params: dict, shape: ModelShape, readout_matrix: np.ndarray,
                 readout, model, granularity: str, name: str):
        self.params = params
        self.shape = shape
        self.readout_matrix = np.asarray(readout_matrix, np.float32)
        self.readout = readout
        self.model = model
        self.name = name
        self.granularity = check_granularity(granularity)
        self.depth = len(shape.layers)
        self.nodes: list[ModelNode] = []
        self.writes: dict[str, np.ndarray] = {}  # node -> bool [D]
        self.reads: dict[tuple[str, str], np.ndarray] = {}  # (node, input) -> bool [D]
        self._build()
        self.by_name = {node.name: node for node in self.nodes}

    # -------------------------------------------------------------- weights per head

    def layer_weights(self, l: int) -> dict[str, np.ndarray]:
        """Layer l's weights split by head: q, k [D, H, dk]; v [D, H, dv]; o [H, dv, D];
        w1 [D, M]; w2 [M, D]."""
        layer = self.shape.layers[l]
        p = self.params
        d, h, dk, dv = self.shape.d_model, layer.heads, layer.key_size, layer.value_size
        return {
            "q": p[f"layer_{l}/attn/query"]["w"].reshape(d, h, dk),
            "k": p[f"layer_{l}/attn/key"]["w"].reshape(d, h, dk),
            "v": p[f"layer_{l}/attn/value"]["w"].reshape(d, h, dv),
            "o": p[f"layer_{l}/attn/linear"]["w"].reshape(h, dv, d),
            "w1": p[f"layer_{l}/mlp/linear_1"]["w"],
            "w2": p[f"layer_{l}/mlp/linear_2"]["w"],
        }

    # -------------------------------------------------------------- nodes

    def _build(self) -> None:
        p = self.params
        nonzero_columns = lambda m: np.any(m != 0, axis=0)
        nonzero_rows = lambda m: np.any(m != 0, axis=1)
        self._add("embed", "embed", None, None, 0)
        self.writes["embed"] = nonzero_columns(p["token_embed"]["embeddings"])
        self._add("pos_embed", "pos_embed", None, None, 0)
        self.writes["pos_embed"] = nonzero_columns(p["pos_embed"]["embeddings"])
        for l, layer in enumerate(self.shape.layers):
            w = self.layer_weights(l)
            attn, mlp = 2 * l + 1, 2 * l + 2
            head_reads = [{x: nonzero_rows(w[x][:, h, :]) for x in "qkv"}
                          for h in range(layer.heads)]
            head_writes = [nonzero_columns(w["o"][h]) for h in range(layer.heads)]
            if self.granularity == "component" and layer.heads:
                name = f"blocks.{l}.attn"
                self._add(name, "attn", l, None, attn)
                self.writes[name] = np.any(head_writes, axis=0)
                for x in "qkv":
                    self.reads[name, x] = np.any([r[x] for r in head_reads], axis=0)
            elif self.granularity == "head":
                for h in range(layer.heads):
                    name = f"blocks.{l}.attn.{h}"
                    self._add(name, "head", l, h, attn)
                    self.writes[name] = head_writes[h]
                    for x in "qkv":
                        self.reads[name, x] = head_reads[h][x]
            elif self.granularity == "matrix":
                for h in range(layer.heads):
                    base = f"blocks.{l}.attn.{h}"
                    for x in "qkv":
                        self._add(f"{base}.{x}", x, l, h, attn)
                        self.reads[f"{base}.{x}", x] = head_reads[h][x]
                    self._add(f"{base}.o", "o", l, h, attn)
                    self.writes[f"{base}.o"] = head_writes[h]
            if layer.mlp_hidden:
                reads, writes = nonzero_rows(w["w1"]), nonzero_columns(w["w2"])
                if self.granularity == "matrix":
                    self._add(f"blocks.{l}.mlp.in", "mlp.in", l, None, mlp)
                    self.reads[f"blocks.{l}.mlp.in", "in"] = reads
                    self._add(f"blocks.{l}.mlp.out", "mlp.out", l, None, mlp)
                    self.writes[f"blocks.{l}.mlp.out"] = writes
                else:
                    self._add(f"blocks.{l}.mlp", "mlp", l, None, mlp)
                    self.reads[f"blocks.{l}.mlp", "in"] = reads
                    self.writes[f"blocks.{l}.mlp"] = writes
        self._add(OUTPUT, OUTPUT, None, None, 2 * self.depth + 1)
        self.reads[OUTPUT, "in"] = nonzero_rows(self.readout_matrix)

    def _add(self, name, kind, layer, head, position) -> None:
        self.nodes.append(ModelNode(name, kind, layer, head, position))

    # -------------------------------------------------------------- edges

    def internal_edges(self) -> list[Edge]:
        """Matrix granularity: each head's .q/.k/.v -> .o and each MLP's .in -> .out."""
        out = []
        for node in self.nodes:
            if node.kind in ("q", "k", "v"):
                out.append(Edge(node.name, node.name[:-1] + "o", node.kind))
            elif node.kind == "mlp.in":
                out.append(Edge(node.name, node.name[:-2] + "out", "in"))
        return out

    def candidates(self) -> list[Edge]:
        """Every edge the layer order allows (the complete graph), in forward order of
        the destination, then of the source."""
        edges = []
        writers = [n for n in self.nodes if n.name in self.writes]
        internal = {}
        for edge in self.internal_edges():
            internal.setdefault(edge.destination, []).append(edge)
        for node in self.nodes:
            edges.extend(internal.get(node.name, ()))
            for x in INPUTS:
                if (node.name, x) not in self.reads:
                    continue
                edges.extend(Edge(s.name, node.name, x) for s in writers
                             if s.position < node.position)
        return edges

    def has_weight(self, edge: Edge) -> bool:
        """The source writes a dimension the destination's input reads (internal edges:
        the input matrix reads something and the output matrix writes something)."""
        if (edge.destination, edge.input) in self.reads and edge.source in self.writes:
            return bool(np.any(self.writes[edge.source] & self.reads[edge.destination,
                                                                      edge.input]))
        return bool(np.any(self.reads[edge.source, edge.input])
                    and np.any(self.writes[edge.destination]))

    def structural(self) -> list[Edge]:
        """The weight edges on a path from the embeddings to the output, in candidate order."""
        weighted = [e for e in self.candidates() if self.has_weight(e)]
        forward = set(EMBEDDINGS)
        for edge in weighted:  # candidates come in forward order of the destination
            if edge.source in forward:
                forward.add(edge.destination)
        backward = {OUTPUT}
        for edge in reversed(weighted):
            if edge.destination in backward:
                backward.add(edge.source)
        return [e for e in weighted if e.source in forward and e.destination in backward]


# ---------------------------------------------------------------------------- builders


def network_of(model, granularity: str) -> Network:
    """The Network of a CompiledModel, or of a CompressedModel with linear reads (its
    compressed stream is an ordinary residual of width d: every embedding and write is
    multiplied by W, every read by W.T, and the readout reads h @ W.T)."""
    granularity = check_granularity(granularity)
    base = getattr(model, "base", None)
    if base is not None and hasattr(model, "W"):  # a CompressedModel
        if model.readers:
            raise InvalidInputError(
                "circuits of a compressed model need linear reads: this one has a ReLU decoder "
                "per read (compress(..., nonlinear=True)), which is not one residual stream; "
                "compress with nonlinear=False"
            )
        w = np.asarray(model.W, np.float32)
        params = _numpy_params(base.params)
        folded = {"token_embed": {"embeddings": params["token_embed"]["embeddings"] @ w},
                  "pos_embed": {"embeddings": params["pos_embed"]["embeddings"] @ w}}
        for l in range(len(base.shape.layers)):
            for name in ("query", "key", "value"):
                folded[f"layer_{l}/attn/{name}"] = {"w": w.T @ params[f"layer_{l}/attn/{name}"]["w"]}
            folded[f"layer_{l}/attn/linear"] = {"w": params[f"layer_{l}/attn/linear"]["w"] @ w}
            folded[f"layer_{l}/mlp/linear_1"] = {"w": w.T @ params[f"layer_{l}/mlp/linear_1"]["w"]}
            folded[f"layer_{l}/mlp/linear_2"] = {"w": params[f"layer_{l}/mlp/linear_2"]["w"] @ w}
        from dataclasses import replace

        readout = base.readouts[base.output]
        network = Network(params=folded, shape=replace(base.shape, d_model=w.shape[1]),
                          readout_matrix=w.T[:, list(readout.indices)], readout=readout,
                          model=model, granularity=granularity, name=base.output)
        network.nearest, network.compiled = True, base
        return network
    readout = model.readouts[model.output]
    matrix = np.zeros((model.shape.d_model, len(readout.indices)), np.float32)
    matrix[list(readout.indices), np.arange(len(readout.indices))] = 1.0
    network = Network(params=_numpy_params(model.params), shape=model.shape,
                      readout_matrix=matrix, readout=readout, model=model,
                      granularity=granularity, name=model.output)
    network.nearest, network.compiled = False, model
    return network


def _numpy_params(params) -> dict:
    return {module: {key: np.asarray(value, np.float32) for key, value in inner.items()}
            for module, inner in params.items()}
