"""What every part of a compiled model computes, read from the compiler's record (no input
is run): the layer plan report and the residual map.

- `layer_plan_report(model)` (`model.layer_plan_report()`): per layer, each head (the
  selector it implements, the SOps its query, key and value sides read, the SOp it writes)
  and each MLP part (the ops it computes, fused ones listed, its neurons and outputs);
  where every node of the program lives; depth against the lower bound. Text, JSON, repr.
- `residual_map(model)`: each SOp's dimensions, and which sublayer writes and which read it.
- `head_to_selector`, `selector_to_heads`: the two directions of that map for heads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from rasp_compiler.errors import UnknownNameError
from rasp_compiler.lang import rasp
from rasp_compiler.model.html import layout_html
from rasp_compiler.model.records import CompilationRecord


@dataclass(frozen=True)
class NodePlace:
    """Where one node of the RASP program lives in the model."""

    label: str
    kind: str  # SOp / selector class name
    place: str  # "embedding", "head", "mlp", "linear form", "folded", "selector", "unused"
    where: str  # a human-readable location


@dataclass(frozen=True)
class LayerPlanReport:
    depth: int
    lower_bound: int
    layers: tuple[dict, ...]
    nodes: tuple[NodePlace, ...]

    def node(self, label: str) -> NodePlace:
        for place in self.nodes:
            if place.label == label:
                return place
        raise UnknownNameError(f"no node {label!r} in {self!r}'s program; have "
                               f"{[place.label for place in self.nodes]}")

    def to_json(self) -> str:
        return json.dumps(
            {"depth": self.depth, "lower_bound": self.lower_bound, "layers": list(self.layers),
             "nodes": [asdict(n) for n in self.nodes]}, indent=1, default=str)

    def __repr__(self) -> str:
        heads = [len(layer["heads"]) for layer in self.layers]
        return f"LayerPlanReport(depth={self.depth}, lower_bound={self.lower_bound}, heads={heads})"

    def _repr_html_(self) -> str:
        return layout_html(self)

    def __str__(self) -> str:
        lines = [f"depth {self.depth} (lower bound {self.lower_bound})"]
        for layer in self.layers:
            lines.append(f"layer {layer['index']}")
            if not layer["heads"]:
                lines.append("  attention: (empty)")
            for head in layer["heads"]:
                lines.append(
                    f"  {head['name']} {head['kind']:<9} {head['writes']:<18} <- {head['expression']}")
                lines.append(
                    f"  {'':4} query {', '.join(head['queries']) or '-'}; key "
                    f"{', '.join(head['keys']) or '-'}; value {', '.join(head['values']) or 'bos'}; "
                    f"coldness {head['coldness']:.1f}")
            if not layer["mlp"]:
                lines.append("  mlp: (empty)")
            for part in layer["mlp"]:
                lines.append(
                    f"  mlp[{part['start']}:{part['stop']}] {part['construction']:<16} "
                    f"{', '.join(part['units']) or '-'} -> {', '.join(part['outputs']) or '-'}")
        lines.append("nodes")
        width = max((len(n.label) for n in self.nodes), default=4)
        for node in self.nodes:
            lines.append(f"  {node.label:<{width}}  {node.kind:<17} {node.place:<11} {node.where}")
        return "\n".join(lines)


def layer_plan_report(model) -> LayerPlanReport:
    """The model's layer plan and where each node of the program lives."""
    layers = []
    places: dict[str, tuple[str, str]] = {}
    counted: dict[str, list[str]] = {}  # SelectorWidth -> the heads that count for it
    for layer in model.info.layers:
        heads = []
        for head in layer.heads:
            heads.append({
                "name": head.name, "kind": head.kind, "writes": head.label,
                "source": head.source, "selector": head.selector,
                "expression": head.expression, "queries": list(head.queries),
                "keys": list(head.keys), "values": list(head.values),
                "coldness": head.coldness, "key_size": head.key_size,
                "value_size": head.value_size,
            })
            where = f"{head.name} (layer {layer.index} attention)"
            if head.kind == "width":
                counted.setdefault(head.source, []).append(head.name)
            else:
                places.setdefault(head.source, ("head", where))
            places.setdefault(head.selector, ("selector", f"selector of {where}"))
        parts = []
        for part in layer.mlp:
            parts.append({
                "construction": part.construction, "units": list(part.units),
                "reads": list(part.leaves), "outputs": list(part.outputs),
                "start": part.start, "stop": part.stop,
            })
            for unit in part.units:
                mlp = f"layer {layer.index} MLP [{part.start}:{part.stop}] ({part.construction})"
                if unit in counted:
                    places.setdefault(unit, ("head+mlp", f"counted by {', '.join(counted[unit])}, "
                                                         f"decoded in {mlp}"))
                else:
                    places.setdefault(unit, ("mlp", mlp))
        layers.append({"index": layer.index, "heads": heads, "mlp": parts,
                       "mlp_hidden": layer.mlp_hidden})
    nodes = []
    record = model.compilation  # a loaded model has no program: its nodes are unknown
    if record is not None:
        ops, live = record.ops, record.schedule.live
        graph = record.graph
        parents = _selector_parents(model, record)
        for label in graph.order:
            expr = graph.expr(label)
            if label in places:
                place, where = places[label]
            elif label in counted:  # a width whose decoding is a free form (numerical)
                place, where = "head", f"counted by {', '.join(counted[label])}"
            elif label in ops.embeddings:
                place, where = "embedding", f"written by the {ops.embeddings[label].by} embedding"
            elif label in ops.forms and label in live:
                place, where = "linear form", f"free: {ops.forms[label]}"
            elif label in ops.folded and label not in live:
                heads = ", ".join(ops.folded[label])
                place, where = "folded", f"folded into the tables of {heads}"
            elif isinstance(expr, rasp.Selector) and label in parents:
                place, where = "selector", f"part of {parents[label]}"
            else:
                place, where = "unused", "not needed by the output"
            nodes.append(NodePlace(label, type(expr).__name__, place, where))
    return LayerPlanReport(model.depth, model.lower_bound, tuple(layers), tuple(nodes))


