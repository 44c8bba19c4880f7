"""Can a categorical Aggregate mix values? Prove it cannot, or find an input where it does.

A head copying a categorical value averages the one-hots of every selected key;
if those keys hold different values the output is a blend no decoder can read.
tracr compiles such programs silently. Here each categorical Aggregate is:

- proven safe when it can only ever output one value, or when one of its
  selector's atoms is functional (selects, for every query value, at most one
  key value) and its key SOp either differs at every position (`indices`, or an
  SOp built from them as `KeyFacts` (key_facts.py) proves, such as the target positions of a
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

import numbers
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from rasp_compiler.compiler.key_facts import KeyFacts
from rasp_compiler.compiler.ops import AttentionOp, OpGraph
from rasp_compiler.errors import UnsafeAggregateError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.batch_evaluator import by_length, evaluate_batch
from rasp_compiler.lang.causal import short_then_random
from rasp_compiler.model.residual import BOS

DEFAULT_SEARCH_BUDGET = 400  # inputs tried at most
SEARCH_COST_LIMIT = 150_000  # and at most this sum of squared lengths (evaluation is quadratic)

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


def _search(ops: OpGraph, labels: set[str], budget: int, seed: int,
            causal: bool) -> tuple[dict, int]:
    """Inputs on which the evaluator finds these aggregates mixing values: for each, the
    first such input (and query position) in search order, and how many inputs were
    tried (up to the one that found the last), as evaluating them one by one would."""
    inputs = list(short_then_random(ops.vocab, ops.max_seq_len, budget, seed,
                                    SEARCH_COST_LIMIT))
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
