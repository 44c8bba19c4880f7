"""What a key SOp guarantees: whether it differs at every position, and what it determines.

The safety stage (safety.py) proves a categorical Aggregate reads one value when one
of its selector's atoms is functional and the key SOp either differs at every
position or determines the values read; `KeyFacts` establishes those two facts (and,
under a causal mask, a bound on a width by its position) for every SOp the
Aggregates read, each rule checked by enumerating the finite value sets with the
SOp's own function. A module of its own because it is a small prover with its own
rules, and safety.py only asks it questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from rasp_compiler.compiler.ops import OpGraph, width_hidden_label
from rasp_compiler.lang import rasp
from rasp_compiler.lang.identity import identity_key

MAX_ENUMERATED = 250_000  # values, or value pairs, one KeyFacts rule may enumerate
MAX_RANKED_VALUES = 8_192  # values a ranking SelectorWidth may compare (the check is quadratic)
MAX_DIAGNOSED_VALUES = 1_024  # values up to which a failed order check names the culprits
MAX_NOTES = 3  # near misses quoted in an unproven verdict


@dataclass(frozen=True)
class _Edge:
    """The analysed SOp determines `target`; `why` says how."""

    target: str
    why: str
    widths: str = ""  # a ranking SelectorWidth: the widths of n distinct keys ("0..n-1")


class KeyFacts:
    """Which SOps differ at every position, and which determine which.

    An SOp `a` determines `b` when, on every input, two positions holding equal
    values of `a` hold equal values of `b`. Each rule is checked by enumerating
    the finite value sets with the SOp's own function, so with exactly the
    values (floats included) the evaluator computes:

    - a Map f(b) determines b when f is injective on b's values and never None;
    - a SequenceMap f(b, c) determines b when c is never None and f never gives
      one value for two different values of b (likewise for c): this covers
      tracr's tie-break `key + min_key * index / max_seq_len` when it is exact;
    - a SelectorWidth computed by one head that compares an SOp L with itself
      determines L when L is never None and the head's relation is a total order
      on L's values: for two different values exactly one selects the other,
      transitively, and every value selects itself or none does. A position
      holding a larger value then counts every position a smaller one counts,
      and that one too, so different values get different widths;
    - a product-encoding tuple determines its parts.

    An SOp that determines `indices` differs at every position and is never None;
    a SelectorWidth ranking it takes every width of 0..n-1 once (strict order) or
    of 1..n (non-strict): a permutation. Only the ancestors of `labels` are analysed.

    Under a causal mask the SelectorWidth rule fails (position i counts only the
    smaller values before it: `[5, 3]` ranks both 0), so `causal=True` drops it;
    the other rules relate values at one position and hold unchanged. In its place
    a causal width gets a bound (`position_bound`): a SelectorWidth computed by one
    head with an atom comparing an SOp with itself that no value satisfies against
    itself never selects a position's own key, so at position j it counts at most
    the j keys before it.
    """

    def __init__(self, ops: OpGraph, labels: Iterable[str], *, causal: bool = False):
        self.ops = ops
        self.causal = causal
        self.edges: dict[str, list[_Edge]] = {}
        self.notes: dict[str, str] = {}  # near misses: rules over a position-unique SOp that failed
        self._unique: dict[str, tuple[_Edge, ...] | None] = {}
        self._bounded: dict[str, str] = {}  # causal: label -> why its value at j is <= j
        needed = self._ancestors(labels)
        for label in ops.order:
            if label in needed:
                self._analyse(label)

    # ------------------------------------------------------------------ queries

    def unique_chain(self, label: str) -> tuple[_Edge, ...] | None:
        """The edges from `label` to `indices` if it differs at every position, else None."""
        return self._unique.get(label)

    def position_bound(self, label: str) -> str | None:
        """Under a causal mask: why `label` is at most j at every position j, else None."""
        return self._bounded.get(label)

    def explain(self, chain: tuple[_Edge, ...]) -> str:
        whys = [edge.why for edge in chain] + ["indices differ at every position"]
        text = "; ".join(whys)
        if chain and chain[0].widths:
            text = f"a permutation of {chain[0].widths}: {text}"
        return text

    def determination(self, key: str, sources: list[str]) -> str | None:
        """Why equal values of `key` mean equal values of every source, or None."""
        parent: dict[str, tuple[str, _Edge] | None] = {key: None}
        queue = [key]
        while queue:
            label = queue.pop()
            for edge in self.edges.get(label, ()):
                if edge.target not in parent:
                    parent[edge.target] = (label, edge)
                    queue.append(edge.target)
        determined = set(parent)
        graph = self.ops.graph
        for label in graph.order:  # values computed position by position from determined ones
            expr = graph.expr(label)
            if isinstance(expr, rasp.Map) and expr.inner.label in determined:
                determined.add(label)
            elif (isinstance(expr, rasp.SequenceMap)
                  and {expr.fst.label, expr.snd.label} <= determined):
                determined.add(label)
        if not set(sources) <= determined:
            return None
        whys: list[str] = []
        for source in sources:
            if source not in parent:
                whys.append(f"{source} is computed position by position from SOps {key} determines")
                continue
            path = []
            step = parent[source]
            while step is not None:
                path.append(step[1].why)
                step = parent[step[0]]
            whys.extend(why for why in reversed(path) if why not in whys)
        return "; ".join(whys) or f"{key} is {', '.join(sources)}"

    def near_misses(self, label: str) -> list[str]:
        """Notes on the rules that almost proved `label` or an SOp it is built from unique."""
        ancestors = self._ancestors([label])
        notes = [self.notes[a] for a in self.ops.order if a in ancestors and a in self.notes]
        return notes[:MAX_NOTES]

    # ------------------------------------------------------------------ analysis

    def _inputs(self, label: str) -> tuple[str, ...]:
        ops = self.ops
        if label in ops.graph.graph:
            expr = ops.graph.expr(label)
            if isinstance(expr, rasp.Map):
                return (expr.inner.label,)
            if isinstance(expr, rasp.SequenceMap):
                return (expr.fst.label, expr.snd.label)
            if isinstance(expr, rasp.SelectorWidth):
                head = ops.attention.get(width_hidden_label(label))
                return tuple(sorted(set(head.queries) | set(head.keys))) if head else ()
            return ()
        unit = ops.units.get(label)
        if unit is not None and unit.kind == "Tuple":
            return unit.inputs
        return ()

    def _ancestors(self, labels: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(labels)
        while stack:
            label = stack.pop()
            if label in seen or label not in self.ops.values:
                continue
            seen.add(label)
            stack.extend(self._inputs(label))
        return seen

    def _analyse(self, label: str) -> None:
        if label == "indices":
            self._unique[label] = ()
            return
        expr = self.ops.graph.expr(label) if label in self.ops.graph.graph else None
        if isinstance(expr, rasp.Map):
            self._map_rule(label, expr)
        elif isinstance(expr, rasp.SequenceMap):
            self._sequence_map_rule(label, expr)
        elif isinstance(expr, rasp.SelectorWidth) and self.causal:
            self._causal_width_bound(label, expr)
        elif isinstance(expr, rasp.SelectorWidth):
            self._width_rule(label, expr)
        elif expr is None and label in self.ops.units and self.ops.units[label].kind == "Tuple":
            inputs = self.ops.units[label].inputs
            for part in inputs:
                self._edge(label, _Edge(part, f"{label} is the tuple of {', '.join(inputs)}"))
        self._unique[label] = next(
            ((edge,) + self._unique[edge.target] for edge in self.edges.get(label, ())
             if self._unique.get(edge.target) is not None),
            None,
        )

    def _edge(self, label: str, edge: _Edge) -> None:
        self.edges.setdefault(label, []).append(edge)

    def _near_miss(self, label: str, source: str, text: str) -> None:
        """Note why a rule over `source` failed, when `source` differs at every position."""
        if self._unique.get(source) is not None and label not in self.notes:
            self.notes[label] = text

    def _map_rule(self, label: str, expr: rasp.Map) -> None:
        inner = expr.inner.label
        values = [v for v in self.ops.values[inner] if v is not None]
        if len(values) > MAX_ENUMERATED:
            self._near_miss(label, inner, f"{inner} has {len(values):,} values, too many to "
                                          f"check that {label} is injective")
            return
        seen: dict = {}
        for v in values:
            try:
                out = expr.f(v)
                previous = seen.get(out)
            except Exception:  # the compiler reports bad functions elsewhere
                return
            if out is None:
                self._near_miss(label, inner, f"{label} maps {v!r} of {inner} to None")
                return
            if out in seen:
                self._near_miss(label, inner, f"{label} maps both {previous!r} and {v!r} of "
                                              f"{inner} to {out!r}")
                return
            seen[out] = v
        self._edge(label, _Edge(inner, f"{label} is a Map of {inner}, injective on its "
                                       f"{len(values):,} values"))

    def _sequence_map_rule(self, label: str, expr: rasp.SequenceMap) -> None:
        fst, snd = expr.fst.label, expr.snd.label
        sides = ((fst, snd, True), (snd, fst, False)) if fst != snd else ((fst, snd, True),)
        for kept, other, kept_first in sides:
            kept_values = [v for v in self.ops.values[kept] if v is not None]
            other_values = self.ops.values[other]
            if None in other_values:
                self._near_miss(label, kept, f"{label} is None wherever {other} is None, so it "
                                             f"does not keep the values of {kept} apart")
                continue
            pairs = len(kept_values) * len(other_values)
            if pairs > MAX_ENUMERATED:
                self._near_miss(label, kept, f"{label} has {pairs:,} value pairs, too many to "
                                             f"check that it keeps {kept} apart")
                continue
            problem = self._separation_problem(label, expr.f, kept, kept_values, other_values,
                                               kept_first)
            if problem:
                self._near_miss(label, kept, problem)
                continue
            self._edge(label, _Edge(
                kept, f"{label} never gives one value for two different values of {kept} "
                      f"(checked on all {pairs:,} value pairs)"
            ))

    @staticmethod
    def _separation_problem(label, f, kept, kept_values, other_values, kept_first) -> str | None:
        """None if f(kept, other) differs whenever kept does, else a colliding pair."""
        seen: dict = {}
        for u in kept_values:
            for w in other_values:
                args = (u, w) if kept_first else (w, u)
                try:
                    out = f(*args)
                    previous = seen.get(out)
                except Exception:
                    return f"{label} could not be checked on {args!r}"
                if out is None:
                    return f"{label} is None on {args!r}"
                if previous is not None and previous[0] != u:
                    return (f"{label} gives {out!r} on both {previous[1]!r} and {args!r}, so it "
                            f"does not keep the values of {kept} apart")
                seen.setdefault(out, (u, args))
        return None

    def _causal_width_bound(self, label: str, expr: rasp.SelectorWidth) -> None:
        head = self.ops.attention.get(width_hidden_label(label))
        if head is None:  # several heads (inclusion-exclusion): not covered
            return
        for atom in head.atoms:
            if atom.query != atom.key:
                continue
            query_index = {identity_key(v): i for i, v in enumerate(atom.query_values)}
            if any(atom.relation[query_index[identity_key(v)], ki]
                   for ki, v in enumerate(atom.key_values) if identity_key(v) in query_index):
                continue
            self._bounded[label] = (
                f"{label} is the SelectorWidth of {expr.selector.label}, whose {atom.select} "
                f"holds for no value of {atom.key} against itself: a position never selects "
                f"its own key, so under the mask {label} at position j counts at most the j "
                f"positions before it"
            )
            return

    def _width_rule(self, label: str, expr: rasp.SelectorWidth) -> None:
        head = self.ops.attention.get(width_hidden_label(label))
        if head is None:  # several heads (inclusion-exclusion): not covered
            return
        compared = {a.query for a in head.atoms} | {a.key for a in head.atoms}
        if len(compared) != 1:
            return
        (ranked,) = compared
        selector = expr.selector.label
        if None in self.ops.values[ranked]:
            # A None position neither selects nor is selected: its width 0 is also the
            # smallest value's. (A position-unique SOp is never None, so no near miss.)
            return
        values = head.atoms[0].key_values
        if len(values) > MAX_RANKED_VALUES:
            self._near_miss(label, ranked, f"{ranked} has {len(values):,} values, too many to "
                                           f"check that {selector} orders them")
            return
        relation = np.logical_and.reduce([a.relation for a in head.atoms])
        problem = _total_order_problem(relation, values)
        if problem:
            self._near_miss(label, ranked, f"{selector} is not a total order on the values of "
                                           f"{ranked}: {problem}, so {label} can repeat a width")
            return
        strict = not relation.diagonal().any()
        self._edge(label, _Edge(
            ranked,
            f"{label} is the SelectorWidth of {selector}, a {'strict' if strict else 'non-strict'} "
            f"total order on the {len(values):,} values of {ranked}",
            widths="0..n-1" if strict else "1..n",
        ))


def _total_order_problem(relation: np.ndarray, values: tuple) -> str | None:
    """None if relation[q][k] (query value q selects key value k) is a total order."""
    n = len(values)
    diagonal = relation.diagonal()
    if diagonal.any() and not diagonal.all():
        return (f"{values[int(np.argmax(diagonal))]!r} selects itself but "
                f"{values[int(np.argmin(diagonal))]!r} does not")
    off = relation.copy()
    np.fill_diagonal(off, False)
    scores = off.sum(axis=1)
    order = np.argsort(scores, kind="stable")
    if np.array_equal(scores[order], np.arange(n)):
        # Row k of the sorted relation selects k values; none on or above the
        # diagonal means exactly the k values ranked below it: a total order.
        if not np.triu(off[np.ix_(order, order)]).any():
            return None
    if n > MAX_DIAGNOSED_VALUES:
        return "it is not a strict total order"
    both = off & off.T
    if both.any():
        q, k = np.argwhere(both)[0]
        return f"{values[q]!r} and {values[k]!r} select each other"
    neither = ~(off | off.T)
    np.fill_diagonal(neither, False)
    if neither.any():
        q, k = np.argwhere(neither)[0]
        return f"neither of {values[q]!r} and {values[k]!r} selects the other"
    # A tournament with repeated scores has a 3-cycle: a selects b selects c selects a.
    paths = off.astype(np.float32) @ off.astype(np.float32)
    a, c = np.argwhere((paths > 0) & off.T)[0]
    b = int(np.argmax(off[a] & off[:, c]))
    return (f"{values[a]!r} selects {values[b]!r}, which selects {values[c]!r}, which "
            f"selects {values[a]!r}")
