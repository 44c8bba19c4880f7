"""The lowering of a linear lookup: steps along the linear form its inputs' one-hots make.

linear_forms.py finds that a categorical SequenceMap f(x, y) depends on its inputs
only through z = x + r y (a `LinearLookup`). z is then a linear function of the two
one-hots (sum of v [x == v] + r sum of w [y == w]), so the clamped steps of
mlp_steps.py can walk along it directly: the output at the smallest z, then a pair
of neurons at each midpoint where g changes, O(|distinct z|) neurons instead of one
per pair. mlp.py's `lower_block` sends such a block here (`linear_lookup_of` says
which blocks are); its construction is named LINEAR_STEPS, also when the lookup reads
numerical copies of its inputs (numerical_copies.py), where mlp_steps.py builds it.

Exactness in float32: consecutive z values must be at least MIN_RELATIVE_GAP of z's
range apart (`check_gap`, as for every step MLP), and the inputs' one-hot noise times
the step slope must stay below half the distance to a kink: each input's noise
budget is set so (NOISE_SHARE), and precision.py's `check_linear_steps` checks it
against the noise the heads really leave.
"""

from __future__ import annotations

import math

from rasp_compiler.compiler.linear_forms import LinearLookup
from rasp_compiler.compiler.mlp_steps import check_gap
from rasp_compiler.compiler.neurons import (
    CATEGORICAL_NOISE_BUDGET,
    MLPPart,
    make_neuron,
    weight_difference,
)
from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.compiler.schedule import Block
from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.residual import BOS, ONE, Dim

LINEAR_STEPS = "linear-steps"  # the construction's name, in MLPPart and the model's info
NOISE_SHARE = 8.0  # a one-hot input may move z by at most gap / NOISE_SHARE


def linear_lookup_of(ops: OpGraph, block: Block) -> LinearLookup | None:
    """The block's `LinearLookup` when it is one such unit reading the one-hots of its
    own two inputs (not the numerical copies of them, see numerical_copies.py: then it
    is an ordinary steps block along their form, named LINEAR_STEPS by mlp.py)."""
    unit = ops.units[block.units[0]]
    if len(block.units) == 1 and unit.linear is not None \
            and block.leaves == (unit.linear.x, unit.linear.y) == unit.inputs \
            and block.outputs == (unit.label,):
        return unit.linear
    return None


def linear_steps(block: Block, lookup: LinearLookup) -> MLPPart:
    """The steps along z: the output at the smallest z, then at each midpoint between
    consecutive z values where the output changes a clamped step
    ReLU(L(z - theta) + 1/2) - ReLU(L(z - theta) - 1/2), L = 2 / gap, carrying the change."""
    (label,) = block.outputs

    def encode(value) -> dict[Dim, float]:
        return {} if value is None else {Dim(label, value): 1.0}

    form = lookup.form().as_dict()
    z_bound = lookup.z_bound()
    neurons = []
    first = encode(lookup.outputs[0])
    if first:
        neurons.append(make_neuron({ONE: 1.0, BOS: -1.0}, first))
    smallest_gap = math.inf
    zs, outs = lookup.zs, lookup.outputs
    for k in range(len(zs) - 1):
        if identity_key(outs[k]) == identity_key(outs[k + 1]):
            continue
        low, high = zs[k], zs[k + 1]
        check_gap(block.label, f"{lookup.describe()} (the linear form {label} reads)", low, high,
                  z_bound)
        gap = high - low
        smallest_gap = min(smallest_gap, gap)
        slope, theta = 2.0 / gap, (low + high) / 2.0
        delta = weight_difference(encode(outs[k + 1]), encode(outs[k]))
        for half, sign in ((0.5, 1.0), (-0.5, -1.0)):
            w_in = {dim: slope * c for dim, c in form.items()}
            bias = -slope * theta + half
            w_in[ONE] = bias
            w_in[BOS] = -(slope * z_bound + abs(bias) + 1.0)
            neurons.append(make_neuron(w_in, {d: sign * w for d, w in delta.items()}))
    reach = z_bound or 1.0
    budget = {leaf: min(CATEGORICAL_NOISE_BUDGET, smallest_gap / NOISE_SHARE / reach)
              for leaf in (lookup.x, lookup.y)} if smallest_gap < math.inf else {}
    return MLPPart(block.label, LINEAR_STEPS, block.units, block.leaves, block.outputs,
                   tuple(neurons), budget)
