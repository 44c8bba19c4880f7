"""Precision: how far the float32 model can be from the exact answer, and refusal past tolerance.

Over 500 lines on purpose: the bounds are one walk over the model in schedule order
(`_Analysis`), each SOp's bound built from the bounds of what it reads, so its parts for
forms, heads and MLPs share that state; split, they would pass it between modules.

The weights are exact in real arithmetic, so a compiled model is wrong only
through float32 (unit roundoff u = 2^-24, about 6e-8). For every numerical
quantity (a residual dimension, a linear form read from the residual, a head's
average, an MLP output) this module bounds |model - exact| as
`absolute + relative * |exact value|`, in schedule order, from three sources:

1. Rounding. Storing a number rounds it by at most u relative; a dot product of
   k terms with rounded weights is off by at most gamma(k + 1) = (k+1)u / (1 - (k+1)u)
   times the sum of the terms' magnitudes (Higham, "Accuracy and Stability of
   Numerical Algorithms", 3.1). When every term has the same sign that sum is
   the result itself (a relative error); when signs mix it is not: `1e8 + x`
   averaged and then `- 1e8` is off by about u * 1e8 = 6 however small the result.
2. Attention leak. A head's softmax puts at most `leak` of its mass on keys it
   should not read (`LoweredHead.leak_bound` for an Aggregate; N exp(-c) for a
   SelectorWidth, whose BOS key is meant to be read), so an average is off by at
   most leak x the span of the values it may read, its default included. The
   keys it reads all score the maximum, so their exp is exactly 1 and the
   normaliser an integer plus the leak: the weights are within 3u, and the
   weighted sum of N + 1 values rounds by gamma(N + 5) of sum(weight x |value|).
3. Propagation. A linear form sum(c_i x_i) adds sum(|c_i| x error_i); an average
   keeps its values' error; a piecewise-linear MLP multiplies its input's error
   by its slope near that input; a step MLP absorbs any input error that cannot
   push a neuron across its kink and is refused when one can; one-hot inputs off
   by at most eta in L1 (leak of categorical heads) move a lookup's output by at
   most 2 eta max|output|.

Not tracked: rounding inside MLPs whose outputs are categorical (the step
construction keeps one-hots well inside the decoder's 0.1, see mlp.py), and the
BOS position (cleaned after every layer).

`check_magnitudes` (before lowering) refuses numbers float32 cannot hold with
room for sums; `check_float32_precision` (after lowering) refuses, naming the SOp, the
magnitude and the bound, when the program's numerical output may differ from
the evaluator by more than verification allows (verify.ATOL + verify.RTOL *
|value|), or when a step MLP may read the wrong side of a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from rasp_compiler.compiler.linear_forms import LinearLookup
from rasp_compiler.compiler.mlp_linear import LINEAR_STEPS, linear_lookup_of
from rasp_compiler.compiler.neurons import MLPPart
from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.compiler.schedule import Block, Schedule
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang import rasp
from rasp_compiler.model.constants import ATOL, FLOAT32_SAFE_MAGNITUDE, RTOL
from rasp_compiler.model.residual import BOS, ONE, Dim, LinearForm

if TYPE_CHECKING:
    from rasp_compiler.compiler.lower import LoweredHead, LoweredModel

UNIT_ROUNDOFF = 2.0 ** -24  # float32, round to nearest
FLOAT64_UNIT_ROUNDOFF = 2.0 ** -53  # the decoder reads output forms in float64
PROBABILISTIC_LAMBDA = 7.0  # confidence of the sqrt(k) bound on long sums (see gamma)
_CHUNK = 2_000_000  # values x neurons per numpy block in the per-value MLP bounds


def gamma(k, u: float = UNIT_ROUNDOFF):
    """Relative error bound of a float32 sum of k products, as a multiple of sum(|product|).

    Higham's worst case k u / (1 - k u) for short sums; for long ones the
    probabilistic bound exp(lambda sqrt(k) u) - 1 (Higham and Mary, "A new approach
    to probabilistic rounding error analysis", 2019: rounding errors independent
    with mean zero; lambda = 7 fails with probability below 2k exp(-24.5), 5e-7 at
    k = 10,000), since the worst case of a sum of thousands of hinges or keys
    (every rounding in the same direction) does not happen. Works on arrays too.
    """
    worst = k * u / (1.0 - k * u)
    return np.minimum(worst, np.expm1(PROBABILISTIC_LAMBDA * np.sqrt(k) * u))


@dataclass(frozen=True)
class ErrorBound:
    """|model - exact| <= absolute + relative * |exact|; `cause` names the largest part."""

    absolute: float = 0.0
    relative: float = 0.0
    cause: str = ""

    def at(self, magnitude: float) -> float:
        return self.absolute + self.relative * abs(magnitude)


@dataclass(frozen=True)
class PrecisionReport:
    """Error bounds of the numerical SOps and one-hot noise of the categorical ones."""

    errors: Mapping[str, ErrorBound]
    noise: Mapping[str, float]  # categorical SOp -> L1 distance of its dims from a one-hot
    output: ErrorBound | None  # of the program's output, if numerical


def check_magnitudes(ops: OpGraph, live: Iterable[str]) -> None:
    """Refuse numerical values float32 cannot hold (before lowering writes them)."""
    for label in ops.order:
        if label in live and ops.is_numerical(label):
            magnitude = _magnitude(ops.values[label])
            if not magnitude <= FLOAT32_SAFE_MAGNITUDE:
                raise CompilationError(
                    f"{label}: this numerical SOp can be as large as {magnitude:.3g}, beyond what "
                    f"float32 can hold and still add up (3.4e38 at most; the compiler allows "
                    f"{FLOAT32_SAFE_MAGNITUDE:.0e}); scale the values down or make {label} "
                    f"categorical"
                )


def check_float32_precision(ops: OpGraph, schedule: Schedule, lowered: "LoweredModel"
                            ) -> PrecisionReport:
    """Bound every numerical quantity's float32 error; refuse an output that may miss tolerance."""
    report = analyse_precision(ops, schedule, lowered)
    label = ops.output
    if report.output is None:
        return report
    numbers = _numbers(ops.values[label])
    if not numbers.size:
        return report
    sizes = np.abs(numbers)
    for value in (numbers[np.argmin(sizes)], numbers[np.argmax(sizes)]):
        error = report.output.at(value)
        allowed = ATOL + RTOL * abs(value)
        if error > allowed:
            raise CompilationError(
                f"{label}: the float32 model can be off by up to {error:.3g} where this numerical "
                f"output is {float(value):.6g}, more than the {allowed:.2g} it must meet "
                f"({ATOL:g} + {RTOL:g} x |value|); {report.output.cause}. Keep the numbers small "
                f"where they are added and averaged: subtract large offsets before the "
                f"Aggregate or the sum, not after, or round the values with a categorical Map"
            )
    return report


