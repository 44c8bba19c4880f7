"""The alignment: which model nodes compute each RASP node, at any granularity.

Read from the info records (so a loaded model has it too) and, for a model compiled
in this session, from the compiler's record:

- an SOp written by the embeddings belongs to `embed` (by token) or `pos_embed` (by
  position), read from which table writes its dimensions;
- a head computes the SOp it writes (`HeadInfo.source`, its hidden label too) and its
  selector; an MLP every op of its parts (fused ones included);
- with the compiler's record: a Map folded into a head or selector belongs to that
  head, a selector inside a Boolean combination to the combination's heads, and a
  numerical SOp that is a linear form (never written) to the nodes writing what it reads.

At component granularity a head's RASP nodes belong to its layer's attention; at
matrix granularity the SOp a head writes to its .v and .o, its selector (and what is
folded into it) to its .q and .k, an MLP's ops to its .in and .out.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from rasp_compiler.circuits.circuit import Alignment
from rasp_compiler.lang import rasp
from rasp_compiler.model.residual import SPECIAL_DIMS

WRITE, SELECT, MLP, EMBED = "write", "select", "mlp", "embed"


def alignment_of(network) -> Alignment:
    model = network.compiled
    found: dict[str, dict[tuple[str, str], None]] = {}  # label -> {(head-level node, role)}

    def add(label: str, node: str, role: str) -> None:
        found.setdefault(label, {})[node, role] = None

    layout = model.layout
    for node, table in (("embed", model.params["token_embed"]["embeddings"]),
                        ("pos_embed", model.params["pos_embed"]["embeddings"])):
        for i in np.flatnonzero(np.any(np.asarray(table) != 0, axis=0)):
            dim = layout.dims[i]
            if dim not in SPECIAL_DIMS:
                add(dim.sop, node, EMBED)
    head_roles: dict[str, list[tuple[str, str]]] = {}  # head label, source or selector
    for layer in model.info.layers:
        for head in layer.heads:
            name = f"blocks.{layer.index}.attn.{head.index}"
            for label, role in ((head.source, WRITE), (head.label, WRITE),
                                (head.selector, SELECT)):
                add(label, name, role)
                head_roles.setdefault(label, []).append((name, role))
        for part in layer.mlp:
            for label in (*part.units, *part.outputs):
                add(label, f"blocks.{layer.index}.mlp", MLP)
    record = model.compilation
    if record is not None:
        ops = record.ops
        for label, users in ops.folded.items():
            for user in users:
                for name, _ in head_roles.get(user, ()):
                    add(label, name, SELECT if _reads_as_selector(ops, label, user) else WRITE)
        graph = ops.graph
        for label in reversed(graph.order):  # users first: nested selectors take the outer one's
            if label in found or not isinstance(graph.expr(label), rasp.Selector):
                continue
            for user in graph.users(label):
                if isinstance(graph.expr(user), rasp.Selector):
                    for name, role in found.get(user, {}):
                        if role == SELECT:
                            add(label, name, SELECT)
        for label in ops.order:
            if label in ops.forms and label not in found:
                for sop in sorted(ops.forms[label].sops()):
                    for name, role in list(found.get(sop, {})):
                        add(label, name, role)
        known = set(ops.order) | set(graph.order)
        found = {label: nodes for label, nodes in found.items() if label in known}
    rasp_to_model: dict[str, tuple[str, ...]] = {}
    for label, pairs in found.items():
        nodes = [n for head_node, role in pairs for n in _at(network, head_node, role)]
        nodes = [n for n in dict.fromkeys(nodes) if n in network.by_name]
        if nodes:
            rasp_to_model[label] = tuple(sorted(nodes, key=lambda n: _order(network, n)))
    model_to_rasp: dict[str, list[str]] = {}
    for label, nodes in rasp_to_model.items():
        for node in nodes:
            model_to_rasp.setdefault(node, []).append(label)
    return Alignment(MappingProxyType(rasp_to_model),
                     MappingProxyType({n: tuple(labels) for n, labels in sorted(
                         model_to_rasp.items(), key=lambda item: _order(network, item[0]))}))


def _reads_as_selector(ops, label: str, user: str) -> bool:
    """A folded Map read through a selector (as its keys or queries), not a value."""
    return user not in ops.attention


def _at(network, node: str, role: str) -> list[str]:
    """A head-granularity node (with the role it plays for a label) at the network's
    granularity."""
    granularity = network.granularity
    if granularity == "head" or role == EMBED:
        return [node]
    parts = node.split(".")
    if granularity == "component":
        return [".".join(parts[:3])]
    if role == MLP:
        return [f"{node}.in", f"{node}.out"]
    return [f"{node}.{x}" for x in (("q", "k") if role == SELECT else ("v", "o"))]


def _order(network, name: str) -> int:
    return network.nodes.index(network.by_name[name])
