"""MLPs of one number: clamped steps and piecewise-linear hinges along z.

A block reading one numerical input z (a linear form of the residual), and maybe
categorical ones, is computed exactly on every value z can take:

- steps: for each combination of the categorical inputs, the output at the
  smallest z plus, at each midpoint between consecutive z values where the output
  changes, a clamped step ReLU(L(z-theta)+1/2) - ReLU(L(z-theta)-1/2) with
  L = 2/gap: exactly 0 below and 1 above, and flat within a quarter gap of every
  value, so small attention noise on z changes nothing. With at most one
  categorical input the steps are shared between its values (`_SharedSteps`);
- piecewise-linear (no categorical input, numerical outputs): the output at a
  pivot plus a ReLU at each z where the slope changes; fewer neurons for smooth
  functions, exact at every value.

`count_steps` gives the width `steps` would have without building a neuron (the
size check asks before any weight exists); both read one `_SharedSteps`, made once
per OpGraph and block.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from rasp_compiler.compiler.neurons import (
    BOS_GATE,
    CATEGORICAL_NOISE_BUDGET,
    MIN_RELATIVE_GAP,
    MLPPart,
    Neuron,
    add_weights,
    combo_indicator,
    form_bound,
    make_neuron,
    weight_difference,
)
from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.residual import BOS, ONE, Dim, LinearForm

PIECEWISE_MAX_GAIN = 1e4  # beyond this slope x range, steps are more robust to noise
SLOPE_TOLERANCE = 1e-12


def count_steps(ops, label, categorical, choices, z_label, function, stop_after: int) -> int:
    """The width `_steps` would have (the same function calls, no neurons)."""
    if len(categorical) <= 1:
        form = ops.forms.get(z_label) or LinearForm.single(Dim(z_label))
        shared = _shared_steps_of(ops, label, categorical, choices, z_label, form, function)
        function.forget_along()  # kept only for lower_block, which builds what it reads
        count = len(shared.anchors) + 2 * len(shared.rounds)
        if shared.separate:
            count += _count_combo_steps(ops, categorical, [(None,)], z_label, function,
                                        stop_after - count)
        return count
    return _count_combo_steps(ops, categorical, itertools.product(*choices), z_label, function,
                              stop_after)


def _count_combo_steps(ops, categorical, combos, z_label, function, stop_after: int) -> int:
    """The width of `_combo_steps` on these combinations."""
    zs = [float(v) for v in ops.values[z_label] if v is not None]
    count = 0
    for combo in combos:
        raws = function.raw_along(dict(zip(categorical, combo)), z_label, zs)
        function.forget_along()
        if function.encode(raws[0]):
            count += 1
        for before, after in zip(raws, raws[1:]):
            if not function.same(after, before) and weight_difference(function.encode(after),
                                                                function.encode(before)):
                count += 2
                if count > stop_after:
                    return count
        if count > stop_after:
            return count
    return count


@dataclass
class _SharedSteps:
    """The steps of a block with at most one categorical input, shared between its values.

    Walking z from the end `descending` says (the top when the BOS position holds
    z's largest value, so no step fires there), each value of the categorical
    input starts at an anchor output and changes by a delta at some thresholds.
    A step pair (two neurons) serves every value whose output changes by the same
    delta, each at its own threshold: its one-hot dimension carries that
    threshold's bias. `rounds` are those pairs: (delta, [(value, threshold, gap)]),
    at most one threshold per value. `separate` lists None (no value: it has no
    dimension to carry a bias), stepped per value as with several inputs.
    """

    zs: list[float]
    descending: bool
    anchors: list[tuple[dict[Dim, float], list[Any]]]
    rounds: list[tuple[dict[Dim, float], list[tuple[Any, float, float]]]]
    separate: list[Any]


def _z_at_bos(ops: OpGraph, form: LinearForm) -> float:
    """z's value at the BOS position in the layer of the heads that compute it: what they
    write there (a SelectorWidth's 1), plus the form's constant."""
    written: dict[Dim, float] = {}
    for dim, _ in form.terms:
        op = ops.attention.get(dim.sop)
        if op is not None:
            written.update(op.bos_writes)
    return sum(c * (1.0 if d == ONE else written.get(d, 0.0)) for d, c in form.terms)


# Shared steps by OpGraph (its id, dropped when it is collected): the size check counts a
# block's steps (count_neurons) and lowering builds them (lower_block); both read one
# `_SharedSteps`, made once (a long sequence's calls the block's functions ~10^5-10^6 times).
_SHARED_STEPS: dict[int, dict[tuple, "_SharedSteps"]] = {}


def _shared_steps_of(ops, label, categorical, choices, z_label, form, function) -> _SharedSteps:
    """The shared steps of a block (`_SharedSteps`), made once per OpGraph and block."""
    by_block = _SHARED_STEPS.get(id(ops))
    if by_block is None:
        by_block = _SHARED_STEPS[id(ops)] = {}
        weakref.finalize(ops, _SHARED_STEPS.pop, id(ops), None)
    key = (label, tuple(unit.label for unit in function.units), tuple(function.outputs),
           tuple(categorical), z_label, form)
    if key not in by_block:
        by_block[key] = _make_shared_steps(ops, label, categorical, choices, z_label, form, function)
    return by_block[key]


def _make_shared_steps(ops, label, categorical, choices, z_label, form, function) -> _SharedSteps:
    zs = [float(v) for v in ops.values[z_label] if v is not None]
    z_bound = max(form_bound(ops, form), ops.magnitudes[z_label])
    descending = _z_at_bos(ops, form) >= zs[-1]
    order = list(range(len(zs)))[::-1] if descending else list(range(len(zs)))
    anchors: dict[frozenset, tuple[dict[Dim, float], list[Any]]] = {}
    deltas: dict[frozenset, tuple[dict[Dim, float], list[tuple[Any, float, float]]]] = {}
    separate = []
    for value in (choices[0] if categorical else [None]):
        if categorical and value is None:
            separate.append(value)
            continue
        raws = function.raw_along({categorical[0]: value} if categorical else {}, z_label, zs)
        walk = [raws[i] for i in order]
        first = function.encode(walk[0])
        if first:
            anchors.setdefault(frozenset(first.items()), (first, []))[1].append(value)
        for step in range(len(walk) - 1):
            if function.same(walk[step + 1], walk[step]):
                continue
            delta = weight_difference(function.encode(walk[step + 1]), function.encode(walk[step]))
            if not delta:
                continue
            low, high = sorted((zs[order[step]], zs[order[step + 1]]))
            gap = high - low
            check_gap(label, z_label, low, high, z_bound)
            deltas.setdefault(frozenset(delta.items()), (delta, []))[1].append(
                (value, (low + high) / 2, gap))
    rounds = []
    for delta, members in deltas.values():
        pending = members
        while pending:  # one threshold per value in each pair of neurons
            taken, rest, seen = [], [], set()
            for member in pending:
                key = identity_key(member[0])
                (rest if key in seen else taken).append(member)
                seen.add(key)
            rounds.append((delta, taken))
            pending = rest
    return _SharedSteps(zs, descending, list(anchors.values()), rounds, separate)


def check_gap(label: str, z_label: str, low: float, high: float, z_bound: float) -> None:
    """Refuse a step between two values of z float32 cannot tell apart."""
    if high - low < MIN_RELATIVE_GAP * z_bound:
        raise CompilationError(
            f"{label}: its output changes between {z_label} = {low!r} and {high!r}, only "
            f"{high - low:.3g} apart on a range of {z_bound:.3g}; float32 cannot tell them "
            f"apart reliably. Round {z_label} with a Map first, or compile with a smaller "
            f"max_seq_len"
        )


def steps(ops, block, categorical, choices, z_label, form, function) -> MLPPart:
    """Clamped steps along z (see the module doc). With at most one categorical input the
    steps are shared between its values (`_SharedSteps`); with more, every combination
    gets its own, gated by its match."""
    z_bound = max(form_bound(ops, form), ops.magnitudes[z_label])
    if len(categorical) > 1:
        neurons, smallest_gap, leaf_weight = _combo_steps(
            ops, block, categorical, list(itertools.product(*choices)), z_label, form, function)
    else:
        shared = _shared_steps_of(ops, block.label, categorical, choices, z_label, form, function)
        neurons, smallest_gap, leaf_weight = _shared_step_neurons(ops, categorical, shared, form, z_bound)
        if shared.separate:
            more, gap, weight = _combo_steps(ops, block, categorical, [(None,)], z_label, form,
                                             function)
            neurons += more
            smallest_gap, leaf_weight = min(smallest_gap, gap), max(leaf_weight, weight)
    budget: dict[str, float] = {}
    if smallest_gap < float("inf"):
        coefficient_sum = sum(abs(c) for _, c in form.terms) or 1.0
        for sop in form.sops():
            budget[sop] = smallest_gap / 4 / coefficient_sum
    for leaf in categorical:  # keeps every pre-activation within 1/4 of where it should be
        budget[leaf] = min(CATEGORICAL_NOISE_BUDGET, 1.0 / (4.0 * max(leaf_weight, 1.0)))
    return MLPPart(block.label, "steps", block.units, block.leaves, block.outputs,
                   tuple(neurons), budget)


def _shared_step_neurons(ops, categorical, shared: _SharedSteps, form: LinearForm, z_bound: float):
    """The neurons of shared steps: (neurons, smallest gap, largest weight on the input's dims).

    A pair of neurons for a shared delta: s(z - theta_v) +- 1/2 for each value v it
    serves (s = +-2/gap, the smallest gap among them), the bias -s theta_v +- 1/2 on
    v's dimension, and on `one` the bias b0 that keeps the pair off for every other
    value, s z + b0 <= -1/2 on every z (0, so no weight, when s z is that low
    already). Every neuron carries a BOS gate; `ungate` drops those not needed.
    """
    neurons: list[Neuron] = []
    leaf_weight = 0.0
    for output, values in shared.anchors:
        if categorical:  # on exactly when the input holds one of these values
            w_in = {Dim(categorical[0], v): 1.0 for v in values}
            w_in[BOS] = -BOS_GATE
        else:
            w_in = {ONE: 1.0, BOS: -1.0}
        neurons.append(make_neuron(w_in, output))
    smallest_gap = float("inf")
    for delta, members in shared.rounds:
        gap = min(g for _, _, g in members)
        smallest_gap = min(smallest_gap, gap)
        slope = (-2.0 if shared.descending else 2.0) / gap
        highest = max(slope * z for z in shared.zs)
        b0 = min(0.0, -0.5 - highest) if categorical else 0.0
        for half, sign in ((0.5, 1.0), (-0.5, -1.0)):
            w_in: dict[Dim, float] = {}
            add_weights(w_in, form.as_dict(), slope)
            if categorical:
                add_weights(w_in, {ONE: b0})
                for value, theta, _ in members:
                    weight = -slope * theta + half - b0
                    add_weights(w_in, {Dim(categorical[0], value): weight})
                    leaf_weight = max(leaf_weight, abs(weight))
            else:
                ((_, theta, _),) = members
                add_weights(w_in, {ONE: -slope * theta + half})
            gate = abs(slope) * z_bound + max((abs(w) for w in w_in.values()), default=0.0) + 1.0
            w_in[BOS] = -gate
            neurons.append(make_neuron(w_in, {d: sign * w for d, w in delta.items()}))
    return neurons, smallest_gap, leaf_weight


def _combo_steps(ops, block, categorical, combos, z_label, form, function):
    """Steps for each combination of the categorical inputs on its own, gated by the
    combination's match: (neurons, smallest gap, largest gate on the inputs' dims)."""
    k = len(categorical)
    zs = [float(v) for v in ops.values[z_label] if v is not None]
    z_bound = max(form_bound(ops, form), ops.magnitudes[z_label])
    neurons = []
    smallest_gap = float("inf")
    largest_gate = 1.0
    for combo in combos:
        env = dict(zip(categorical, combo))
        raws = function.raw_along(env, z_label, zs)
        match = combo_indicator(ops, categorical, combo)
        first = function.encode(raws[0])
        if first:
            w_in = dict(match)
            if k:
                add_weights(w_in, {ONE: -(k - 1.0)})
                w_in[BOS] = -BOS_GATE
            else:
                w_in[ONE], w_in[BOS] = 1.0, -1.0
            neurons.append(make_neuron(w_in, first))
        for i in range(len(zs) - 1):
            if function.same(raws[i + 1], raws[i]):
                continue
            delta = weight_difference(function.encode(raws[i + 1]), function.encode(raws[i]))
            if not delta:
                continue
            gap = zs[i + 1] - zs[i]
            check_gap(block.label, z_label, zs[i], zs[i + 1], z_bound)
            smallest_gap = min(smallest_gap, gap)
            theta = (zs[i] + zs[i + 1]) / 2
            slope = 2.0 / gap
            linear: dict[Dim, float] = {}
            add_weights(linear, form.as_dict(), slope)
            add_weights(linear, {ONE: -slope * theta})
            if k:
                gate = slope * (zs[-1] - theta) + 1.0
                largest_gate = max(largest_gate, gate * max(k, 1))
                add_weights(linear, match, gate)
                add_weights(linear, {ONE: -gate * k})
            add_weights(linear, {BOS: -(slope * (z_bound + abs(theta)) + 1.0)})
            rising = dict(linear)
            add_weights(rising, {ONE: 0.5})
            falling = dict(linear)
            add_weights(falling, {ONE: -0.5})
            neurons.append(make_neuron(rising, delta))
            neurons.append(make_neuron(falling, {d: -w for d, w in delta.items()}))
    return neurons, smallest_gap, largest_gate


def piecewise_linear(ops, block, z_label, form, function) -> MLPPart | None:
    """f(z_p) plus a hinge wherever the slope changes, anchored at the pivot z_p where |f| is
    smallest: ReLU(z - z_i) for breakpoints right of it, ReLU(z_i - z) left of it.

    At any z only the hinges between z_p and z are on, so their float32 rounding
    scales with how far f travels from f(z_p), not with its steepest slope:
    anchored at one end, 1/z - 1 near z = 1 would cancel terms thousands of times
    larger than the result (see precision.py).
    """
    shape = piecewise_shape(ops, block, z_label, form, function)
    if shape is None:
        return None  # too steep: z noise would be amplified; steps are flat near each value
    z_bound, zs, pivot_outputs, hinges = shape
    dims = [Dim(label) for label in block.outputs]
    neurons = []
    if np.any(pivot_outputs != 0):
        neurons.append(make_neuron({ONE: 1.0, BOS: -1.0}, dict(zip(dims, pivot_outputs))))
    for i, side, coefficients, keep in hinges:
        w_in: dict[Dim, float] = {}
        add_weights(w_in, form.as_dict(), side)
        add_weights(w_in, {ONE: -side * float(zs[i]), BOS: -(z_bound + abs(float(zs[i])) + 1.0)})
        change = {d: float(w) for d, w, k in zip(dims, coefficients, keep) if k}
        neurons.append(make_neuron(w_in, change))
    return MLPPart(block.label, "piecewise-linear", block.units, block.leaves, block.outputs,
                   tuple(neurons), {})


def piecewise_shape(ops, block, z_label, form, function):
    """(z bound, zs, outputs at the pivot, hinges) of the piecewise-linear construction,
    or None when it would be too steep; each hinge is (index, side, slope changes, which
    changes matter) and costs one neuron. Shared by the builder and the width estimate."""
    zs = [float(v) for v in ops.values[z_label] if v is not None]
    z_bound = max(form_bound(ops, form), ops.magnitudes[z_label])
    raws = function.raw_along({}, z_label, zs)
    zs = np.array(zs)
    for raw in raws:
        function.encode(raw)  # checks every output is a number
    outs = np.array(raws, dtype=np.float64).reshape(len(zs), len(block.outputs))
    pivot = int(np.argmin(np.abs(outs).sum(axis=1)))
    hinges = []
    if len(zs) > 1:
        slopes = np.diff(outs, axis=0) / np.diff(zs)[:, None]  # slopes[i]: on [zs[i], zs[i+1]]
        largest_slope = float(np.abs(slopes).max())
        scale = max(1.0, float(np.abs(outs).max()))
        if largest_slope * z_bound / scale > PIECEWISE_MAX_GAIN:
            return None
        changes = np.diff(slopes, axis=0, prepend=np.zeros((1, len(block.outputs))))
        # Right of the pivot: ReLU(z - zs[i]) with the slope change at zs[i] (the slope
        # itself at the pivot). Left of it: ReLU(zs[i] - z) with the same change, and
        # minus the slope just left of the pivot at the pivot.
        candidates = [(i, 1.0, changes[i] if i > pivot else slopes[pivot])
                      for i in range(pivot, len(zs) - 1)]
        candidates += [(i, -1.0, changes[i] if i < pivot else -slopes[pivot - 1])
                       for i in range(1, pivot + 1)]
        tolerance = SLOPE_TOLERANCE * scale * max(largest_slope, 1.0)
        for i, side, coefficients in candidates:
            keep = np.abs(coefficients) > tolerance
            if keep.any():
                hinges.append((i, side, coefficients, keep))
    return z_bound, zs, outs[pivot], hinges
