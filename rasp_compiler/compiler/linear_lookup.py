"""Linear-form lookups: a SequenceMap that sees its inputs only through one linear form.

A SequenceMap f(x, y) of two categorical SOps is, by default, a lookup with up
to one neuron per pair of values: `length - indices` at max_seq_len N is a
table of N^2 pairs. But many such maps depend on their inputs only through a
single linear form of their numbers,

    f(x, y) = g(z),  z = x + r * y,

and then one hidden layer computes them with O(|distinct z|) neurons: z is a
linear function of the two one-hots (sum of v * [x == v] + r * sum of w * [y == w]),
so the clamped steps of mlp.py can walk along z directly: the output at the
smallest z, then a pair of neurons at each midpoint where g changes. For
`length - indices - 1` that is about 4N neurons instead of N^2.

`detect` finds r by enumeration over the finite value sets: it tabulates f on
every pair (up to MAX_COMBINATIONS), tries the ratios r = +-(p/q)(dx/dy) for
p, q in 1..MAX_RATIO_TERM (dx, dy: the smallest spacing of each input's values,
so evenly spaced inputs such as positions, widths and tokens 1..k are covered),
and keeps the r with the fewest changes of g along z whose groups of equal z
all share one output. It is used only when it needs at most half as many
neurons as the input space has pairs, and only for categorical outputs (a
numerical Map or SequenceMap that is affine in its inputs becomes a linear
form instead: `affine_fit`, no neurons at all).

Exactness in float32: consecutive z values must be at least mlp.MIN_RELATIVE_GAP
of z's range apart (the same rule as every step MLP), and the one-hot noise of
the inputs times the step slope must stay below half the distance to a kink
(`check_precision`, called by precision.py).

Read from the one-hots, each step neuron carries a weight for every value of
both inputs (N^2 non-zero weights for `length - indices`). After scheduling,
`with_numerical_copies` gives an input a numerical copy `x.number` where that
saves weights and costs no layer: the lookup then walks along the numerical
form `f.z` = x.number + r y.number with the ordinary steps of mlp.py (a few
weights per neuron), and precision.py bounds the copies' error like any number's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Real
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.residual import BOS, ONE, Dim, LinearForm

_IMPOSSIBLE = object()
LINEAR_STEPS = "linear-steps"  # the construction's name in the layer plan
MIN_COMBINATIONS = 64  # below this many input pairs the plain lookup is small anyway
MAX_COMBINATIONS = 4_200_000  # tabulating f beyond this costs seconds (1,024 x 1,025 fits)
MAX_RATIO_TERM = 4  # r = +-(p/q)(dx/dy) for p, q in 1..MAX_RATIO_TERM
AFFINE_TOLERANCE = 1e-9  # relative: affine fits, and equal z values
NOISE_SHARE = 8.0  # a one-hot input may move z by at most gap / NOISE_SHARE


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
    from rasp_compiler.lang import rasp

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
    from rasp_compiler.lang import rasp

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


# --------------------------------------------------------------------------- lowering


def lower(ops, block, lookup: LinearLookup):
    """The steps along z: the output at the smallest z, then at each midpoint between
    consecutive z values where the output changes a clamped step
    ReLU(L(z - theta) + 1/2) - ReLU(L(z - theta) - 1/2), L = 2 / gap, carrying the change."""
    from rasp_compiler.compiler.mlp import (
        CATEGORICAL_NOISE_BUDGET,
        MLPPart,
        _check_gap,
        _difference,
        _neuron,
    )

    (label,) = block.outputs

    def encode(value) -> dict[Dim, float]:
        return {} if value is None else {Dim(label, value): 1.0}

    form = lookup.form().as_dict()
    z_bound = lookup.z_bound()
    neurons = []
    first = encode(lookup.outputs[0])
    if first:
        neurons.append(_neuron({ONE: 1.0, BOS: -1.0}, first))
    smallest_gap = math.inf
    zs, outs = lookup.zs, lookup.outputs
    for k in range(len(zs) - 1):
        if identity_key(outs[k]) == identity_key(outs[k + 1]):
            continue
        low, high = zs[k], zs[k + 1]
        _check_gap(block.label, f"{lookup.describe()} (the linear form {label} reads)", low, high,
                   z_bound)
        gap = high - low
        smallest_gap = min(smallest_gap, gap)
        slope, theta = 2.0 / gap, (low + high) / 2.0
        delta = _difference(encode(outs[k + 1]), encode(outs[k]))
        for half, sign in ((0.5, 1.0), (-0.5, -1.0)):
            w_in = {dim: slope * c for dim, c in form.items()}
            bias = -slope * theta + half
            w_in[ONE] = bias
            w_in[BOS] = -(slope * z_bound + abs(bias) + 1.0)
            neurons.append(_neuron(w_in, {d: sign * w for d, w in delta.items()}))
    reach = z_bound or 1.0
    budget = {leaf: min(CATEGORICAL_NOISE_BUDGET, smallest_gap / NOISE_SHARE / reach)
              for leaf in (lookup.x, lookup.y)} if smallest_gap < math.inf else {}
    return MLPPart(block.label, LINEAR_STEPS, block.units, block.leaves, block.outputs,
                   tuple(neurons), budget)


def check_precision(block, part, noise: Mapping[str, float], lookup: LinearLookup) -> None:
    """Refuse when the inputs' one-hot noise or float32 rounding could push a step's
    pre-activation (exactly 1/2 or more from its kinks at every possible z) across one."""
    from rasp_compiler.compiler.precision import gamma
    from rasp_compiler.errors import CompilationError

    moved = (noise.get(lookup.x, 0.0) * max(abs(float(v)) for v in lookup.x_values)
             + noise.get(lookup.y, 0.0) * abs(lookup.ratio)
             * max(abs(float(v)) for v in lookup.y_values))
    z_bound = lookup.z_bound()
    reference = max(lookup.x_values, key=lambda v: abs(float(v)))  # x's weight = slope * value
    for neuron in part.neurons:
        weights = dict(neuron.w_in)
        bias = weights.get(ONE, 0.0)
        slope = abs(weights.get(Dim(lookup.x, reference), 0.0) / float(reference)) \
            if float(reference) else 0.0
        if not slope:
            continue  # the anchor: on at every token position
        rounded = float(gamma(4)) * (slope * z_bound + abs(bias))
        wrong = slope * moved + rounded
        if wrong >= 0.5:
            raise CompilationError(
                f"{block.label}: the MLP computing it walks along {lookup.describe()} with "
                f"steps {2.0 / slope:.3g} apart, but one-hot noise and float32 rounding may "
                f"move a step's input by {wrong / slope:.3g}, so it could read the wrong value; "
                f"lower max_seq_len or map the inputs to fewer values first")


# --------------------------------------------------------------------------- numerical copies

COPY_SUFFIX = ".number"  # the numerical copy of categorical SOp x is the hidden SOp `x.number`
FORM_SUFFIX = ".z"  # the linear form a linear lookup `f` walks along, read from copies: `f.z`
HINGE_WEIGHTS = 4  # non-zero weights of one neuron of a copy's MLP (z, one, bos in; one out)


class _AsNumber:
    """A categorical unit's function with its (numeric) value as a float: the copy's."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __call__(self, *args):
        return float(self.fn(*args))


