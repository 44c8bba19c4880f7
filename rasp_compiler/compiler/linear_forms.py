"""Linear-form detection: maps that see their inputs only through one linear form.

The rewrite stage asks this module, for each Map and SequenceMap, whether its
function is simpler than a table; every answer is found by enumeration over the
finite value sets, never assumed from the function's code.

- `affine_fit`: a numerical Map or SequenceMap that is affine in its inputs is a
  linear form of them, and costs no neuron at all.
- `detect`: a categorical SequenceMap f(x, y) of two categorical SOps is, by
  default, a lookup with up to one neuron per pair of values: `length - indices` at
  max_seq_len N is a table of N^2 pairs. But many such maps depend on their inputs
  only through a single linear form of their numbers,

      f(x, y) = g(z),  z = x + r * y,

  and then one hidden layer computes them with O(|distinct z|) neurons (mlp_linear.py
  walks steps along z: about 4N neurons instead of N^2 for `length - indices - 1`).
  `detect` tries the ratios r = +-(p/q)(dx/dy) for p, q in 1..MAX_RATIO_TERM (dx, dy:
  the smallest spacing of each input's values, so evenly spaced inputs such as
  positions, widths and tokens 1..k are covered), tabulating f on every pair (up to
  MAX_COMBINATIONS), and keeps the r with the fewest changes of g along z whose groups
  of equal z all share one output. The finding (`LinearLookup`) is used only when it
  needs at most half as many neurons as the input space has pairs.
- `possible_pairs`: of a SequenceMap of `length` and `indices`, only the pairs with
  index < length occur; values.py lists the values of those pairs only, and the
  rewrite gives no value on the others (`OnPossiblePairs`).

The finding's lowering is mlp_linear.py; numerical_copies.py lets it read numerical
copies of its inputs after scheduling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rasp_compiler.lang import rasp
from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.residual import Dim, LinearForm

_IMPOSSIBLE = object()
MIN_COMBINATIONS = 64  # below this many input pairs the plain lookup is small anyway
MAX_COMBINATIONS = 4_200_000  # tabulating f beyond this costs seconds (1,024 x 1,025 fits)
MAX_RATIO_TERM = 4  # r = +-(p/q)(dx/dy) for p, q in 1..MAX_RATIO_TERM
AFFINE_TOLERANCE = 1e-9  # relative: affine fits, and equal z values



@dataclass(frozen=True, eq=False)
class LinearLookup:
    """f(x, y) = outputs[k] where z = x + ratio * y equals zs[k] (zs sorted, distinct)."""

    x: str
    y: str
    x_values: tuple
    y_values: tuple
    ratio: float
    zs: tuple[float, ...]
    outputs: tuple  # f's value at each z (one representative pair's result)
    changes: int  # consecutive zs whose outputs differ

    @property
    def width(self) -> int:
        """Neurons of the construction: the anchor (if the first output has a value) and two
        per change."""
        return int(self.outputs[0] is not None) + 2 * self.changes

    def form(self) -> LinearForm:
        """z as a linear form over the two inputs' one-hot dimensions."""
        terms: dict[Dim, float] = {}
        for v in self.x_values:
            terms[Dim(self.x, v)] = terms.get(Dim(self.x, v), 0.0) + float(v)
        for v in self.y_values:
            terms[Dim(self.y, v)] = terms.get(Dim(self.y, v), 0.0) + self.ratio * float(v)
        return LinearForm.of(terms)

    def z_bound(self) -> float:
        """Largest |z| over the residual's possible one-hots (BOS: z = 0)."""
        return (max(abs(float(v)) for v in self.x_values)
                + abs(self.ratio) * max(abs(float(v)) for v in self.y_values))

    def describe(self) -> str:
        return f"{self.x} {'+' if self.ratio >= 0 else '-'} {abs(self.ratio):g} * {self.y}"


def is_length(sop) -> bool:
    """`length` (rasp.length, or the width of an all-true Select over tokens or indices, as
    lib.make_length builds it): at every position it is larger than the position's index,
    also in a causal model, where it counts the positions seen so far."""
    if isinstance(sop, rasp.LengthType):
        return True
    if not isinstance(sop, rasp.SelectorWidth) or not isinstance(sop.selector, rasp.Select):
        return False
    select = sop.selector
    plain = (rasp.TokensType, rasp.IndicesType)
    return (select.predicate is rasp.Comparison.TRUE and isinstance(select.keys, plain)
            and isinstance(select.queries, plain))


def possible_pairs(expr) -> Callable[[Any, Any], bool] | None:
    """For a categorical SequenceMap of `length` and `indices` (either order), the test a
    pair of values must pass to occur at one position (index < length); None otherwise.

    values.py lists the SequenceMap's values from these pairs only (N instead of 2N - 1
    values for `length - indices`), and rewrite wraps the function to give None (no
    one-hot) on the others, so every MLP construction stays consistent with that set.
    """
    if not isinstance(expr, rasp.SequenceMap) or rasp.is_numerical(expr):
        return None
    if is_length(expr.fst) and isinstance(expr.snd, rasp.IndicesType):
        return _index_below_length_second
    if isinstance(expr.fst, rasp.IndicesType) and is_length(expr.snd):
        return _index_below_length_first
    return None


def _index_below_length_second(length, index) -> bool:
    return index < length


def _index_below_length_first(index, length) -> bool:
    return index < length


class OnPossiblePairs:
    """f on the pairs `possible` admits, None (no value) on the others."""

    def __init__(self, f: Callable[[Any, Any], Any], possible: Callable[[Any, Any], bool]):
        self.f = f
        self.possible = possible

    def __call__(self, x, y):
        return self.f(x, y) if self.possible(x, y) else None


