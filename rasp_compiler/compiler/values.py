"""Value sets: every value each SOp can take, for a given vocab and max_seq_len.

The compiler gives each categorical value a residual dimension and builds each
MLP as a lookup over its input values, so a value missing here is a silently
wrong model. The sets are therefore sound supersets: every value the evaluator
can produce on an input of length 1..max_seq_len over the vocab is included
(a property test checks this on random programs).

Values are told apart as identity.py says: a categorical SOp that can be `0` and
`0.0` (or `1` and `True`, `-0.0` and `0.0`) holds both, each once, where a Python
set would keep one (`identity.distinct_values`), and later stages give each its
own dimension. Numerical SOps hold numbers, stored as floats (`as_numbers`).

Numerical Aggregates take every exact mean of 1..max_seq_len selected values,
not only fractions of 0/1 inputs: a mean of {0, 2, 5} can be 7/3.

This module is the stage (`infer_values`: the order of checks, the limits, the sets'
storage and order); value_rules.py holds the rule of each construct, and finite.py
the refusal of inf and NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any, Iterable, Mapping

import numpy as np

from rasp_compiler.compiler import value_rules
from rasp_compiler.compiler.finite import refuse_non_finite, refuse_non_finite_parameters
from rasp_compiler.compiler.value_rules import RuleContext, SortedNumbers, as_numbers, too_large
from rasp_compiler.errors import InvalidProgramError, ValueSetTooLargeError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.graph import ProgramGraph, build_graph
from rasp_compiler.lang.identity import distinct_values

DEFAULT_MAX_VALUE_SET_SIZE = 10_000  # categorical: one residual dimension per value
DEFAULT_MAX_NUMERICAL_VALUE_SET_SIZE = 2_000_000  # numerical: one dimension, any count
DEFAULT_MAX_SEQUENCE_MAP_PAIRS = 1_000_000


def value_sort_key(value: Any) -> tuple:
    """A total order over mixed values: None, bools, numbers, strings, then the rest by repr."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, Real):
        return (2, value, "")
    if isinstance(value, str):
        return (3, 0, value)
    return (4, 0, repr(value))


def sorted_values(values: Iterable[Any]) -> tuple:
    """Distinct values in a deterministic order (natural order where Python has one).

    Values are distinct under identity.py: a list or tuple holding `0` and `0.0` (or
    `1` and `True`, `-0.0` and `0.0`) keeps both, next to each other, in the order of
    `_same_equal_order` (a set cannot hold both, so it is sorted as it is).
    """
    if not isinstance(values, (list, tuple)):
        return _sorted_distinct(set(values))
    distinct = distinct_values(values)
    if isinstance(distinct, set):
        return _sorted_distinct(distinct)
    classes: dict[Any, list] = {}  # the values Python counts as equal, together
    for value in distinct:
        classes.setdefault(value, []).append(value)
    ordered = [sorted(members, key=_same_equal_order) for members in classes.values()]
    by_first = {members[0]: members for members in ordered}  # each class under its first
    return tuple(value for first in _sorted_distinct(set(by_first)) for value in by_first[first])


def _sorted_distinct(distinct: set) -> tuple:
    if len(distinct) > 10_000 and set(map(type, distinct)) == {float}:
        ordered = np.fromiter(distinct, dtype=np.float64, count=len(distinct))
        ordered.sort()  # numpy's order of distinct floats is Python's, but 10x faster
        if not np.isnan(ordered[-1]):  # NaN sorts last; refused before any set is sorted
            return tuple(ordered.tolist())
    if None not in distinct:
        try:
            return tuple(sorted(distinct))  # numbers or strings: fast, natural order
        except TypeError:
            pass
    return tuple(sorted(distinct, key=value_sort_key))


_TYPE_RANK = {bool: 0, int: 1, float: 2, complex: 3}


def _same_equal_order(value: Any) -> tuple:
    """The order of values Python counts as equal: bool, int, float (-0.0 first), complex,
    then other types by name; within one type by repr (tuples: `(0, 'a')` before `(0.0, 'a')`)."""
    kind = type(value)
    return (_TYPE_RANK.get(kind, len(_TYPE_RANK)), kind.__name__, repr(value))


@dataclass(frozen=True)
class ValueSets:
    """The value set of every SOp of a program, each a sorted tuple, keyed by label."""

    vocab: tuple
    max_seq_len: int
    sets: Mapping[str, tuple]

    def __getitem__(self, label: str) -> tuple:
        return self.sets[label]

    def __contains__(self, label: str) -> bool:
        return label in self.sets

    def size(self, label: str) -> int:
        return len(self.sets[label])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{label}: {len(values)}" for label, values in self.sets.items())
        return f"ValueSets(max_seq_len={self.max_seq_len}, sizes={{{sizes}}})"


