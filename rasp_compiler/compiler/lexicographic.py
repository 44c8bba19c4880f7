"""Comparisons of a tie-broken key, compiled over the key's parts.

`lib.make_sort` makes sort keys unique with
`SequenceMap(lambda key, index: key + min_key * index / max_seq_len, keys, indices)`
and then compares that key with itself (`Select(unique, unique, LT)`). As an SOp the
key has |keys| x max_seq_len values: one residual dimension each, and a lookup MLP
over every pair, so sort_freq's model grows with the square of max_seq_len and is
refused at 128 (16,384 values).

When such a SequenceMap f(a, b) orders its pairs exactly as the pairs themselves are
ordered lexicographically (a first, then b; or b first), comparing two of its values
is comparing their parts:

    f(a_k, b_k) <  f(a_q, b_q)  <=>  a_k < a_q  or  (a_k == a_q  and  b_k < b_q)
    f(a_k, b_k) == f(a_q, b_q)  <=>  a_k == a_q  and  b_k == b_q

so `Select(f, f, LT)` is the Boolean selector `Select(a, a, LT) | (Select(a, a, EQ) &
Select(b, b, LT))` over SOps with |a| and |b| values (likewise LEQ, GT, GEQ, EQ, NEQ).
The selector stage then chooses its cheapest construction for that form (docs/
selectors.md); under SelectorWidth, inclusion-exclusion gives heads whose sizes are
linear in the value counts. The property is proved by enumerating every pair of the
parts' value sets (sorted lexicographically, f must be strictly increasing), so the
rewritten program computes exactly what the written one does; nothing is assumed
about f's source code.

`expand_lexicographic_selects` runs before the graph is built. It leaves the user's
expressions unchanged (the rewritten program holds copies of everything above a
rewritten Select) and returns one sentence per rewrite for the model's info.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Iterable

from rasp_compiler.compiler.values import infer_values
from rasp_compiler.errors import RaspCompilerError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.graph import copy_reading, postorder

ORDERED = {rasp.Comparison.LT, rasp.Comparison.LEQ, rasp.Comparison.GT, rasp.Comparison.GEQ}
REWRITTEN = ORDERED | {rasp.Comparison.EQ, rasp.Comparison.NEQ}


def expand_lexicographic_selects(
    program: rasp.SOp, vocab: Iterable[Any], max_seq_len: int, *, max_pairs: int,
    **value_limits: int,
) -> tuple[rasp.SOp, tuple[str, ...]]:
    """`program` with every Select that compares a lexicographically ordered
    SequenceMap with itself replaced by the same comparison over the map's parts, and
    a note per replacement. `max_pairs` caps the pairs enumerated per SequenceMap;
    `value_limits` are infer_values' caps, for the parts' value sets."""
    vocab = list(vocab)
    replaced: dict[int, rasp.RASPExpr] = {}
    notes: list[str] = []
    verdicts: dict[int, tuple[rasp.SOp, rasp.SOp, int] | None] = {}
    for expr in postorder(program):
        if not _candidate(expr):
            continue
        key = expr.keys
        if id(key) not in verdicts:
            verdicts[id(key)] = _lexicographic_parts(key, vocab, max_seq_len, max_pairs,
                                                     value_limits)
        parts = verdicts[id(key)]
        if parts is None:
            continue
        major, minor, count = parts
        replaced[id(expr)] = _parts_selector(expr, major, minor)
        notes.append(
            f"{expr.label}: Select({key.label}, {key.label}, {expr.predicate.name}) compiles "
            f"as the same comparison of ({major.label}, {minor.label}) in lexicographic order, "
            f"which {key.label} follows on every pair of their values; the selector report "
            f"shows the construction chosen (only a product construction gives the "
            f"{count:,} values of {key.label} residual dimensions)"
        )
    if not replaced:
        return program, ()
    return _rebuilt(program, replaced), tuple(notes)


def _candidate(expr: rasp.RASPExpr) -> bool:
    return (isinstance(expr, rasp.Select) and expr.keys is expr.queries
            and isinstance(expr.predicate, rasp.Comparison) and expr.predicate in REWRITTEN
            and type(expr.keys) is rasp.SequenceMap and rasp.is_categorical(expr.keys)
            and expr.keys.fst is not expr.keys.snd
            and all(rasp.is_categorical(part) for part in (expr.keys.fst, expr.keys.snd)))


def _lexicographic_parts(key: rasp.SequenceMap, vocab, max_seq_len: int, max_pairs: int,
                         value_limits: dict) -> tuple[rasp.SOp, rasp.SOp, int] | None:
    """(major, minor, number of key values) if `key` orders its parts' value pairs
    lexicographically, major part first; None when it does not, or when that cannot
    be checked."""
    try:
        firsts = _numbers(infer_values(key.fst, vocab, max_seq_len, **value_limits)[key.fst.label])
        seconds = _numbers(infer_values(key.snd, vocab, max_seq_len, **value_limits)[key.snd.label])
    except RaspCompilerError:
        return None  # the compiler proper reports whatever is wrong with the parts
    if firsts is None or seconds is None or len(firsts) * len(seconds) > max_pairs:
        return None
    try:
        table = {(a, b): key.f(a, b) for a in firsts for b in seconds}
    except Exception:  # noqa: BLE001 - a user function failing here is the compiler's to report
        return None
    if _numbers(tuple(table.values())) is None:
        return None
    by_first = [table[a, b] for a in firsts for b in seconds]
    by_second = [table[a, b] for b in seconds for a in firsts]
    for order, parts in ((by_first, (key.fst, key.snd)), (by_second, (key.snd, key.fst))):
        if all(x < y for x, y in zip(order, order[1:])):
            return (*parts, len(table))
    return None


def _numbers(values: tuple) -> list | None:
    """The values sorted, if every one is a finite real number (None or a bool, which the
    order of a sort key should not hang on, or a string: not rewritten)."""
    if not values or not all(isinstance(v, Real) and not isinstance(v, bool)
                             and math.isfinite(v) for v in values):
        return None
    return sorted(values)


def _parts_selector(select: rasp.Select, major: rasp.SOp, minor: rasp.SOp) -> rasp.Selector:
    """The comparison `select` makes of its key, written over the key's parts."""
    C = rasp.Comparison
    op = select.predicate
    name = select.label

    def atom(sop: rasp.SOp, comparison: C) -> rasp.Select:
        return rasp.Select(sop, sop, comparison).named(
            f"{name}_{sop.label}_{comparison.name.lower()}")

    if op is C.EQ:
        result = atom(major, C.EQ) & atom(minor, C.EQ)
    elif op is C.NEQ:
        result = atom(major, C.NEQ) | atom(minor, C.NEQ)
    else:
        strict = {C.LT: C.LT, C.LEQ: C.LT, C.GT: C.GT, C.GEQ: C.GT}[op]
        result = atom(major, strict) | (atom(major, C.EQ) & atom(minor, op))
    return result.named(name)


def _rebuilt(program: rasp.RASPExpr, replaced: dict[int, rasp.RASPExpr]) -> rasp.RASPExpr:
    """`program` with the expressions in `replaced` (by id) swapped in, as copies of
    every expression above one (children first, so each copy reads the copies)."""
    copies: dict[int, rasp.RASPExpr] = dict(replaced)
    for expr in postorder(program):
        if id(expr) in copies or not any(id(child) in copies for child in expr.children):
            continue
        copies[id(expr)] = copy_reading(expr, copies)
    return copies.get(id(program), program)