def analyse_precision(ops: OpGraph, schedule: Schedule, lowered: "LoweredModel") -> PrecisionReport:
    """Error bounds for every live numerical SOp, in schedule order (see the module doc)."""
    analysis = _Analysis(ops, schedule)
    for label in ops.embeddings:
        if label in schedule.live:
            analysis.embedding(label)
    for layer, heads, mlp in zip(schedule.layers, lowered.heads, lowered.mlps):
        for head in heads:
            analysis.head(head)
        for block, part in zip(layer.blocks, mlp.parts):
            analysis.block(block, part)
    output = None
    if ops.is_numerical(ops.output):
        output = analysis.error_of(ops.output, readout=True)
    return PrecisionReport(dict(analysis.errors), dict(analysis.noise), output)


# --------------------------------------------------------------------------- helpers


def _numbers(values) -> np.ndarray:
    try:
        return np.asarray([v for v in values if v is not None], dtype=np.float64)
    except OverflowError:
        return np.asarray([math.inf])


def _magnitude(values) -> float:
    numbers = _numbers(values)
    return float(np.abs(numbers).max()) if numbers.size else 0.0


@dataclass(frozen=True)
class _Form:
    """A linear form's error bound, the range of its value and sum(|term|) at token positions."""

    bound: ErrorBound
    low: float
    high: float
    size: float  # largest sum of |c_i x_i|
    aligned: bool  # every term has one sign, so sum(|term|) = |value|

    @property
    def magnitude(self) -> float:
        return max(abs(self.low), abs(self.high))


