"""Dependency graph of a RASP program: one node per distinct expression, keyed by label.

Building it visits each expression object once (an explicit stack, no recursion),
so its cost is linear in the number of distinct expressions however much they
are shared; tracr's walk enumerates paths and is exponential on shared DAGs.
"""

from __future__ import annotations

import collections
import copy
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping

import networkx as nx

from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang import rasp


def postorder(root: rasp.RASPExpr) -> list[rasp.RASPExpr]:
    """Every distinct expression reachable from `root`, each after all of its children.

    Distinct means distinct objects; label clashes are checked by `build_graph`.
    """
    if not isinstance(root, rasp.RASPExpr):
        raise InvalidProgramError(
            f"expected a RASP expression (an SOp or a Selector), got {type(root).__name__} {root!r}"
        )
    order: list[rasp.RASPExpr] = []
    done: set[int] = set()
    on_stack: set[int] = set()
    stack: list[tuple[rasp.RASPExpr, bool]] = [(root, False)]
    while stack:
        expr, expanded = stack.pop()
        key = id(expr)
        if expanded:
            on_stack.discard(key)
            if key not in done:
                done.add(key)
                order.append(expr)
            continue
        if key in done:
            continue
        if key in on_stack:
            raise InvalidProgramError(f"{expr.label}: the program contains a cycle through it")
        on_stack.add(key)
        stack.append((expr, True))
        for child in reversed(tuple(expr.children)):
            if id(child) not in done:
                stack.append((child, False))
    return order


