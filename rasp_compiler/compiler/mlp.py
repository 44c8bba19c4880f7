"""MLPs: exact one-hidden-layer ReLU MLPs for functions on finite value sets.

`lower_block` lowers one fused block (schedule.py) to the neurons of its MLP part,
choosing the construction; `neuron_bound` and `count_neurons` give its width
without building it, for the size check. A block computes outputs from
categorical inputs (one-hot dimensions) and at most one numerical input z (a linear
form). The constructions, all exact on every possible input value:

- lookup (no numerical input, here): one neuron per box of input combinations
  sharing an output, ReLU(sum of the box's one-hot dims - (k - 1)), which is 1
  exactly when every input is in the box and 0 otherwise;
- clause feature (an OR clause's 0/1 feature, here): linear in its inputs, clamped;
- steps and piecewise-linear (a numerical input: mlp_steps.py);
- linear steps (a SequenceMap that is a function of one linear form of its two
  inputs: mlp_linear.py).

Every neuron is gated off at the BOS position (a large negative weight on
`bos`), so MLPs never write there; `ungate` drops the gates a layer does not need.
`bos_cleanup` removes what heads write at the BOS query position (defaults,
SelectorWidth's BOS weight). neurons.py holds what the constructions share.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Sequence

import numpy as np

from rasp_compiler.compiler import mlp_steps
from rasp_compiler.compiler.mlp_linear import LINEAR_STEPS, linear_lookup_of, linear_steps
from rasp_compiler.compiler.neurons import (
    BOS_GATE,
    CATEGORICAL_NOISE_BUDGET,
    BlockFunction,
    MLPPart,
    Neuron,
    add_weights,
    dim_bound,
    make_neuron,
)
from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.compiler.schedule import Block
from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.residual import BOS, ONE, Dim, LinearForm

LOOKUP_BOX_LIMIT = 4096  # input combinations up to which a lookup merges them into boxes


def lower_block(ops: OpGraph, block: Block) -> MLPPart:
    """The exact MLP neurons for one fused block."""
    lookup = linear_lookup_of(ops, block)
    if lookup is not None:
        return linear_steps(block, lookup)
    first = ops.units[block.units[0]]
    if len(block.units) == 1 and first.feature is not None and block.leaves == first.inputs:
        return clause_feature(ops, block)  # linear in its inputs: 2 neurons per value
    categorical = [leaf for leaf in block.leaves if not ops.is_numerical(leaf)]
    numerical = [leaf for leaf in block.leaves if ops.is_numerical(leaf)]
    function = BlockFunction(ops, block)
    # None (no value) is a choice too: outputs that ignore that input must still appear.
    choices = [list(ops.values[leaf]) for leaf in categorical]
    if not numerical:
        return _lookup(ops, block, categorical, choices, function)
    (z_label,) = numerical
    form = ops.forms.get(z_label) or LinearForm.single(Dim(z_label))
    if not categorical and all(ops.is_numerical(o) for o in block.outputs):
        smooth = mlp_steps.piecewise_linear(ops, block, z_label, form, function)
        steps = mlp_steps.steps(ops, block, categorical, choices, z_label, form, function)
        return smooth if smooth is not None and smooth.width < steps.width else steps
    part = mlp_steps.steps(ops, block, categorical, choices, z_label, form, function)
    if first.linear is not None and len(block.units) == 1:  # the same steps, along x + r y
        part = dataclasses.replace(part, construction=LINEAR_STEPS)
    return part


def neuron_bound(ops: OpGraph, block: Block) -> int:
    """An upper bound on `lower_block(ops, block).width` from the value sets alone.

    A lookup has at most one neuron per combination of its categorical inputs'
    values (None included); steps at most one plus two per gap between the
    numerical input's values, per combination; piecewise-linear never more
    than steps (lower_block keeps the narrower).
    """
    lookup = linear_lookup_of(ops, block)
    if lookup is not None:
        return lookup.width
    first = ops.units[block.units[0]]
    if len(block.units) == 1 and first.feature is not None and block.leaves == first.inputs:
        return 2 * len(first.feature.shared_values)
    combos = 1
    z_values = None
    for leaf in block.leaves:
        if ops.is_numerical(leaf):
            z_values = sum(v is not None for v in ops.values[leaf])
        else:
            combos *= len(ops.values[leaf])
    if z_values is None:
        return combos
    return combos * (1 + 2 * max(0, z_values - 1))


def count_neurons(ops: OpGraph, block: Block, stop_after: int) -> int:
    """`lower_block(ops, block).width`, computed by the same function calls without
    building any neuron; returns early, with a count above `stop_after`, as soon as
    the width is certain to exceed it."""
    lookup = linear_lookup_of(ops, block)
    if lookup is not None:
        return lookup.width
    first = ops.units[block.units[0]]
    if len(block.units) == 1 and first.feature is not None and block.leaves == first.inputs:
        return clause_feature(ops, block).width
    categorical = [leaf for leaf in block.leaves if not ops.is_numerical(leaf)]
    numerical = [leaf for leaf in block.leaves if ops.is_numerical(leaf)]
    function = BlockFunction(ops, block)
    choices = [list(ops.values[leaf]) for leaf in categorical]
    if not numerical:
        return len(_lookup_boxes(categorical, choices, function, stop_after))
    (z_label,) = numerical
    if not categorical and all(ops.is_numerical(o) for o in block.outputs):
        form = ops.forms.get(z_label) or LinearForm.single(Dim(z_label))
        shape = mlp_steps.piecewise_shape(ops, block, z_label, form, function)
        if shape is not None:
            _, _, pivot_outputs, hinges = shape
            smooth = int(np.any(pivot_outputs != 0)) + len(hinges)
            # lower_block keeps the narrower construction, so the width is min(smooth, steps).
            return min(smooth, mlp_steps.count_steps(ops, block.label, categorical, choices,
                                                     z_label, function, min(stop_after, smooth)))
    return mlp_steps.count_steps(ops, block.label, categorical, choices, z_label, function,
                                 stop_after)


def _lookup(ops, block, categorical, choices, function) -> MLPPart:
    """One neuron per box of input combinations sharing an output (`_lookup_boxes`)."""
    neurons = []
    for box, out in _lookup_boxes(categorical, choices, function):
        w_in: dict[Dim, float] = {}
        constrained = 0
        for leaf, allowed, every in zip(categorical, box, choices):
            if len(allowed) == len(every):
                continue  # any value: always 1, no term
            constrained += 1
            if None in allowed:  # 1 minus the dimensions of the values not allowed
                kept = set(map(identity_key, allowed))
                add_weights(w_in, {ONE: 1.0})
                add_weights(w_in, {Dim(leaf, v): -1.0 for v in every
                            if v is not None and identity_key(v) not in kept})
            else:
                add_weights(w_in, {Dim(leaf, v): 1.0 for v in allowed})
        add_weights(w_in, {ONE: -(constrained - 1.0)})
        w_in[BOS] = -BOS_GATE
        neurons.append(make_neuron(w_in, out))
    budget = {leaf: CATEGORICAL_NOISE_BUDGET for leaf in categorical}
    return MLPPart(block.label, "lookup", block.units, block.leaves, block.outputs,
                   tuple(neurons), budget)


def _lookup_boxes(categorical, choices, function, stop_after: int | None = None) -> list:
    """The lookup's neurons as (box, output): a box is one set of allowed values per
    input, and its neuron ReLU(sum over inputs of [input in its set] - (k - 1)) is 1
    exactly on the box's combinations. The boxes of one output split the combinations
    giving it (a decision diagram: the values of the first input with the same rest
    share a box), in the input order with the fewest weights; up to LOOKUP_BOX_LIMIT
    combinations, past that one box per combination. With `stop_after`, returns early
    (a list longer than it) once that many combinations have an output."""
    tables: dict[frozenset, tuple[dict[Dim, float], list[tuple]]] = {}
    count = 0
    for combo in itertools.product(*choices):
        out = function(dict(zip(categorical, combo)))
        if out:
            tables.setdefault(frozenset(out.items()), (out, []))[1].append(combo)
            count += 1
            if stop_after is not None and count > stop_after and (
                    math.prod(map(len, choices)) > LOOKUP_BOX_LIMIT):
                return [None] * count
    if math.prod(map(len, choices)) > LOOKUP_BOX_LIMIT:
        return [(tuple((v,) for v in combo), out) for out, combos in tables.values()
                for combo in combos]
    orders = (list(itertools.permutations(range(len(categorical))))
              if len(categorical) <= 4 else [tuple(range(len(categorical)))])
    boxes = []
    for out, combos in tables.values():
        best = None
        for order in orders:
            found = [tuple(box[order.index(i)] for i in range(len(order)))
                     for box in _split([tuple(c[i] for i in order) for c in combos])]
            cost = sum(_box_weights(box, choices) for box in found)
            if best is None or cost < best[0]:
                best = (cost, found)
        boxes.extend((box, out) for box in best[1])
    return boxes


def _split(combos: list[tuple]) -> list[tuple]:
    """Disjoint boxes covering exactly these combinations: values of the first input
    whose remaining combinations are the same share a box, and so on down. Values are
    told apart by identity (0 and 0.0 are two values of an input, with two dimensions)."""
    if not combos[0]:
        return [()]
    rest: dict[Any, tuple[Any, dict]] = {}  # first value's key -> (it, its tails by key)
    for combo in combos:
        _, tails = rest.setdefault(identity_key(combo[0]), (combo[0], {}))
        tails.setdefault(identity_key(combo[1:]), combo[1:])
    groups: dict[frozenset, tuple[dict, list]] = {}
    for value, tails in rest.values():
        groups.setdefault(frozenset(tails), (tails, []))[1].append(value)
    return [(tuple(values),) + tail for tails, values in groups.values()
            for tail in _split(sorted(tails.values(), key=repr))]


def _box_weights(box: tuple, choices) -> int:
    """The non-zero input weights of a box's neuron (its cost)."""
    weights, constrained = 0, 0
    for allowed, every in zip(box, choices):
        if len(allowed) == len(every):
            continue
        constrained += 1
        weights += (1 + len(every) - len(allowed)) if None in allowed \
            else len(allowed)
    return weights + (constrained != 1)



