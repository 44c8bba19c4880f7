"""The `Circuit` record: nodes, edges, the alignment with the program, names, exports.

Name maps (documented in docs/circuits.md):

- auto-circuit (head granularity; its factorized graph of a TransformerLens model with
  separate q/k/v inputs): embed and pos_embed are both `Resid Start`, head h of layer l
  is `A{l}.{h}` as a source and `A{l}.{h}.Q`/`.K`/`.V` as a destination, an MLP
  `MLP {l}`, the output `Resid End`; an edge is `source->destination`.
- The public tracr circuit benchmark (circuits_benchmark, InterpBench): its `component`
  names are `embed`, `pos_embed`, `blocks.{l}.attn[h]` (a head), `blocks.{l}.mlp`; its
  `matrix` names `embed.W_E`, `pos_embed.W_pos`, `blocks.{l}.attn.W_Q[h]` (W_K, W_V,
  W_O), `blocks.{l}.mlp.W_in`, `blocks.{l}.mlp.W_out`. It has no output node: edges into
  the output have no benchmark name. Its edges are (source, destination) pairs.
- TransformerLens hooks: a node's output is `hook_embed`, `hook_pos_embed`,
  `blocks.{l}.attn.hook_z` (head h: index h of the head axis), `blocks.{l}.hook_attn_out`,
  `blocks.{l}.hook_mlp_out`, `blocks.{l}.attn.hook_q`/`_k`/`_v` (matrix .q/.k/.v),
  `blocks.{l}.mlp.hook_pre` (.in), and the output the last `hook_resid_post`; an edge's
  input is `blocks.{l}.hook_q_input` (head h; `hook_k_input`, `hook_v_input`: with
  `use_split_qkv_input`), `blocks.{l}.hook_mlp_in`, or that `hook_resid_post`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from rasp_compiler.circuits.network import Edge, ModelNode, parse_edge
from rasp_compiler.circuits.pairs import PairSample
from rasp_compiler.circuits.patching import EdgeEffect
from rasp_compiler.errors import InvalidInputError, SaveError, UnknownNameError
from rasp_compiler.model.hooks import hook


@dataclass(frozen=True)
class Alignment:
    """Which model nodes compute each RASP node, and which RASP nodes each model node
    computes. RASP nodes are the program's labels (SOps and selectors) and the compiler's
    hidden ones (`target.attn`, a SelectorWidth's count; `(tokens, indices)`, a lookup
    for a Boolean selector)."""

    rasp_to_model: Mapping[str, tuple[str, ...]]
    model_to_rasp: Mapping[str, tuple[str, ...]]

    def __getitem__(self, label: str) -> tuple[str, ...]:
        if label in self.rasp_to_model:
            return self.rasp_to_model[label]
        if label in self.model_to_rasp:
            return self.model_to_rasp[label]
        raise UnknownNameError(
            f"{label!r} is neither a RASP node with model nodes ({', '.join(self.rasp_to_model)}) "
            f"nor a model node ({', '.join(self.model_to_rasp)})"
        )


@dataclass(frozen=True)
class Circuit:
    """A model's circuit at one granularity (see rasp_compiler.circuits).

    `edges` are the circuit's edges (structural, or with `functional` the ones whose patch
    alone changes the decoded output on some pair); `nodes` the nodes they touch, in
    forward order. `structural_edges` is the structural circuit (equal to `edges` when not
    functional), `candidates` every edge the layer order allows (what a discovery method
    scores), `model_nodes` every node of the model. A functional circuit has its
    `ablation`, its `pairs` and, for every structural edge, its `effects`.
    """

    program: str
    granularity: str
    edges: tuple[Edge, ...]
    nodes: tuple[str, ...]
    structural_edges: tuple[Edge, ...]
    candidates: tuple[Edge, ...]
    model_nodes: tuple[ModelNode, ...]
    alignment: Alignment
    layer_heads: tuple[int, ...]  # heads per layer
    layer_mlps: tuple[bool, ...]  # whether each layer has an MLP
    functional: bool = False
    ablation: str | None = None
    pairs: PairSample | None = None
    effects: Mapping[Edge, EdgeEffect] = field(default_factory=lambda: MappingProxyType({}))
    seconds: float = 0.0

    # -------------------------------------------------------------- lookups

    def __len__(self) -> int:
        return len(self.edges)

    def __iter__(self):
        return iter(self.edges)

    def __contains__(self, edge) -> bool:
        try:
            return self.edge(edge) in self._edge_set
        except UnknownNameError:
            return False

    def edge(self, key) -> Edge:
        """The candidate edge `key` names: an Edge, a (source, destination, input) tuple or
        a name `source->destination[input]`."""
        edge = key if isinstance(key, Edge) else (
            Edge(*key) if isinstance(key, tuple) and len(key) == 3 else parse_edge(key))
        if edge is None or edge not in self._candidate_set:
            raise UnknownNameError(
                f"{key!r} names no edge of this model at {self.granularity} granularity; edges "
                f"are written source->destination[input] (input q, k, v or in), e.g. "
                f"{self.candidates[0].name if self.candidates else 'embed->output[in]'}"
            )
        return edge

    @cached_property
    def _candidate_set(self) -> frozenset:
        return frozenset(self.candidates)

    @cached_property
    def _edge_set(self) -> frozenset:
        return frozenset(self.edges)

    def node(self, name: str) -> ModelNode:
        for node in self.model_nodes:
            if node.name == name:
                return node
        raise UnknownNameError(f"no node {name!r} at {self.granularity} granularity; nodes: "
                               f"{', '.join(n.name for n in self.model_nodes)}")

    @property
    def edge_names(self) -> tuple[str, ...]:
        return tuple(edge.name for edge in self.edges)

    @property
    def depth(self) -> int:
        return len(self.layer_heads)

    # -------------------------------------------------------------- name maps

    def auto_circuit_names(self) -> dict[Edge, str]:
        """Each candidate edge's auto-circuit name (head granularity only); embed and
        pos_embed are both auto-circuit's `Resid Start`, so two edges can share a name."""
        if self.granularity != "head":
            raise InvalidInputError(
                f"auto-circuit's graph has one node per head: take the circuit at head "
                f"granularity (this one is at {self.granularity} granularity)"
            )
        return {edge: auto_circuit_edge(self.node(edge.source), self.node(edge.destination),
                                        edge.input) for edge in self.candidates}

    def auto_circuit_edges(self) -> set[str]:
        """The circuit's edges by auto-circuit's names (`Resid Start->A1.0.V`, ...)."""
        names = self.auto_circuit_names()
        return {names[edge] for edge in self.edges}

    def auto_circuit_candidates(self) -> list[str]:
        """Every edge of auto-circuit's factorized graph of this model's TransformerLens
        export, where every layer has the widest layer's head count and an MLP."""
        heads = max([1, *self.layer_heads])
        sources = [("Resid Start", 0)]
        destinations = []
        for l in range(self.depth):
            sources += [(f"A{l}.{h}", 2 * l + 1) for h in range(heads)] + [(f"MLP {l}", 2 * l + 2)]
            destinations += [(f"A{l}.{h}.{x}", 2 * l + 1) for h in range(heads) for x in "QKV"]
            destinations.append((f"MLP {l}", 2 * l + 2))
        destinations.append(("Resid End", 2 * self.depth + 1))
        return [f"{s}->{d}" for d, dp in destinations for s, sp in sources if sp < dp]

    def benchmark_names(self) -> dict[str, str | None]:
        """Each model node's name in the public tracr circuit benchmark (None: the output,
        which the benchmark has no node for)."""
        return {node.name: benchmark_node(node, self.granularity) for node in self.model_nodes}

    def benchmark_edges(self) -> set[tuple[str, str]]:
        """The circuit's edges as the benchmark's (source, destination) pairs."""
        names = self.benchmark_names()
        return {(names[e.source], names[e.destination]) for e in self.edges
                if names[e.destination] is not None}

    def transformer_lens_names(self) -> dict[str, tuple[str, int | None]]:
        """Each model node's TransformerLens hook: (hook name, head index or None)."""
        return {node.name: transformer_lens_hook(node, self.depth) for node in self.model_nodes}

    def transformer_lens_input(self, edge) -> tuple[str, int | None]:
        """The TransformerLens hook where an edge enters its destination (TransformerLens
        with use_split_qkv_input for heads): hook_q_input, hook_mlp_in, hook_resid_post."""
        edge = self.edge(edge)
        node = self.node(edge.destination)
        if node.kind == "output":
            return transformer_lens_hook(node, self.depth)
        if node.kind in ("mlp", "mlp.in", "mlp.out"):
            return (hook(node.layer, "hook_mlp_in") if node.kind != "mlp.out"
                    else hook(node.layer, "mlp.hook_pre"), None)
        if node.kind == "o":
            return hook(node.layer, f"attn.hook_{edge.input}"), node.head
        return hook(node.layer, f"hook_{edge.input}_input"), node.head

    # -------------------------------------------------------------- exports

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data (values that JSON cannot hold are their repr)."""
        tl = self.transformer_lens_names()
        bench = self.benchmark_names()
        auto = self.auto_circuit_names() if self.granularity == "head" else {}
        nodes = [{"name": n.name, "kind": n.kind, "layer": n.layer, "head": n.head,
                  "in_circuit": n.name in self.nodes,
                  "computes": list(self.alignment.model_to_rasp.get(n.name, ())),
                  "transformer_lens": list(tl[n.name]) if tl[n.name] else None,
                  "benchmark": bench[n.name]} for n in self.model_nodes]
        edges = []
        for edge in self.structural_edges:
            item = {"source": edge.source, "destination": edge.destination,
                    "input": edge.input, "name": edge.name,
                    "in_circuit": edge in self._edge_set,
                    "auto_circuit": auto.get(edge),
                    "transformer_lens_input": list(self.transformer_lens_input(edge))}
            effect = self.effects.get(edge)
            if effect is not None:
                item["effect"] = {"share": effect.share, "changed": effect.changed,
                                  "tried": effect.tried,
                                  "example": None if effect.example is None else {
                                      k: _jsonable(v) for k, v in vars(effect.example).items()}}
            edges.append(item)
        return {
            "program": self.program, "granularity": self.granularity,
            "functional": self.functional, "ablation": self.ablation,
            "pairs": None if self.pairs is None else self.pairs.describe(),
            "nodes": nodes, "edges": edges,
            "alignment": {label: list(nodes) for label, nodes in
                          self.alignment.rasp_to_model.items()},
            "candidate_edges": len(self.candidates),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """`to_dict()` as JSON text; with `path`, also written there."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            _write(path, text)
        return text

    def to_networkx(self):
        """A networkx MultiDiGraph of the circuit: one edge per (source, destination, input),
        keyed by input; nodes carry kind, layer, head and what they compute, edges their
        name and (functional) effect share and example."""
        import networkx as nx

        graph = nx.MultiDiGraph(program=self.program, granularity=self.granularity,
                                functional=self.functional, ablation=self.ablation)
        for node in self.model_nodes:
            if node.name in self.nodes:
                graph.add_node(node.name, kind=node.kind, layer=node.layer, head=node.head,
                               computes=self.alignment.model_to_rasp.get(node.name, ()))
        for edge in self.edges:
            effect = self.effects.get(edge)
            graph.add_edge(edge.source, edge.destination, key=edge.input, input=edge.input,
                           name=edge.name, share=None if effect is None else effect.share,
                           example=None if effect is None else effect.example)
        return graph

    def to_dot(self) -> str:
        """Graphviz DOT text: nodes ranked by sublayer (embeddings at the bottom), edges
        labelled by input; a functional circuit draws the structural edges it drops dashed."""
        kept = set(self.edges)
        shown = self.structural_edges if self.functional else self.edges
        names = {n for e in shown for n in (e.source, e.destination)}
        lines = [f"digraph {json.dumps(self.program + ' circuit')} {{", "  rankdir=BT;",
                 '  node [shape=box, fontname="Helvetica"];']
        ranks: dict[int, list[str]] = {}
        for node in self.model_nodes:
            if node.name in names:
                computes = ", ".join(self.alignment.model_to_rasp.get(node.name, ()))
                label = node.name + (f"\n{computes}" if computes else "")
                lines.append(f"  {json.dumps(node.name)} [label={json.dumps(label)}];")
                ranks.setdefault(node.position, []).append(json.dumps(node.name))
        for members in ranks.values():
            lines.append(f"  {{rank=same; {'; '.join(members)}}}")
        for edge in shown:
            style = "" if edge in kept else ", style=dashed, color=gray"
            lines.append(f"  {json.dumps(edge.source)} -> {json.dumps(edge.destination)} "
                         f"[label={json.dumps(edge.input)}{style}];")
        lines.append("}")
        return "\n".join(lines)

    def __str__(self) -> str:
        kind = "functional" if self.functional else "structural"
        head = (f"{self.program}: {kind} circuit at {self.granularity} granularity, "
                f"{len(self.nodes)} nodes, {len(self.edges)} edges")
        if self.functional:
            head += (f" of {len(self.structural_edges)} structural ({self.ablation} ablation "
                     f"on {self.pairs.describe()})")
        else:
            head += f" (of {len(self.candidates)} candidate edges)"
        lines = [head]
        tried = "pairs" if self.pairs is None or self.pairs.corrupt is not None else "inputs"
        for edge in self.edges:
            line = f"  {edge.name}"
            effect = self.effects.get(edge)
            if effect is not None:
                line += f"  changes {effect.share:.0%} of {tried}"
            lines.append(line)
        return "\n".join(lines)

    def __repr__(self) -> str:
        kind = "functional" if self.functional else "structural"
        return (f"Circuit({self.program!r}, {kind}, {self.granularity}, {len(self.nodes)} nodes, "
                f"{len(self.edges)} edges)")