def _selector_parents(model, record: CompilationRecord) -> dict[str, str]:
    """Sub-selectors of composite selectors that reach heads, mapped to their root."""
    out: dict[str, str] = {}
    for head_layer in model.info.layers:
        for head in head_layer.heads:
            if head.selector not in record.graph.graph:
                continue
            stack = [record.graph.expr(head.selector)]
            while stack:
                expr = stack.pop()
                for child in expr.children:
                    if isinstance(child, rasp.Selector):
                        out.setdefault(child.label, head.selector)
                        stack.append(child)
    return out


def head_to_selector(model) -> dict[str, str]:
    return {head.name: head.selector for layer in model.info.layers for head in layer.heads}


def selector_to_heads(model) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for layer in model.info.layers:
        for head in layer.heads:
            out.setdefault(head.selector, []).append(head.name)
    return out


# --------------------------------------------------------------------------- residual map


@dataclass(frozen=True)
class ResidualEntry:
    owner: str
    start: int
    stop: int
    values: tuple  # the value of each dimension (numerical: ("number",))
    written_by: str
    read_by: tuple[str, ...]


@dataclass(frozen=True)
class ResidualMap:
    width: int
    entries: tuple[ResidualEntry, ...]

    def __str__(self) -> str:
        lines = [f"residual stream: {self.width} dimensions"]
        for e in self.entries:
            shown = ", ".join(str(v) for v in e.values[:8]) + (", ..." if len(e.values) > 8 else "")
            lines.append(f"  [{e.start}:{e.stop}] {e.owner}: {shown}")
            lines.append(f"      written by {e.written_by}; read by {', '.join(e.read_by) or '-'}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"width": self.width, "entries": [asdict(e) for e in self.entries]},
                          indent=1, default=str)


def residual_map(model) -> ResidualMap:
    readers: dict[str, list[str]] = {}
    forms = {} if model.compilation is None else model.compilation.ops.forms
    writers: dict[str, str] = {"one": "embeddings (every position)", "bos": "embeddings (BOS)"}
    for layer in model.info.layers:
        for head in layer.heads:
            writers[head.label] = f"{head.name} (layer {layer.index} attention)"
            for role, sops in (("query", head.queries), ("key", head.keys), ("value", head.values)):
                for sop in sops:
                    readers.setdefault(sop, []).append(f"{head.name} {role}")
        for part in layer.mlp:
            for out in part.outputs:
                writers.setdefault(out, f"layer {layer.index} MLP ({part.construction})")
            for leaf in part.leaves:
                sops = forms[leaf].sops() if leaf in forms else {leaf}
                for sop in sops:
                    readers.setdefault(sop, []).append(f"layer {layer.index} MLP")
    if model.output in model.readouts:
        for index in model.readouts[model.output].indices:
            readers.setdefault(model.layout.dims[index].sop, []).append("decoder")
    entries = []
    for owner, (start, stop) in model.layout.ranges().items():
        dims = model.layout.dims[start:stop]
        values = tuple("number" if d.is_numerical else d.value for d in dims)
        written = writers.get(owner, "embeddings")
        entries.append(ResidualEntry(owner, start, stop, values, written,
                                     tuple(dict.fromkeys(readers.get(owner, [])))))
    return ResidualMap(model.layout.width, tuple(entries))