class _AlongForm:
    """A linear lookup as a function of z alone: the output at each of its zs."""

    def __init__(self, lookup: LinearLookup):
        self.lookup = lookup
        self.zs = np.asarray(lookup.zs)
        self.outputs = lookup.outputs
        self.quantum = AFFINE_TOLERANCE * max(1.0, float(np.abs(self.zs).max()))

    def __call__(self, z):
        from rasp_compiler.errors import CompilationError

        k = int(np.clip(np.searchsorted(self.zs, z), 1, len(self.zs) - 1))
        nearest = k - 1 if abs(z - self.zs[k - 1]) <= abs(z - self.zs[k]) else k
        if abs(z - self.zs[nearest]) > self.quantum:  # only its own zs are ever asked for
            raise CompilationError(
                f"{self.lookup.describe()}: {z!r} is not one of the values this linear form "
                f"takes; this is a compiler bug, please report it with the program")
        return self.outputs[nearest]


def with_numerical_copies(ops, plan, *, max_fused_input_space: int):
    """(ops, plan) where each linear lookup compiled on its own reads numerical copies of
    its inputs, or None when no lookup gains from that.

    A `linear-steps` neuron reading the one-hots of x and y carries one weight per value
    of each (z = sum of v [x = v] + r sum of w [y = w]): about 8 N^2 weights for the 4N
    neurons of `length - indices`. A numerical copy `x.number` (one dimension holding x's
    value) brings that to a few per neuron. It is written where x is: by the embedding
    for tokens, indices and constants, and, for a categorical SOp decoded by an MLP from
    one number (a SelectorWidth's decoder), by a second MLP block beside the decoder in
    the same layer, with x's value as a number (piecewise-linear, so it carries the
    attention's error scaled by the decoder's slope, which precision.py bounds). The
    lookup becomes a Map of the numerical form `f.z` = x.number + r y.number (the one-hot
    reading stays for an input without a copy), compiled by the ordinary steps. An input
    gets a copy only where it saves weights; x's one-hot is dropped when nothing else
    reads it. The plan is rescheduled; if that would take more layers, None.
    """
    from rasp_compiler.compiler.mlp import linear_lookup_of, neuron_bound
    from rasp_compiler.compiler.rewrite import Embedding, MLPUnit
    from rasp_compiler.compiler.schedule import schedule
    from rasp_compiler.lang import rasp

    block_of = {unit: block for layer in plan.layers for block in layer.blocks
                for unit in block.units}
    taken = set(ops.values) | {expr.label for expr in ops.graph.exprs()}
    values, encodings = dict(ops.values), dict(ops.encodings)
    embeddings, units, forms = dict(ops.embeddings), dict(ops.units), dict(ops.forms)
    after: dict[str, list[str]] = {}  # label -> new labels placed right after it in order
    before: dict[str, list[str]] = {}  # label -> new labels placed right before it
    copies: dict[str, str] = {}
    numerical = rasp.Encoding.NUMERICAL

    def copy_cost(source: str) -> float | None:
        """Non-zero weights of writing source's copy; None when it cannot have one."""
        if f"{source}{COPY_SUFFIX}" in taken or None in ops.values[source]:
            return None
        if source in ops.embeddings:
            return sum(v is not None and float(v) != 0 for v in ops.embeddings[source].table.values())
        block = block_of.get(source)
        if block is None or block.units != (source,):
            return None  # an attention output or a fused block: no place to write a copy
        leaves = [ops.values[leaf] for leaf in block.leaves]
        if len(block.leaves) != 1 or not ops.is_numerical(block.leaves[0]) or None in leaves[0]:
            return None  # the copy must be a function of one number, as the decoder is
        return HINGE_WEIGHTS * neuron_bound(ops, block)

    def make_copy(source: str) -> str:
        if source in copies:
            return copies[source]
        label = f"{source}{COPY_SUFFIX}"
        if source in ops.embeddings:
            embedding = ops.embeddings[source]
            table = [(k, float(v)) for k, v in embedding.table.items() if v is not None]
            embeddings[label] = Embedding(label, embedding.by, numerical, table)
        else:
            unit = ops.units[source]
            units[label] = MLPUnit(label, unit.inputs, _AsNumber(unit.fn), numerical, "Copy")
        values[label] = tuple(sorted({float(v) for v in ops.values[source]}))
        encodings[label] = numerical
        after.setdefault(source, []).append(label)
        copies[source] = label
        return label

    for layer in plan.layers:
        for block in layer.blocks:
            lookup = linear_lookup_of(ops, block)
            (label,) = block.units if lookup is not None else (None,)
            if lookup is None or f"{label}{FORM_SUFFIX}" in taken:
                continue
            steps = 2 * lookup.changes
            chosen: dict[str, str] = {}
            for source, source_values in ((lookup.x, lookup.x_values),
                                          (lookup.y, lookup.y_values)):
                cost = copy_cost(source)
                spread = sum(float(v) != 0 for v in source_values)
                if cost is not None and steps * (spread - 1) > (0 if source in copies else cost):
                    chosen[source] = make_copy(source)
            if not chosen:
                continue
            terms: dict[Dim, float] = {}
            for source, source_values, factor in ((lookup.x, lookup.x_values, 1.0),
                                                  (lookup.y, lookup.y_values, lookup.ratio)):
                if source in chosen:
                    terms[Dim(chosen[source])] = terms.get(Dim(chosen[source]), 0.0) + factor
                else:
                    for v in source_values:
                        terms[Dim(source, v)] = terms.get(Dim(source, v), 0.0) + factor * float(v)
            z = f"{label}{FORM_SUFFIX}"
            forms[z] = LinearForm.of(terms)
            values[z] = lookup.zs
            encodings[z] = numerical
            before.setdefault(label, []).append(z)
            unit = ops.units[label]
            units[label] = MLPUnit(label, (z,), _AlongForm(lookup), unit.encoding, unit.kind,
                                   linear=lookup)
    if not copies:
        return None
    order: list[str] = []
    for label in ops.order:
        order.extend(before.get(label, ()))
        order.append(label)
        order.extend(after.get(label, ()))
    frozen = MappingProxyType
    magnitudes = dict(ops.magnitudes)
    for label in order:
        if label not in magnitudes and encodings[label] is numerical:
            magnitudes[label] = max((abs(float(v)) for v in values[label]), default=0.0)
    copied = dataclasses.replace(
        ops, values=frozen(values), encodings=frozen(encodings), order=tuple(order),
        embeddings=frozen(embeddings), units=frozen(units), forms=frozen(forms),
        position=frozen({label: i for i, label in enumerate(order)}),
        magnitudes=frozen(magnitudes))
    replanned = schedule(copied, max_fused_input_space=max_fused_input_space)
    if replanned.depth > plan.depth:
        return None
    # The copies' forms cut chains of MLPs that unlimited fusion could join: the depth
    # bound, and the notes on why units were not fused, are those of the one-hot reading.
    bound = min(plan.lower_bound, replanned.lower_bound)
    notes = tuple(dict.fromkeys(plan.fusion_notes + replanned.fusion_notes))
    return copied, dataclasses.replace(replanned, lower_bound=bound, fusion_notes=notes)
