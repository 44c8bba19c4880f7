"""Can a categorical Aggregate mix values? Prove it cannot, or find an input where it does.

A head copying a categorical value averages the one-hots of every selected key;
if those keys hold different values the output is a blend no decoder can read.
tracr compiles such programs silently. Here each categorical Aggregate is:

- proven safe when it can only ever output one value, or when one of its
  selector's atoms is functional (selects, for every query value, at most one
  key value) and its key SOp either differs at every position (`indices`, or an
  SOp built from them as `KeyFacts` proves, such as the target positions of a
  sort), so at most one position is selected; or determines the values read
  (equal keys, equal values), so every selected position holds the same value;
- under a causal mask, also proven when the key SOp is never larger than its
  position (the width of a selector that never selects a position's own key)
  and the query side is `indices`, selecting only key values at least the
  query's index (such as EQ): keys at j <= q holding a value >= q can only be q
  itself; this proves tracr's sorts compiled with `causal=True`;
- unsafe when the evaluator finds an input where it mixes values (exhaustive
  over short inputs, then random ones): the compiler refuses, showing that input;
- unproven otherwise: compiled with a warning that says what would make the
  proof go through, and the decoder flags any position whose output is not a
  clean one-hot.
"""

from __future__ import annotations

import itertools
import numbers
import random
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from rasp_compiler.compiler.ops import AttentionOp, OpGraph, width_hidden_label
from rasp_compiler.errors import UnsafeAggregateError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.batch_evaluator import by_length, evaluate_batch
from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.residual import BOS

DEFAULT_SEARCH_BUDGET = 400  # inputs tried at most
SEARCH_COST_LIMIT = 150_000  # and at most this sum of squared lengths (evaluation is quadratic)
MAX_ENUMERATED = 250_000  # values, or value pairs, one KeyFacts rule may enumerate
MAX_RANKED_VALUES = 8_192  # values a ranking SelectorWidth may compare (the check is quadratic)
MAX_DIAGNOSED_VALUES = 1_024  # values up to which a failed order check names the culprits
MAX_NOTES = 3  # near misses quoted in an unproven verdict

PROOF_NEEDS = (
    "a proof needs a selector atom that matches at most one key value per query (such as EQ) "
    "over keys that differ at every position: indices, an injective Map or SequenceMap of such "
    "keys (e.g. a key plus an index tie-break that never collides), or a SelectorWidth ranking "
    "such keys by a strict order; or over keys whose equal values mean equal aggregated values"
)
# Under a causal mask a ranking is no permutation (KeyFacts), so the third kind of keys is
# replaced by the one rule that holds only there.
CAUSAL_PROOF_NEEDS = (
    "a proof needs a selector atom that matches at most one key value per query (such as EQ) "
    "over keys that differ at every position: indices, or an injective Map or SequenceMap of "
    "such keys (under the causal mask a SelectorWidth ranking is no permutation); or over keys "
    "whose equal values mean equal aggregated values; or an atom comparing indices (queries) "
    "with keys never larger than their position, such as the SelectorWidth of a selector that "
    "never selects a position's own key (Select(keys, keys, LT)), that selects only key values "
    "at least the query's index (such as EQ)"
)


@dataclass(frozen=True)
class AggregateCheck:
    label: str
    status: str  # "proven", "unsafe" or "unproven"
    reason: str
    counterexample: tuple | None = None
    position: int | None = None