@dataclass(frozen=True)
class ProgramGraph:
    """A program as a frozen networkx DiGraph with edges from inputs to their users.

    Each node is a label; its attribute `expr` is the RASP expression.
    """

    graph: nx.DiGraph
    output: str
    sources: tuple[str, ...]
    order: tuple[str, ...]  # topological: every node after all of its inputs
    position: Mapping[str, int]  # index of each label in `order`

    def expr(self, label: str) -> rasp.RASPExpr:
        return self.graph.nodes[label]["expr"]

    @property
    def output_expr(self) -> rasp.RASPExpr:
        return self.expr(self.output)

    def exprs(self) -> Iterable[rasp.RASPExpr]:
        """Every expression in topological order."""
        return (self.expr(label) for label in self.order)

    def sops(self) -> list[str]:
        return [label for label in self.order if isinstance(self.expr(label), rasp.SOp)]

    def selectors(self) -> list[str]:
        return [label for label in self.order if isinstance(self.expr(label), rasp.Selector)]

    def users(self, label: str) -> list[str]:
        """The nodes that read `label`, in topological order."""
        return sorted(self.graph.successors(label), key=self.position.__getitem__)

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __repr__(self) -> str:
        return (
            f"ProgramGraph(output={self.output!r}, nodes={len(self)}, "
            f"edges={self.graph.number_of_edges()}, sources={list(self.sources)})"
        )

    def summary(self) -> str:
        """One line per node in topological order: label, kind, encoding, inputs."""
        lines = [f"program {self.output!r}: {len(self)} nodes, "
                 f"{self.graph.number_of_edges()} edges, longest path "
                 f"{nx.dag_longest_path_length(self.graph)}"]
        width = max(len(label) for label in self.order)
        for label in self.order:
            expr = self.expr(label)
            kind = type(expr).__name__
            encoding = rasp.get_encoding(expr).value if isinstance(expr, rasp.SOp) else "selector"
            inputs = ", ".join(child.label for child in expr.children) or "-"
            lines.append(f"  {label:<{width}}  {kind:<17} {encoding:<11} <- {inputs}")
        return "\n".join(lines)

    def to_dot(self, layer_of: dict[str, int] | None = None) -> str:
        """Graphviz DOT text: boxes for SOps, ellipses for selectors, optional layer ranks."""
        lines = ["digraph rasp {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for label in self.order:
            expr = self.expr(label)
            shape = "box" if isinstance(expr, rasp.SOp) else "ellipse"
            text = f"{label}\\n{type(expr).__name__}"
            if layer_of and label in layer_of:
                text += f"\\nlayer {layer_of[label]}"
            lines.append(f'  "{_dot_escape(label)}" [shape={shape}, label="{_dot_escape(text)}"];')
        for src, dst in self.graph.edges:
            lines.append(f'  "{_dot_escape(src)}" -> "{_dot_escape(dst)}";')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace('"', '\\"')


def copy_reading(expr: rasp.RASPExpr, copies: Mapping[int, rasp.RASPExpr]) -> rasp.RASPExpr:
    """A shallow copy of `expr` that reads `copies[id(child)]` in place of each child
    that has a copy: how a stage changes part of a program without touching the
    user's expressions."""
    expr.unique_id  # the copy keeps the id, so an unnamed expression keeps its label
    clone = copy.copy(expr)
    for attribute, value in vars(expr).items():
        if id(value) in copies:
            setattr(clone, attribute, copies[id(value)])
    return clone


def assign_ids(program: rasp.RASPExpr) -> None:
    """Gives every expression of `program` its id in the order tracr's compiler reads
    labels (rasp_to_graph.extract_rasp_graph: breadth first from the output, each
    expression's children in order), so that unnamed expressions get the labels tracr
    gives them (`map_5`). An id is drawn once, when first read; the inputs have none.

    tracr's queue re-enqueues shared expressions (exponential on shared DAGs); the
    order in which ids are first drawn is the same as this walk's, which visits each
    expression once.
    """
    seen = {id(program)}
    queue = collections.deque([program])
    _touch(program)
    while queue:
        expr = queue.popleft()
        for child in expr.children:
            if id(child) not in seen:
                seen.add(id(child))
                _touch(child)
                queue.append(child)


def _touch(expr: rasp.RASPExpr) -> None:
    if isinstance(expr, rasp.RASPExpr) and not isinstance(expr, rasp._Primitive):
        expr.unique_id  # noqa: B018 - drawing the id is the point


def build_graph(program: rasp.RASPExpr) -> ProgramGraph:
    """The dependency graph of `program`, in time linear in its distinct expressions.

    Ids are drawn first, in tracr's order (`assign_ids`). Labels must identify
    nodes. A name the user gives is the label itself, so tracr code often names two
    different expressions alike (a helper called twice). Such a clash is resolved
    here, deterministically: the later expression becomes `name_2`, `name_3`, ... in
    the graph, which holds renamed copies (of it and of the expressions above it);
    the user's expressions are never changed. Every instance of an input (a second
    `rasp.TokensType()`, a `rasp.numerical(rasp.tokens)` copy) is the same node, so
    its instances must agree on the encoding.
    """
    exprs = postorder(program)
    assign_ids(program)
    taken: dict[str, rasp.RASPExpr] = {}
    for expr in exprs:
        if isinstance(expr, rasp._Primitive):
            first = taken.setdefault(expr.label, expr)  # every TokensType() is `tokens`
            if rasp.get_encoding(first) is not rasp.get_encoding(expr):
                raise InvalidProgramError(
                    f"{expr.label}: the program reads the input {expr.label} as "
                    f"{rasp.get_encoding(first).value} in one place and as "
                    f"{rasp.get_encoding(expr).value} in another (rasp.numerical and "
                    f"rasp.categorical return annotated copies of it), but an input is one "
                    f"node with one encoding; give every use of {expr.label} the same encoding, "
                    f"or convert a copy, e.g. rasp.numerical(rasp.Map(lambda x: x, "
                    f"rasp.{expr.label}))"
                )
    copies: dict[int, rasp.RASPExpr] = {}  # by id: renamed expressions and those above one
    for expr in exprs:
        if isinstance(expr, rasp._Primitive):
            continue
        label, suffix = expr.label, 2
        while label in taken:
            label, suffix = f"{expr.label}_{suffix}", suffix + 1
        if label != expr.label or any(id(child) in copies for child in expr.children):
            clone = copy_reading(expr, copies)
            if label != expr.label:
                clone = rasp.annotate(clone, name=label)
            copies[id(expr)] = clone
        taken[label] = copies.get(id(expr), expr)
    exprs = [copies.get(id(expr), expr) for expr in exprs]
    graph = nx.DiGraph()
    for expr in exprs:
        graph.add_node(expr.label, expr=taken[expr.label])
        for child in expr.children:
            graph.add_edge(child.label, expr.label)
    order = tuple(dict.fromkeys(expr.label for expr in exprs))
    sources = tuple(label for label in order if graph.in_degree(label) == 0)
    return ProgramGraph(
        graph=nx.freeze(graph), output=exprs[-1].label, sources=sources, order=order,
        position=MappingProxyType({label: i for i, label in enumerate(order)}),
    )