class _Analysis:
    def __init__(self, ops: OpGraph, schedule: Schedule):
        self.ops = ops
        self.schedule = schedule
        self.n = ops.max_seq_len
        self.errors: dict[str, ErrorBound] = {}
        self.noise: dict[str, float] = {}
        self._ranges: dict[str, tuple[float, float]] = {}

    # ----------------------------------------------------------------- lookups

    def range_of(self, label: str) -> tuple[float, float]:
        if label not in self._ranges:
            numbers = _numbers(self.ops.values[label])
            self._ranges[label] = (
                (float(numbers.min()), float(numbers.max())) if numbers.size else (0.0, 0.0)
            )
        return self._ranges[label]

    def magnitude(self, label: str) -> float:
        low, high = self.range_of(label)
        return max(abs(low), abs(high))

    def error_of(self, label: str, readout: bool = False) -> ErrorBound:
        """The bound of a numerical SOp as its readers see it: its dimension or its form."""
        if label in self.errors:
            return self.errors[label]
        return self.form(self.ops.forms[label].terms, readout=readout).bound

    # ----------------------------------------------------------------- linear forms

    def form(self, terms: Iterable[tuple[Dim, float]], readout: bool = False) -> _Form:
        """Bound of sum(c * dim) at token positions (where `bos` is 0).

        Each SOp is one term: a numerical dimension c * x, or a categorical SOp's
        dimensions, of which one (nearly) is 1, giving the coefficient of its value.
        """
        u = FLOAT64_UNIT_ROUNDOFF if readout else UNIT_ROUNDOFF
        constant = 0.0
        categorical: dict[str, dict] = {}
        numerical: list[tuple[str, float]] = []
        for dim, c in terms:
            if dim == BOS or c == 0:
                continue
            if dim == ONE:
                constant += c
            elif dim.is_numerical:
                numerical.append((dim.sop, c))
            else:
                categorical.setdefault(dim.sop, {})[dim] = c  # 0 and 0.0: two dims
        ranges: list[tuple[float, float]] = []
        carried: list[tuple[float, float, float, str]] = []  # absolute, relative, |term|, source
        if constant:
            ranges.append((constant, constant))
        for sop, c in numerical:
            low, high = self.range_of(sop)
            ranges.append((min(c * low, c * high), max(c * low, c * high)))
            bound = self.error_of(sop)
            carried.append((abs(c) * bound.absolute, bound.relative, abs(c) * self.magnitude(sop),
                            f"the error carried from {sop} ({bound.cause})"))
        for sop, coefficients in categorical.items():
            outs = list(coefficients.values())
            possible = self.ops.values[sop]
            if None in possible or len(coefficients) < len(possible):
                outs.append(0.0)  # a value the form gives no coefficient reads as 0
            ranges.append((min(outs), max(outs)))
            noise = self.noise.get(sop, 0.0)
            carried.append((noise * max(abs(o) for o in outs), 0.0, 0.0,
                            f"one-hot noise {noise:.2g} on {sop}"))
        low = sum(r[0] for r in ranges)
        high = sum(r[1] for r in ranges)
        sizes = [max(abs(r[0]), abs(r[1])) for r in ranges]
        size = sum(sizes)
        rounding = gamma(len(ranges) + 1, u)
        rounding_cause = (f"float32 rounds terms as large as {max(sizes, default=0.0):.3g} by up "
                          f"to {u * max(sizes, default=0.0):.2g}")
        aligned = all(r[0] >= 0 for r in ranges) or all(r[1] <= 0 for r in ranges)
        if aligned:  # |sum| = sum(|term|): every error is relative to the result
            absolute = sum(a for a, _, _, _ in carried)
            relative = max((r for _, r, _, _ in carried), default=0.0) + rounding
            parts = [(a + r * size, source) for a, r, _, source in carried]
        else:
            # Signs mix: the result may cancel, the errors of the terms do not.
            absolute = sum(a + r * scale for a, r, scale, _ in carried) + rounding * size
            relative = 0.0
            parts = [(a + r * scale, source) for a, r, scale, source in carried]
            rounding_cause += (f", while the result can be as small as "
                               f"{_smallest(low, high):.3g}")
        parts.append((rounding * size, rounding_cause))
        cause = max(parts, key=lambda p: p[0])[1]
        return _Form(ErrorBound(absolute, relative, cause), low, high, size, aligned)

    # ----------------------------------------------------------------- embeddings

    def embedding(self, label: str) -> None:
        if self.ops.is_numerical(label):
            self.errors[label] = ErrorBound(
                0.0, UNIT_ROUNDOFF, f"float32 stores {label} to {UNIT_ROUNDOFF:.2g} relative")
        else:
            self.noise[label] = 0.0

    # ----------------------------------------------------------------- heads

    def head(self, head: "LoweredHead") -> None:
        op = self.ops.attention[head.label]
        c = head.coldness
        # Noisy query/key one-hots move scores by at most c * noise per atom.
        shift = sum(self.noise.get(a.query, 0.0) + self.noise.get(a.key, 0.0) for a in op.atoms)
        stretch = math.exp(min(2.0 * c * shift, 50.0))
        rounding = gamma(self.n + 5)  # N + 1 keys summed, weights within 3u (module doc)
        if op.kind == "width":  # BOS is meant to be read; other keys score c lower
            leak = self.n * math.exp(-c) * stretch
            self.errors[op.label] = ErrorBound(leak, rounding, f"the softmax of {op.source}")
            return
        leak = head.leak_bound * stretch
        if op.encoding is rasp.Encoding.CATEGORICAL:
            carried = max((self.noise.get(s, 0.0) for s in op.values), default=0.0)
            self.noise[op.label] = carried + 2.0 * leak + rounding
            return
        values = self.form([(read, w) for read, _, w in op.ov if read != BOS])
        default = sum(w for read, _, w in op.ov if read in (ONE, BOS))  # the BOS key's value
        at_bos = gamma(3) * sum(abs(w) for read, _, w in op.ov if read in (ONE, BOS))
        low, high = min(values.low, default), max(values.high, default)
        span = high - low
        leaked = leak * span
        parts = [
            (leaked, f"the attention of {op.source} leaks up to {leak:.2g} of its weight onto "
                     f"values spanning {span:.3g}"),
        ]
        if low >= 0 or high <= 0:
            absolute = values.bound.absolute + at_bos + leaked
            relative = values.bound.relative + rounding
            magnitude = max(abs(low), abs(high))
            parts.append((values.bound.at(magnitude), values.bound.cause))
            parts.append((rounding * magnitude, f"the float32 average in {op.source} of values "
                                                f"as large as {magnitude:.3g}"))
        else:
            magnitude = max(values.size, abs(default))
            carried = values.bound.at(values.size)
            absolute = carried + at_bos + leaked + rounding * magnitude
            relative = 0.0
            parts.append((carried, values.bound.cause))
            parts.append((rounding * magnitude, f"the float32 average in {op.source} of values "
                                                f"as large as {magnitude:.3g} of both signs"))
        cause = max(parts, key=lambda p: p[0])[1]
        self.errors[op.label] = ErrorBound(absolute, relative, cause)

    # ----------------------------------------------------------------- MLPs

    def block(self, block: Block, part: MLPPart) -> None:
        categorical = [leaf for leaf in block.leaves if not self.ops.is_numerical(leaf)]
        numerical = [leaf for leaf in block.leaves if self.ops.is_numerical(leaf)]
        one_hot_noise = sum(self.noise.get(leaf, 0.0) for leaf in categorical)
        for label in block.outputs:
            if not self.ops.is_numerical(label):
                self.noise[label] = 2.0 * one_hot_noise
        lookup = linear_lookup_of(self.ops, block)
        if lookup is not None:  # mlp_linear.py: steps along x + r y, read from one-hots
            check_linear_steps(block, part, self.noise, lookup)
            return
        if not numerical:
            self._lookup(block, part, categorical, one_hot_noise)
            return
        (z_label,) = numerical
        z_form = _form_of(self.ops, z_label)
        if categorical:
            self._gated(block, part, z_label, z_form, categorical, one_hot_noise)
        else:
            self._along_values(block, part, z_label, z_form)

    def _lookup(self, block: Block, part: MLPPart, leaves: list[str], noise: float) -> None:
        """One neuron (nearly) on per input: exact up to the one-hot noise and a few roundings."""
        k = max(len(leaves), 1)
        relative = gamma(k + 2) * (2 * k) + gamma(part.width + 1)
        for label in block.outputs:
            if self.ops.is_numerical(label):
                largest = max((abs(w) for n in part.neurons for d, w in n.w_out
                               if d == Dim(label)), default=0.0)
                self.errors[label] = ErrorBound(
                    2.0 * noise * largest, relative,
                    f"one-hot noise {noise:.2g} on the inputs of the lookup computing {label}")

    def _neuron_terms(self, neuron, z_form: LinearForm):
        """(slope on z, offset at token positions) of a neuron reading only z."""
        form = z_form.as_dict()
        reference = next(d for d in form if d not in (ONE, BOS))
        weights = dict(neuron.w_in)
        slope = weights.get(reference, 0.0) / form[reference]
        offset = weights.get(ONE, 0.0) - slope * form.get(ONE, 0.0)
        terms = len({d.sop for d in form if d not in (ONE, BOS)}) + 1  # one dim per one-hot is on
        return slope, offset, terms

    def _along_values(self, block: Block, part: MLPPart, z_label: str,
                      z_form: LinearForm) -> None:
        """At each possible value of the single input z: carried and rounding error of each
        output, and whether an error could push a step across its kink."""
        z = self.form(z_form.terms)
        zs = _numbers(self.ops.values[z_label])
        if not zs.size or not any(d not in (ONE, BOS) for d, _ in z_form.terms):
            self._gated(block, part, z_label, z_form, [], 0.0)  # z is a constant
            return
        slopes, offsets, counts = (np.asarray(a, dtype=np.float64) for a in zip(
            *[self._neuron_terms(n, z_form) for n in part.neurons]))
        outputs = [label for label in block.outputs if self.ops.is_numerical(label)]
        w_out = np.zeros((part.width, len(outputs)))
        for i, neuron in enumerate(part.neurons):
            for d, w in neuron.w_out:
                if d.sop in outputs and d.is_numerical:
                    w_out[i, outputs.index(d.sop)] += w
        steps = part.construction in ("steps", LINEAR_STEPS)  # along numerical copies
        per_value = np.zeros((zs.size, len(outputs)))
        exact = np.zeros((zs.size, len(outputs)))
        rounds = np.asarray([gamma(int(k) + 1) for k in counts])
        writes = np.abs(w_out).sum(axis=1) > 0
        chunk = max(1, _CHUNK // max(part.width, 1))
        for start in range(0, zs.size, chunk):
            values = zs[start:start + chunk, None]
            z_error = z.bound.absolute + z.bound.relative * np.abs(values)
            size = np.abs(values) if z.aligned else z.size
            pre = slopes * values + offsets
            rounded = rounds * (np.abs(slopes) * size + np.abs(offsets))
            wrong = np.abs(slopes) * z_error + rounded  # how far each pre-activation may be off
            if steps:
                kinks = (slopes != 0) & (wrong >= np.abs(pre))
                if kinks.any():
                    row, column = np.argwhere(kinks)[0]
                    self._refuse_step(block, z_label, f"at {float(values[row, 0]):.6g}",
                                      float(z_error[row, 0]), 2.0 / abs(slopes[column]))
            maybe_on = pre + wrong > 0
            surely_on = pre - wrong > 0
            # Every neuron reads the same z, so its error moves the output along the local
            # slope (a step's two neurons cancel), plus what neurons near their kink may add.
            slope_here = np.abs((surely_on * slopes) @ w_out) + (
                ((maybe_on & ~surely_on) * np.abs(slopes)) @ np.abs(w_out))
            hidden = np.maximum(pre, 0.0)
            # The output sums only the neurons that are on (adding an exact 0 is exact).
            summing = gamma((maybe_on & writes).sum(axis=1, keepdims=True) + 1)
            per_value[start:start + chunk] = (
                slope_here * z_error
                + (rounded * maybe_on) @ np.abs(w_out)
                + summing * ((hidden + wrong * maybe_on) @ np.abs(w_out)))
            exact[start:start + chunk] = hidden @ w_out
        for j, label in enumerate(outputs):
            self.errors[label] = _fit(per_value[:, j], exact[:, j],
                                      f"the MLP computing {label} from {z_label} ({z.bound.cause})")

    def _gated(self, block: Block, part: MLPPart, z_label: str, z_form: LinearForm,
               categorical: list[str], one_hot_noise: float) -> None:
        """Steps gated by categorical inputs: one bound over every input combination."""
        z = self.form(z_form.terms)
        z_coefficients = {d: c for d, c in z_form.terms
                          if d not in (ONE, BOS) and (d.is_numerical or d.sop not in categorical)}
        outputs = [label for label in block.outputs if self.ops.is_numerical(label)]
        own_total = {label: 0.0 for label in outputs}
        hidden_total = {label: 0.0 for label in outputs}
        for neuron in part.neurons:
            size, carried, groups = 0.0, 0.0, 0
            one_hot: dict[str, float] = {}
            slope = 0.0
            for d, w in neuron.w_in:
                if d == BOS:
                    continue  # 0 at token positions
                if d in z_coefficients:
                    slope = max(slope, abs(w / z_coefficients[d]))
                if d == ONE:
                    size += abs(w)
                    groups += 1
                elif d.is_numerical:
                    magnitude = self.magnitude(d.sop)
                    size += abs(w) * magnitude
                    carried += abs(w) * self.error_of(d.sop).at(magnitude)
                    groups += 1
                else:
                    one_hot[d.sop] = max(one_hot.get(d.sop, 0.0), abs(w))
            for sop, w in one_hot.items():  # one dimension of each one-hot is (nearly) 1
                size += w
                carried += w * self.noise.get(sop, 0.0)
                groups += 1
            rounded = gamma(groups + 1) * size
            if slope and carried + rounded >= 0.5:  # exact pre-activations sit 1/2 from a kink
                self._refuse_step(block, z_label, f"(values up to {z.magnitude:.3g})",
                                  z.bound.at(z.magnitude), 2.0 / slope)
            # The two neurons of a step read the same input: its error cancels between them.
            own = rounded if slope else carried + rounded
            for d, w in neuron.w_out:
                if d.sop in own_total and d.is_numerical:
                    own_total[d.sop] += abs(w) * own
                    hidden_total[d.sop] += abs(w) * (size + carried)
        for label in outputs:
            largest = max((abs(w) for n in part.neurons for d, w in n.w_out if d == Dim(label)),
                          default=0.0)
            absolute = (own_total[label] + gamma(part.width + 1) * hidden_total[label]
                        + 2.0 * one_hot_noise * largest)
            self.errors[label] = ErrorBound(
                absolute, 0.0, f"float32 rounding in the MLP computing {label} from {z_label}")

    def _refuse_step(self, block: Block, z_label: str, where: str, error: float,
                     gap: float) -> None:
        cause = self.form(_form_of(self.ops, z_label).terms).bound.cause
        raise CompilationError(
            f"{block.label}: the MLP computing it reads {z_label} {where}, which the float32 "
            f"model knows only to within {error:.3g} ({cause}), while its output changes "
            f"between values {gap:.3g} apart, so it could read the wrong value. Keep {z_label} "
            f"small (subtract large offsets before averaging or adding), or round it with a Map "
            f"first"
        )


def check_linear_steps(block: Block, part: MLPPart, noise: Mapping[str, float],
                       lookup: LinearLookup) -> None:
    """Refuse when the inputs' one-hot noise or float32 rounding could push a step's
    pre-activation (exactly 1/2 or more from its kinks at every possible z) across one: the
    check of a linear lookup read from one-hots (mlp_linear.py), whose steps walk along a
    form of one-hot dimensions, so the bounds of `_Analysis` (along one number) do not
    apply."""
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


def _form_of(ops: OpGraph, label: str) -> LinearForm:
    return ops.forms.get(label) or LinearForm.single(Dim(label))


def _smallest(low: float, high: float) -> float:
    return 0.0 if low <= 0 <= high else min(abs(low), abs(high))


def _fit(errors: np.ndarray, exact: np.ndarray, cause: str) -> ErrorBound:
    """absolute + relative * |exact| covering every per-value error, relative below RTOL / 2."""
    if not errors.size:
        return ErrorBound(0.0, 0.0, cause)
    sizes = np.abs(exact)
    relative = float(np.max(errors / np.maximum(sizes, 1.0)))
    relative = min(relative, RTOL / 2)
    absolute = float(np.max(np.maximum(errors - relative * sizes, 0.0)))
    return ErrorBound(absolute, relative, cause)