def check_categorical_aggregates(
    ops: OpGraph, live: frozenset[str], *, budget: int = DEFAULT_SEARCH_BUDGET, seed: int = 0,
    causal: bool = False,
) -> list[AggregateCheck]:
    """One verdict per live categorical Aggregate, in program order.

    For a causal model the search evaluates the causal meaning (the proofs below
    only use facts that masking keys cannot break).
    """
    checks: dict[str, AggregateCheck] = {}
    pending: list[AttentionOp] = []
    for label in ops.order:
        op = ops.attention.get(label)
        if op is None or label not in live or op.kind != "aggregate":
            continue
        if op.encoding is not rasp.Encoding.CATEGORICAL:
            continue
        reason = _local_proof(op)
        if reason:
            checks[label] = AggregateCheck(label, "proven", reason)
        else:
            pending.append(op)
    unproven: dict[str, str] = {}  # label -> what a proof would need
    if pending:
        # The causal rule reads any atom's keys, not only a functional atom's.
        keys = {a.key for op in pending for a in (op.atoms if causal else _functional_atoms(op))}
        facts = KeyFacts(ops, keys, causal=causal)
        for op in pending:
            reason = _key_proof(op, facts)
            if reason:
                checks[op.label] = AggregateCheck(op.label, "proven", reason)
            else:
                unproven[op.label] = _missing_proof(op, facts)
    if unproven:
        found, tried = _search(ops, set(unproven), budget, seed, causal)
        for label, missing in unproven.items():
            if label in found:
                xs, position = found[label]
                checks[label] = AggregateCheck(
                    label, "unsafe", f"mixes values at query position {position} of input {list(xs)}",
                    tuple(xs), position,
                )
            else:
                checks[label] = AggregateCheck(
                    label, "unproven",
                    f"{tried} inputs showed no mixing, and no proof went through: {missing}",
                )
    return [checks[label] for label in ops.order if label in checks]


def refuse_unsafe_aggregates(ops: OpGraph, live: Iterable[str], allow_unsafe: bool, causal: bool
                             ) -> tuple[list[str], list[AggregateCheck]]:
    """Refuse provably mixing categorical Aggregates (unless `allow_unsafe`); the warnings
    to give about those compiled anyway and the unproven ones, and every verdict."""
    checks = check_categorical_aggregates(ops, live, causal=causal)
    messages = []
    for check in checks:
        if check.status == "unsafe":
            text = (
                f"{check.label}: this categorical Aggregate selects positions holding different "
                f"values on the input {list(check.counterexample)} (query position "
                f"{check.position}), so no head can copy one value there"
            )
            if not allow_unsafe:
                raise UnsafeAggregateError(
                    f"{text}. Make its selector pick a single value (e.g. break ties with "
                    f"indices), make it numerical to average, or pass "
                    f"allow_unsafe_aggregates=True if such inputs are out of scope (the model "
                    f"then marks those positions as Unclean)"
                )
            messages.append(text + "; compiled anyway (allow_unsafe_aggregates=True)")
        elif check.status == "unproven":
            messages.append(
                f"{check.label}: could not prove this categorical Aggregate always selects a "
                f"single value: {check.reason}. The model marks any position where it does "
                f"not as Unclean"
            )
    return messages, checks


def _functional_atoms(op: AttentionOp) -> list:
    """Atoms that select, for every query value, at most one key value."""
    return [a for a in op.atoms if bool((a.relation.sum(axis=1) <= 1).all())]


def _sources(op: AttentionOp) -> set[str]:
    """The SOps the head copies values from (Maps folded away)."""
    return {read.sop for read, _, _ in op.ov if read != BOS}


def _local_proof(op: AttentionOp) -> str:
    """Proofs that need nothing beyond the head itself."""
    outputs = {out for read, out, _ in op.ov if read != BOS}
    if len(outputs) <= 1:
        return "it can output only one value"
    sources = _sources(op)
    for atom in _functional_atoms(op):
        if atom.key == "indices":
            return f"{atom.select} selects at most one position per query"
        if sources == {atom.key}:
            return f"{atom.select} selects only positions holding one value of {atom.key}"
    return ""


def _key_proof(op: AttentionOp, facts: KeyFacts) -> str:
    """A functional atom over keys that differ at every position, or that determine the
    values; under a causal mask, an atom that can select only the query's own position."""
    if facts.causal:
        reason = _causal_position_proof(op, facts)
        if reason:
            return reason
    functional = _functional_atoms(op)
    for atom in functional:
        chain = facts.unique_chain(atom.key)
        if chain is not None:
            return (
                f"{atom.select} selects at most one key value per query, and {atom.key} holds a "
                f"different value at every position, so at most one position is selected "
                f"({facts.explain(chain)})"
            )
    sources = sorted(_sources(op))
    for atom in functional:
        why = facts.determination(atom.key, sources)
        if why is not None:
            return (
                f"{atom.select} selects at most one key value per query, and positions holding "
                f"equal values of {atom.key} hold equal values of {', '.join(sources)} ({why})"
            )
    return ""


