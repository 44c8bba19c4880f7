"""Value identity: when two values that Python counts as equal are the same value.

Python says `True == 1 == 1.0` and `-0.0 == 0.0`, and a set or dict keeps only
one of them. But `str` tells them apart, user functions can tell them apart
(`type(x)`, `math.copysign`), and the evaluator returns whichever the program
computed. The rule used everywhere:

- values are the same only when they are equal *and* of the same type, with
  the same sign of zero; inside tuples and frozensets, element by element;
- numpy scalars count as the Python value they hold (`np.int64(1)` is the
  int 1), since they print and compute the same;
- a categorical value set (the vocab included) holds every value it can take
  once, so `0` and `0.0` are two values of one SOp, each with its own residual
  dimension, decoded to itself. Wherever the compiler or the runtime keys
  something by a value it uses `identity_key` (or `ValueMap`, a mapping that
  does), and a residual dimension `Dim(sop, value)` compares its value the same
  way (residual.py). Functions and predicates still receive the values
  themselves, so they compare them as Python does (`0 == 0.0` selects);
- one categorical Aggregate copies one value: selecting `0` at one position and
  `0.0` at another is a mix (the evaluator raises, as for 3 and 1), and the
  encoder accepts a token only if it is a vocab token itself (`True` is not the
  token `1`, unless the vocab holds both, and then each is its own token).

Numerical SOps are numbers in one dimension and are not subject to this rule:
there True, 1 and 1.0 are the number 1.0 and -0.0 is 0.0 (the evaluator gives
floats, zeros without a sign).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import compress, repeat, zip_longest
from numbers import Real
from operator import eq
from typing import Any, Hashable, Iterable, Iterator, Sequence

import numpy as np

from rasp_compiler.errors import UnknownNameError

_CONTAINERS = (tuple, frozenset)
_PLAIN = frozenset({str, int, bool, type(None)})  # equal values of one of these types are the same


def identity_key(value: Any) -> Hashable:
    """A key that is equal for two values exactly when they are the same value."""
    kind = type(value)
    if kind is str or kind is int:  # the common cases first
        return (kind, value)
    if isinstance(value, np.generic):
        value = value.item()
        kind = type(value)
    if kind is float:
        return (float, value, math.copysign(1.0, value)) if value == 0 else (float, value)
    if kind is complex:
        return (complex, identity_key(value.real), identity_key(value.imag))
    if isinstance(value, tuple):
        return (kind, tuple(map(identity_key, value)))
    if isinstance(value, frozenset):
        return (kind, frozenset(map(identity_key, value)))
    return (kind, value)


def as_number(value: Any) -> Any:
    """A numerical SOp's value as the model holds it: a number (bools included) as a
    float, and -0.0 as 0.0 (one dimension holds the number zero, not a sign: a value
    set keeps one of the two, so `str` of it must not depend on which); None and
    non-numbers (which the compiler refuses) unchanged."""
    if type(value) is float:
        return value + 0.0  # -0.0 + 0.0 is 0.0; every other float is unchanged
    if not isinstance(value, (Real, np.bool_)):
        return value
    try:
        return float(value) + 0.0
    except OverflowError:  # an int too big for a float: left for the finiteness checks
        return value


def same_value(a: Any, b: Any) -> bool:
    """a == b, and of the same type (and sign of zero): the same value under this rule."""
    kind = type(a)
    if kind is type(b):
        if kind in _PLAIN:
            return a == b
        if kind is float:
            return a == b and (a != 0 or math.copysign(1.0, a) == math.copysign(1.0, b))
        if kind is tuple:
            return len(a) == len(b) and all(map(same_value, a, b))
    return bool(a == b) and identity_key(a) == identity_key(b)


def find_clash(values: Sequence, distinct: set | None = None) -> tuple[int, int] | None:
    """Positions (i, j) of two of `values` that are equal but not the same value, or None.

    Linear, and at C speed unless a clash is possible: only mixed types, a float
    zero, or tuples, frozensets and complex numbers need the per-value key.
    `distinct` is set(values) when the caller has it already.
    """
    if len(values) < 2:
        return None
    if distinct is None:
        distinct = set(values)
    types = set(map(type, values))
    types.discard(type(None))  # None equals only itself
    if len(types) > 1 and len(set(zip(map(type, values), values))) != len(distinct):
        return _scan(values, range(len(values)))  # some equal values differ in type
    if len(types) == 1 and issubclass(next(iter(types)), tuple):
        # Equal tuples that are not the same value hold, at some position, elements that
        # are equal but not the same; with no such clash in any column there is none
        # between the tuples (a SequenceMap's 10^6 pairs: column checks at C speed).
        present = [v for v in values if v is not None]
        if all(find_clash(column) is None for column in zip_longest(*present)):
            return None
        return _scan(values, range(len(values)))
    if any(issubclass(kind, _CONTAINERS) or issubclass(kind, complex) for kind in types):
        return _scan(values, range(len(values)))
    if 0 in distinct and any(issubclass(kind, (float, np.floating)) for kind in types):
        zeros = compress(range(len(values)), map(eq, repeat(0), values))
        return _scan(values, zeros)  # only zeros can differ in sign
    return None


def _scan(values: Sequence, positions) -> tuple[int, int] | None:
    first: dict[Any, tuple[Hashable, int]] = {}
    for i in positions:
        value = values[i]
        key = identity_key(value)
        seen = first.setdefault(value, (key, i))
        if seen[0] != key:
            return seen[1], i
    return None


def distinct_values(values: Sequence, merged: set | None = None) -> set | list:
    """Each value of `values` once, under this rule: `set(values)` when no two of them are
    equal but not the same (the common case, at C speed; `merged` is that set when the
    caller has it already), else a list of the first of each value, in order."""
    if merged is None:
        merged = set(values)
    if find_clash(values, merged) is None:
        return merged
    first: dict[Hashable, Any] = {}
    for value in values:
        first.setdefault(identity_key(value), value)
    return list(first.values())


class ValueMap(Mapping):
    """A read-only mapping whose keys are values told apart by this rule: `1`, `True` and
    `1.0` are three keys (a dict keeps one). Iterating gives the keys as they were given;
    looking one up takes any value that is the same (`np.int64(1)` finds `1`)."""

    __slots__ = ("_items",)

    def __init__(self, pairs: Mapping | Iterable[tuple[Any, Any]] = ()):
        items: dict[Hashable, tuple[Any, Any]] = {}
        for key, value in (pairs.items() if isinstance(pairs, Mapping) else pairs):
            items[identity_key(key)] = (key, value)
        self._items = items

    def __getitem__(self, key: Any) -> Any:
        found = self._items.get(identity_key(key))
        if found is None:  # a KeyError, as a dict raises
            raise UnknownNameError(f"no key {key!r} ({type(key).__name__}) in this map")
        return found[1]

    def __contains__(self, key: Any) -> bool:
        try:
            return identity_key(key) in self._items
        except TypeError:  # an unhashable value is no key
            return False

    def __iter__(self) -> Iterator:
        return (key for key, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "ValueMap({" + ", ".join(f"{k!r}: {v!r}" for k, v in self._items.values()) + "})"


def value_dict(pairs: Iterable[tuple[Any, Any]]) -> dict | ValueMap:
    """A dict of these (key, value) pairs, or a ValueMap when two keys are equal but not
    the same value (a dict would keep one of them): token -> id maps of a vocab holding
    both 1 and True, value -> id maps of an output that can be 0 and 0.0."""
    pairs = list(pairs)
    if find_clash([key for key, _ in pairs]) is None:
        return dict(pairs)
    return ValueMap(pairs)