# ---------------------------------------------------------------------------- names


def auto_circuit_edge(source: ModelNode, destination: ModelNode, input: str) -> str:
    def src(node):
        if node.kind in ("embed", "pos_embed"):
            return "Resid Start"
        return f"A{node.layer}.{node.head}" if node.kind == "head" else f"MLP {node.layer}"

    if destination.kind == "output":
        dest = "Resid End"
    elif destination.kind == "head":
        dest = f"A{destination.layer}.{destination.head}.{input.upper()}"
    else:
        dest = f"MLP {destination.layer}"
    return f"{src(source)}->{dest}"


def benchmark_node(node: ModelNode, granularity: str) -> str | None:
    """`node`'s name in the public tracr circuit benchmark (None for the output)."""
    kind, l, h = node.kind, node.layer, node.head
    if kind in ("embed", "pos_embed") and granularity == "matrix":
        return {"embed": "embed.W_E", "pos_embed": "pos_embed.W_pos"}[kind]
    return {
        "embed": "embed", "pos_embed": "pos_embed", "output": None,
        "head": f"blocks.{l}.attn[{h}]", "attn": f"blocks.{l}.attn", "mlp": f"blocks.{l}.mlp",
        "q": f"blocks.{l}.attn.W_Q[{h}]", "k": f"blocks.{l}.attn.W_K[{h}]",
        "v": f"blocks.{l}.attn.W_V[{h}]", "o": f"blocks.{l}.attn.W_O[{h}]",
        "mlp.in": f"blocks.{l}.mlp.W_in", "mlp.out": f"blocks.{l}.mlp.W_out",
    }[kind]


def transformer_lens_hook(node: ModelNode, depth: int) -> tuple[str, int | None] | None:
    kind, l = node.kind, node.layer
    if kind in ("embed", "pos_embed"):
        return f"hook_{kind}", None
    if kind == "output":
        return (hook(depth - 1, "hook_resid_post"), None) if depth else None
    if kind in ("head", "o"):
        return hook(l, "attn.hook_z"), node.head
    if kind in ("q", "k", "v"):
        return hook(l, f"attn.hook_{kind}"), node.head
    if kind == "attn":
        return hook(l, "hook_attn_out"), None
    if kind == "mlp.in":
        return hook(l, "mlp.hook_pre"), None
    return hook(l, "hook_mlp_out"), None  # mlp, mlp.out


def _jsonable(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _write(path: str | Path, text: str) -> None:
    path = Path(path)
    if path.is_dir():
        raise SaveError(f"{path} is a folder; give a file path for the circuit")
    try:
        path.write_text(text)
    except OSError as error:
        raise SaveError(f"cannot write the circuit to {path}: {error}") from None