def _causal_position_proof(op: AttentionOp, facts: KeyFacts) -> str:
    """Under the causal mask query position q sees keys j <= q only. An atom (a conjunct:
    it must hold) reading `indices` on the query side and selecting only key values >= q,
    over keys K with K_j <= j at every position, selects j only if q <= K_j <= j <= q."""
    for atom in op.atoms:
        bound = facts.position_bound(atom.key)
        if atom.query != "indices" or bound is None:
            continue
        if all(_is_number(k) and k >= q
               for qi, q in enumerate(atom.query_values)
               for ki, k in enumerate(atom.key_values) if atom.relation[qi, ki]):
            return (
                f"under the causal mask query position q sees only keys at positions j <= q; "
                f"{atom.select} selects only values of {atom.key} at least q, and {bound}, so "
                f"only position q itself can be selected"
            )
    return ""


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _missing_proof(op: AttentionOp, facts: KeyFacts) -> str:
    """Why no proof went through, and what would make one."""
    needs = CAUSAL_PROOF_NEEDS if facts.causal else PROOF_NEEDS
    functional = _functional_atoms(op)
    if not functional:
        atoms = ", ".join(a.select for a in op.atoms) or "none"
        return (
            f"no atom of its selector {op.selector} (atoms: {atoms}) matches at most one key "
            f"value per query; {needs}"
        )
    parts = []
    for atom in functional:
        text = (
            f"{atom.select} matches at most one value of {atom.key} per query, but {atom.key} is "
            f"not known to differ at every position"
        )
        notes = facts.near_misses(atom.key)
        if notes:
            text += f" ({'; '.join(notes)})"
        parts.append(text)
    return f"{'; '.join(parts)}; {needs}"


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


def _search(ops: OpGraph, labels: set[str], budget: int, seed: int,
            causal: bool) -> tuple[dict, int]:
    """Inputs on which the evaluator finds these aggregates mixing values: for each, the
    first such input (and query position) in search order, and how many inputs were
    tried (up to the one that found the last), as evaluating them one by one would."""
    inputs = []
    cost = 0
    for xs in _inputs(ops.vocab, ops.max_seq_len, budget, seed, SEARCH_COST_LIMIT):
        cost += len(xs) ** 2
        if cost > SEARCH_COST_LIMIT:
            break
        inputs.append(xs)
    first: dict[str, tuple[int, int]] = {}  # label -> (place, position)
    for places, ids in by_length(inputs, ops.vocab):
        batch = evaluate_batch(ops.graph, ids, ops.vocab, causal=causal)
        for row in np.flatnonzero(batch.undefined).tolist():
            label = batch.failure_label[row]
            place = int(places[row])
            if label in labels and (label not in first or place < first[label][0]):
                first[label] = (place, int(batch.failure_position[row]))
    found = {label: (tuple(inputs[place]), position) for label, (place, position) in first.items()}
    tried = max(place for place, _ in first.values()) + 1 if len(first) == len(labels) \
        else len(inputs)
    return found, tried


def _inputs(vocab: tuple, max_seq_len: int, budget: int, seed: int, cost_limit: int):
    """Every input up to the length that fits half the budget, then random longer ones,
    ending before the tokens of a length whose square alone passes `cost_limit` are
    drawn (the search stops there anyway; at max_seq_len 10^7 building it took seconds)."""
    used = 0
    for n in range(1, max_seq_len + 1):
        count = len(vocab) ** n
        if used + count > budget // 2:
            break
        for xs in itertools.product(vocab, repeat=n):
            yield xs
        used += count
    rng = random.Random(seed)
    for _ in range(budget - used):
        n = rng.randint(1, max_seq_len)
        if n * n > cost_limit:
            return
        yield tuple(rng.choice(vocab) for _ in range(n))