def _plain_numbers(values: Sequence) -> bool:
    return bool(values) and all(
        isinstance(v, Real) and v is not None and math.isfinite(v) and abs(v) < 2 ** 53
        for v in values)


def _spacing(numbers: np.ndarray) -> float:
    gaps = np.diff(np.unique(numbers))
    return float(gaps.min()) if gaps.size else 0.0


def detect(f: Callable[[Any, Any], Any], x: str, x_values: Sequence, y: str,
           y_values: Sequence, possible: Callable[[Any, Any], bool] | None = None
           ) -> LinearLookup | None:
    """The linear-form lookup computing f on every pair of values (that `possible` admits:
    the others never occur, so any output will do there), or None when f is not a
    function of one such form (or the form would save little)."""
    if not (_plain_numbers(x_values) and _plain_numbers(y_values)):
        return None
    pairs = len(x_values) * len(y_values)
    if not MIN_COMBINATIONS <= pairs <= MAX_COMBINATIONS:
        return None
    xs = np.asarray([float(v) for v in x_values])
    ys = np.asarray([float(v) for v in y_values])
    dx, dy = _spacing(xs), _spacing(ys)
    if not dx or not dy:
        return None  # a single value: f is a Map of the other input
    try:
        table = [[f(a, b) for b in y_values] for a in x_values]
    except Exception:
        return None  # the ordinary lookup reports the failing value
    codes: dict[Any, int] = {}
    raw: list[Any] = [_IMPOSSIBLE]  # code 0: a pair that never occurs, any output will do
    code_table = np.zeros((len(xs), len(ys)), dtype=np.int64)
    for i, row in enumerate(table):
        for j, out in enumerate(row):
            if possible is not None and not possible(x_values[i], y_values[j]):
                continue
            key = identity_key(out)
            if key not in codes:
                codes[key] = len(raw)
                raw.append(out)
            code_table[i, j] = codes[key]
    if len(raw) <= 2:
        return None  # a constant: the lookup is one neuron
    flat = code_table.ravel()
    best = None
    for ratio in _ratios(dx, dy):
        found = _check_ratio(xs, ys, flat, ratio)
        if found is None:
            continue
        zs, group_codes = found
        changes = int(np.count_nonzero(group_codes[1:] != group_codes[:-1]))
        if best is None or changes < best[2]:
            best = (ratio, zs, changes, group_codes)
    if best is None:
        return None
    ratio, zs, changes, group_codes = best
    lookup = LinearLookup(x, y, tuple(x_values), tuple(y_values), ratio,
                          tuple(float(z) for z in zs), tuple(raw[c] for c in group_codes),
                          changes)
    if 2 * lookup.width > pairs:
        return None  # not worth it: the boxes of a lookup do as well
    return lookup


def _ratios(dx: float, dy: float) -> list[float]:
    out = []
    for p in range(1, MAX_RATIO_TERM + 1):
        for q in range(1, MAX_RATIO_TERM + 1):
            if math.gcd(p, q) != 1:
                continue
            for sign in (1.0, -1.0):
                out.append(sign * p / q * dx / dy)
    return out


def _check_ratio(xs: np.ndarray, ys: np.ndarray, codes: np.ndarray, ratio: float):
    """(sorted distinct z, the output code of each) if equal z always means equal output."""
    z = (xs[:, None] + ratio * ys[None, :]).ravel()
    quantum = AFFINE_TOLERANCE * max(1.0, float(np.abs(z).max()))
    occurring = codes != 0  # code 0: a pair that never occurs, whatever f gives there
    z, codes = z[occurring], codes[occurring]
    keys = np.round(z / quantum).astype(np.int64)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    group_codes = codes[first]
    if not np.array_equal(group_codes[inverse], codes):
        return None
    return z[first], group_codes


def affine_fit(table: Mapping[tuple, Any] | Sequence[tuple[tuple, Any]]
               ) -> tuple[float, ...] | None:
    """(a_1, ..., a_k, c) with f(x_1, ..., x_k) = a_1 x_1 + ... + a_k x_k + c on every
    tabulated argument tuple (given as a mapping or as (arguments, output) pairs, which
    may hold the arguments 0 and 0.0 both: a numerical Map or SequenceMap that is a
    linear form), or
    None. A least-squares fit checked on every entry (within AFFINE_TOLERANCE of the
    largest |f|); an argument that takes one value gets coefficient 0 (the constant
    carries it), and coefficients that are integers up to rounding are snapped to them,
    so forms stay exact."""
    pairs = list(table.items()) if isinstance(table, Mapping) else list(table)
    if not pairs or not all(isinstance(v, Real) and not isinstance(v, bool)
                            for key, _ in pairs for v in key):
        return None
    points = np.asarray([[float(v) for v in key] for key, _ in pairs])
    outs = np.asarray([float(out) for _, out in pairs])
    scale = max(1.0, float(np.abs(outs).max()))

    def snap(v: float) -> float:
        return round(v) if abs(v - round(v)) < AFFINE_TOLERANCE * scale else v

    # Slopes from the centred points (large offsets stay well conditioned), snapped; the
    # constant from the first entry, as f(x) - a x there; then every entry is checked.
    varying = [i for i in range(points.shape[1]) if np.ptp(points[:, i]) > 0]
    slopes = np.zeros(points.shape[1])
    if varying:
        centred = points[:, varying] - points[:, varying].mean(axis=0)
        fitted, *_ = np.linalg.lstsq(centred, outs - outs.mean(), rcond=None)
        slopes[varying] = [snap(float(v)) for v in fitted]
    constant = snap(float(outs[0] - points[0] @ slopes))
    if not np.allclose(points @ slopes + constant, outs, rtol=0, atol=AFFINE_TOLERANCE * scale):
        return None
    return tuple(float(v) for v in slopes) + (float(constant),)
