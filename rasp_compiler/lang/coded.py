"""How the batched evaluator holds values: an SOp as `Coded` (a table of its distinct values
and int codes [B, n] into it: distinct under identity.py, so equal codes mean the same
value), a numerical SOp of floats as `Numbers` (float64 [B, n] and a None mask), and the
conversions between them; values the same on every input are broadcast over the batch
(batch stride 0, `uniform`). batch_evaluator.py's rules compute on these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from rasp_compiler.lang import evaluator
from rasp_compiler.lang.identity import as_number, identity_key

DENSE_PAIR_LIMIT = 1 << 16  # a predicate or pair function is tabulated densely up to this many pairs


@dataclass(frozen=True, eq=False)
class Coded:
    """An SOp's values: `table[codes[b, i]]` is the value at input b, position i."""

    table: tuple
    codes: np.ndarray  # int [B, n]

    def objects(self) -> np.ndarray:
        """The values as an object array [B, n]."""
        return object_array(self.table)[self.codes]


@dataclass(frozen=True, eq=False)
class Numbers:
    """A numerical SOp whose values are floats: `values`, with None where `none`."""

    values: np.ndarray  # float64 [B, n]; 0.0 where none
    none: np.ndarray  # bool [B, n]
    # The same values as codes into their distinct values, when a rule knows them
    # cheaply (a numerical Map of categorical values): saves sorting B x n floats.
    coded: Coded | None = None

    def objects(self) -> np.ndarray:
        out = self.values.astype(object)
        out[self.none] = None
        return out


SOpValues = Coded | Numbers


class CodeTable:
    """Distinct values in order of first appearance; `add` gives a value's code.

    Values are told apart by identity_key (True, 1 and 1.0 are three); a value
    that cannot be hashed gets a code of its own each time.
    """

    def __init__(self, values: Sequence = ()):
        self.values: list = []
        self._index: dict = {}
        for value in values:
            self.add(value)

    def add(self, value: Any) -> int:
        try:
            key = identity_key(value)
            code = self._index.get(key)
        except TypeError:
            self.values.append(value)
            return len(self.values) - 1
        if code is None:
            code = self._index[key] = len(self.values)
            self.values.append(value)
        return code


def object_array(values: Sequence) -> np.ndarray:
    """A 1-D object array of `values` (tuples stay elements, not rows)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def coded_from_objects(objects: np.ndarray) -> Coded:
    """Coded values from an object array (the fallback's output)."""
    table = CodeTable()
    flat = [table.add(value) for value in objects.ravel().tolist()]
    codes = np.asarray(flat, dtype=np.int64).reshape(objects.shape)
    return Coded(tuple(table.values), codes)


def as_coded(value: SOpValues) -> Coded:
    """An SOp's values as codes into a table of distinct values."""
    return value if isinstance(value, Coded) else numbers_to_coded(value)


def outputs_differ(a: SOpValues, b: SOpValues) -> np.ndarray:
    """bool [B, n]: where two evaluations of one SOp differ by `evaluator._same` (floats
    within 1e-12 relative, anything else equal and of one type)."""
    if isinstance(a, Numbers) and isinstance(b, Numbers):
        with np.errstate(invalid="ignore", over="ignore"):
            close = (a.values == b.values) | (
                np.abs(a.values - b.values) <= 1e-12 * np.maximum(1.0, np.abs(a.values)))
        return (a.none != b.none) | (~a.none & ~close)
    a, b = as_coded(a), as_coded(b)
    joint = CodeTable()
    in_a = np.array([joint.add(v) for v in a.table], dtype=np.int64)
    in_b = np.array([joint.add(v) for v in b.table], dtype=np.int64)
    differs = in_a[a.codes] != in_b[b.codes]  # not the same value: maybe still _same
    for row, position in np.argwhere(differs).tolist():
        differs[row, position] = not evaluator._same(a.table[a.codes[row, position]],
                                                     b.table[b.codes[row, position]])
    return differs


def numbers_to_coded(numbers: Numbers) -> Coded:
    """Distinct floats by bit pattern (so -0.0 and 0.0 stay apart), None last."""
    if numbers.coded is not None:
        return numbers.coded
    bits = np.ascontiguousarray(numbers.values).view(np.uint64)
    unique, codes = sorted_codes(bits)
    table = list(unique.view(np.float64).tolist())
    if numbers.none.any():
        table.append(None)
        codes[numbers.none] = len(table) - 1
    return Coded(tuple(table), codes)


def sorted_codes(keys: np.ndarray, sample: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True), sooner: B x n keys hold few distinct values,
    so the distinct values of the first `sample` rows (plus any the rest adds) are
    found by a sort of those alone and a binary search of the rest."""
    if keys.size == 0:
        return keys.ravel(), np.zeros(keys.shape, dtype=np.int64)
    unique = np.unique(keys[:sample])
    codes = np.searchsorted(unique, keys)
    missing = unique[np.minimum(codes, len(unique) - 1)] != keys
    if missing.any():
        unique = np.union1d(unique, keys[missing])
        codes = np.searchsorted(unique, keys)
    return unique, codes.astype(np.int64, copy=False)


def as_numbers(value: SOpValues) -> SOpValues:
    """A numerical SOp's values as the model holds them (identity.as_number): floats;
    None and non-numbers (which the compiler refuses) kept as they are; -0.0 is 0.0."""
    if isinstance(value, Numbers):
        if value.coded is not None:  # made below: as_number gave its values, no -0.0
            return value
        return Numbers(per_row(lambda v: v + 0.0, value.values), value.none)  # -0.0 + 0.0 is 0.0
    converted = [as_number(v) for v in value.table]
    table = CodeTable()
    remap = np.array([table.add(v) for v in converted] or [0], dtype=np.int64)
    codes = per_row(lambda c: remap[c], value.codes)
    if all(v is None or type(v) is float for v in table.values):
        numbers = np.array([0.0 if v is None else v for v in table.values] or [0.0])
        nones = np.array([v is None for v in table.values] or [False], dtype=bool)
        return Numbers(per_row(lambda c: numbers[c], codes), per_row(lambda c: nones[c], codes),
                       Coded(tuple(table.values) or (None,), codes))
    return Coded(tuple(table.values), codes)


def uniform(array: np.ndarray) -> bool:
    """Whether `array` [B, ...] is held broadcast over the batch (batch stride 0): the
    same on every input by construction, so a rule may compute it on row 0 alone."""
    return array.ndim > 0 and array.shape[0] > 1 and array.strides[0] == 0


def per_row(f: Callable, *arrays: np.ndarray) -> np.ndarray:
    """f(*arrays), elementwise over the batch; on row 0 alone, broadcast, when every
    array is uniform (so the result is too)."""
    if all(uniform(a) for a in arrays):
        row = f(*(a[:1] for a in arrays))
        return np.broadcast_to(row, (arrays[0].shape[0],) + row.shape[1:])
    return f(*arrays)


def codes_present(codes: np.ndarray, size: int) -> np.ndarray:
    """The codes that occur (indices into a table of `size`)."""
    return np.flatnonzero(np.bincount(codes.ravel(), minlength=size))


def rows_with(codes: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """bool [B]: inputs where some position holds a code marked in `bad` (bool per code)."""
    return bad[codes].reshape(codes.shape[0], -1).any(axis=1)