def clause_feature(ops: OpGraph, block: Block) -> MLPPart:
    """An OR clause's 0/1 feature over the shared SOp's values: min(1, sum of the atoms).

    For each shared value v, s_v = sum over atoms of P(v, other's value) is linear
    in the other SOps' one-hots; ReLU(s_v) - ReLU(s_v - 1) clamps it to 0 or 1.
    """
    spec = ops.units[block.units[0]].feature
    gate = len(spec.terms) + 1.0
    neurons = []
    for index, shared_value in enumerate(spec.shared_values):
        total: dict[Dim, float] = {}
        for other, other_values, relation in spec.terms:
            for row, value in enumerate(other_values):
                if relation[row, index]:
                    add_weights(total, {Dim(other, value): 1.0})
        if not total:
            continue
        total[BOS] = -gate
        lowered = dict(total)
        add_weights(lowered, {ONE: -1.0})
        out = {Dim(spec.label, shared_value): 1.0}
        neurons.append(make_neuron(total, out))
        neurons.append(make_neuron(lowered, {d: -w for d, w in out.items()}))
    budget = {other: CATEGORICAL_NOISE_BUDGET for other, _, _ in spec.terms}
    return MLPPart(block.label, "clause-feature", block.units, block.leaves, block.outputs,
                   tuple(neurons), budget)


