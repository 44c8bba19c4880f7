"""Value identity: when two values that Python counts as equal are the same value.

Python says `True == 1 == 1.0` and `-0.0 == 0.0`, and a set or dict keeps only
one of them. A categorical SOp gives each value one residual dimension and
decodes that dimension back to one value, so if a program could produce both
`True` and `1` at one SOp the model would answer one where the evaluator
answers the other (`str` of them differs). The rule used everywhere:

- values are the same only when they are equal *and* of the same type, with
  the same sign of zero; inside tuples and frozensets, element by element;
- numpy scalars count as the Python value they hold (`np.int64(1)` is the
  int 1), since they print and compute the same;
- a categorical value set, the vocab, and the values one categorical Aggregate
  selects may not hold two values that are equal but not the same
  (values.py refuses the program, the evaluator reports a mix), and the
  encoder accepts a token only if it is the vocab's token itself.

Numerical SOps are numbers in one dimension and are not subject to this rule:
there True, 1 and 1.0 are the number 1.0 and -0.0 is 0.0 (the evaluator gives
floats, zeros without a sign).
"""

from __future__ import annotations

import math
from itertools import compress, repeat, zip_longest
from operator import eq
from numbers import Real
from typing import Any, Hashable, Sequence

import numpy as np

_CONTAINERS = (tuple, frozenset)


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


def describe_clash(a: Any, b: Any) -> str:
    """Why a and b are not the same value although Python counts them equal."""
    if type(a) is type(b) or (isinstance(a, float) and isinstance(b, float)):
        if isinstance(a, float) and a == 0:
            return f"{a!r} and {b!r} are zeros of different sign"
        return f"{a!r} and {b!r} differ inside (by type or sign of zero)"
    return f"{a!r} ({type(a).__name__}) and {b!r} ({type(b).__name__}) differ in type"


def clash_fix(a: Any, b: Any) -> str:
    """How to make a function return only one of a and b (completes "make f ...")."""
    if isinstance(a, float) and isinstance(b, float) and a == 0:
        return "return 0.0 for every zero: add 0.0 to its result (-0.0 + 0.0 is 0.0)"
    return "return one type: wrap its result in int(...), float(...) or bool(...)"