def check_vocab(vocab: Iterable[Any], max_seq_len: int) -> tuple:
    """The vocab as a sorted tuple, after checking it and max_seq_len make sense."""
    if isinstance(vocab, (str, bytes)):
        raise InvalidProgramError(
            f"vocab must be a collection of tokens, got the string {vocab!r}; "
            f"write set({vocab!r}) for its characters"
        )
    try:
        listed = list(vocab)
        tokens = set(listed)
    except TypeError as exc:
        raise InvalidProgramError(
            f"vocab must be an iterable of hashable tokens, got {vocab!r}"
        ) from exc
    if not tokens:
        raise InvalidProgramError("vocab is empty; give at least one token")
    if None in tokens:
        raise InvalidProgramError("vocab contains None, which RASP reserves for 'no value'")
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise InvalidProgramError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    return sorted_values(listed)


def infer_values(
    program: ProgramGraph | rasp.RASPExpr,
    vocab: Iterable[Any],
    max_seq_len: int,
    *,
    max_value_set_size: int = DEFAULT_MAX_VALUE_SET_SIZE,
    max_numerical_value_set_size: int = DEFAULT_MAX_NUMERICAL_VALUE_SET_SIZE,
    max_sequence_map_pairs: int = DEFAULT_MAX_SEQUENCE_MAP_PAIRS,
) -> ValueSets:
    """Every SOp's value set for inputs of length 1..max_seq_len over `vocab`.

    Categorical SOps get a residual dimension per value, so their sets are capped
    at `max_value_set_size`; numerical SOps use one dimension whatever their set,
    so theirs may grow to `max_numerical_value_set_size`.
    """
    graph = program if isinstance(program, ProgramGraph) else build_graph(program)
    context = RuleContext(
        vocab=check_vocab(vocab, max_seq_len),
        max_seq_len=max_seq_len,
        max_size=max_value_set_size,
        max_numerical_size=max_numerical_value_set_size,
        max_pairs=max_sequence_map_pairs,
        sets={},
    )
    check_length_bound(graph, context)
    for expr in graph.exprs():
        if isinstance(expr, rasp.SOp):
            refuse_non_finite_parameters(expr)
            rule = rasp.rule_for(value_rules.RULES, expr)
            if rule is None:
                raise InvalidProgramError(f"{expr.label}: no value-set rule for {type(expr).__name__}")
            values = rule(expr, context)
            limit = context.limit_for(expr)
            if len(values) > limit:
                raise too_large(expr, len(values), limit)
            refuse_non_finite(expr, values, context.sets)
            if isinstance(values, SortedNumbers):  # numbers as_numbers gives, sorted
                context.sets[expr.label] = tuple(values)
                continue
            if rasp.is_numerical(expr):
                values = as_numbers(values)
            context.sets[expr.label] = sorted_values(values)
    return ValueSets(vocab=context.vocab, max_seq_len=max_seq_len, sets=context.sets)



def check_length_bound(graph: ProgramGraph, ctx: RuleContext) -> None:
    """Refuse, from the arguments alone, an SOp whose value count grows with max_seq_len
    past its limit, before any set is built: `indices` and `length` take max_seq_len values
    and a SelectorWidth max_seq_len + 1, and a ConstantSelector reads the max_seq_len
    indices (with max_seq_len 10^14, `set(range(max_seq_len))` alone exhausts memory)."""
    n = ctx.max_seq_len
    for expr in graph.exprs():
        if isinstance(expr, rasp.IndicesType):
            count, which, kind = n, f"0..{n - 1:,}", ""
        elif isinstance(expr, rasp.LengthType):
            count, which, kind = n, f"1..{n:,}", ""
        elif isinstance(expr, rasp.SelectorWidth):
            count, which, kind = n + 1, f"0..{n:,}", " (a SelectorWidth)"
        elif isinstance(expr, rasp.ConstantSelector):
            count, which, kind = n, f"the indices 0..{n - 1:,}", " (a ConstantSelector, read as indices)"
        else:
            continue
        numerical = isinstance(expr, rasp.SOp) and rasp.is_numerical(expr)
        limit = ctx.max_numerical_size if numerical else ctx.max_size
        if count > limit:
            option = "max_numerical_value_set_size" if numerical else "max_value_set_size"
            raise ValueSetTooLargeError(
                f"{expr.label}{kind}: at max_seq_len={n:,} it takes {count:,} values ({which}), "
                f"over the limit of {limit:,} ({option}); lower max_seq_len (--max-seq-len on "
                f"the command line) or raise compile_program's {option}"
            )