def ungate(part: MLPPart, writes: Sequence[tuple[Dim, float]]) -> MLPPart:
    """`part` without the BOS gates it does not need in a layer whose heads write
    `writes` at the BOS position.

    There the residual holds exactly `one`, `bos` and those writes (the previous
    layer's were cleaned up, MLPs write nothing, embeddings give BOS nothing else);
    a neuron whose pre-activation on that, without its gate, is at most 0 is off
    at BOS without one (up to the attention leak, which every position carries).
    """
    at_bos: dict[Dim, float] = {ONE: 1.0}
    for dim, value in writes:
        at_bos[dim] = at_bos.get(dim, 0.0) + value
    neurons = []
    for neuron in part.neurons:
        weights = dict(neuron.w_in)
        if BOS in weights and sum(w * at_bos.get(d, 0.0) for d, w in weights.items()
                                  if d != BOS) <= 0.0:
            del weights[BOS]
            neuron = Neuron(tuple(weights.items()), neuron.w_out)
        neurons.append(neuron)
    return dataclasses.replace(part, neurons=tuple(neurons))


def bos_cleanup(ops: OpGraph, writes: list[tuple[Dim, float]]) -> MLPPart:
    """Neurons that subtract, at the BOS position only, what heads wrote there."""
    neurons = []
    for dim, value in writes:
        sign = 1.0 if value > 0 else -1.0
        margin = dim_bound(ops, dim) + 1.0
        neurons.append(make_neuron({dim: sign, ONE: -margin, BOS: margin}, {dim: -sign}))
    owners = tuple(dict.fromkeys(dim.sop for dim, _ in writes))
    return MLPPart("bos-cleanup", "bos-cleanup", (), owners, owners, tuple(neurons), {})
