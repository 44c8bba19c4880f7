"""Exact one-hidden-layer ReLU MLPs for functions on finite value sets.

Over 600 lines on purpose for now: the MLP constructions and their exactness bounds; it is
split by job in issue 24's layered package, which moves every module in one step with the
weights unchanged.

A fused block computes outputs from categorical inputs (one-hot dimensions) and
at most one numerical input z (a linear form). Three constructions, all exact
on every possible input value:

- lookup (no numerical input): one neuron per input combination t with a
  non-zero output, ReLU(sum of t's one-hot dims - (k - 1)), which is 1 exactly
  when every input matches and 0 otherwise;
- steps (a numerical input): for each combination, the output at the smallest
  z plus, at each midpoint between consecutive z values where the output
  changes, a clamped step ReLU(L(z-theta)+1/2) - ReLU(L(z-theta)-1/2) with
  L = 2/gap: exactly 0 below and 1 above, and flat within a quarter gap of
  every value, so small attention noise on z changes nothing;
- piecewise-linear (one numerical input, numerical outputs): the output at the
  smallest z plus a ReLU at each z where the slope changes; fewer neurons for
  smooth functions, exact at every value.

Every neuron is gated off at the BOS position (a large negative weight on
`bos`), so MLPs never write there. `bos_cleanup` removes what heads write at
the BOS query position (defaults, SelectorWidth's BOS weight).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import weakref
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping, Sequence

import numpy as np

from rasp_compiler.compiler.rewrite import OpGraph
from rasp_compiler.compiler.schedule import Block
from rasp_compiler.compiler.selectors import Accepted
from rasp_compiler.errors import CompilationError, InvalidProgramError
from rasp_compiler.lang.identity import find_clash, identity_key, same_value
from rasp_compiler.model.residual import BOS, ONE, Dim, LinearForm

BOS_GATE = 2.0  # subtracted at BOS from lookup neurons (their pre-activation is at most 1)
MIN_RELATIVE_GAP = 2e-5  # float32 cannot place a step between values closer than this
CATEGORICAL_NOISE_BUDGET = 0.01  # largest leak a one-hot input of a lookup may carry
PIECEWISE_MAX_GAIN = 1e4  # beyond this slope x range, steps are more robust to noise
SLOPE_TOLERANCE = 1e-12
LOOKUP_BOX_LIMIT = 4096  # input combinations up to which a lookup merges them into boxes


@dataclass(frozen=True)
class Neuron:
    """One hidden unit: its input weights and its output weights, over named dims."""

    w_in: tuple[tuple[Dim, float], ...]
    w_out: tuple[tuple[Dim, float], ...]


@dataclass(frozen=True)
class MLPPart:
    """The neurons one block (or the BOS cleanup) contributes to a layer's MLP."""

    label: str
    construction: str  # "lookup", "steps", "piecewise-linear" or "bos-cleanup"
    units: tuple[str, ...]  # the RASP ops it computes
    leaves: tuple[str, ...]
    outputs: tuple[str, ...]
    neurons: tuple[Neuron, ...]
    noise_budget: Mapping[str, float]  # input SOp -> largest error its dims may carry

    @property
    def width(self) -> int:
        return len(self.neurons)


def dim_bound(ops: OpGraph, dim: Dim) -> float:
    """Largest |value| dimension `dim` can hold anywhere, BOS position included."""
    if dim.sop in ("one", "bos") or not dim.is_numerical:
        return 1.0
    return max(1.0, ops.magnitudes[dim.sop])


def form_bound(ops: OpGraph, form: LinearForm) -> float:
    return sum(abs(c) * dim_bound(ops, dim) for dim, c in form.terms)


def _add(target: dict[Dim, float], source: Mapping[Dim, float], factor: float = 1.0) -> None:
    for dim, weight in source.items():
        target[dim] = target.get(dim, 0.0) + factor * weight


def _difference(after: Mapping[Dim, float], before: Mapping[Dim, float]) -> dict[Dim, float]:
    out = dict(after)
    _add(out, before, -1.0)
    return {dim: w for dim, w in out.items() if w != 0}


def _neuron(w_in: Mapping[Dim, float], w_out: Mapping[Dim, float]) -> Neuron:
    return Neuron(
        tuple((d, w) for d, w in w_in.items() if w != 0),
        tuple((d, w) for d, w in w_out.items() if w != 0),
    )


class _BlockFunction:
    """The block's outputs as a function of its leaves' values."""

    def __init__(self, ops: OpGraph, block: Block):
        self.ops = ops
        self.units = [ops.units[label] for label in block.units]
        self.outputs = block.outputs
        self._along: dict[tuple, list[tuple]] = {}
        # A categorical output that can be 0 and 0.0 (1 and True, ...): two outputs are
        # the same only when they are the same value (identity.py), not merely equal.
        self._exact = any(not ops.is_numerical(label) and find_clash(ops.values[label])
                          for label in self.outputs)

    def same(self, a: tuple, b: tuple) -> bool:
        """Whether two results of `raw` encode the same (a shortcut: equal results need no
        difference computed)."""
        return a == b and (not self._exact or same_value(a, b))

    def raw(self, env: dict[str, Any]) -> tuple:
        """The output values (not yet encoded) for one assignment of the leaves."""
        env = dict(env)
        for unit in self.units:
            args = [env[i] for i in unit.inputs]
            if not unit.none_aware and any(a is None for a in args):
                env[unit.label] = None
                continue
            env[unit.label] = self._call(unit, args)
        return tuple(env[label] for label in self.outputs)

    def raw_along(self, env: dict[str, Any], z_label: str, zs: list[float]) -> list[tuple]:
        """`raw` for every z, remembered (steps and piecewise-linear both ask for it)."""
        key = (tuple((label, identity_key(value)) for label, value in env.items()), z_label)
        if key not in self._along:
            self._along[key] = self._compute_along(env, z_label, zs)
        return self._along[key]

    def forget_along(self) -> None:
        self._along.clear()

    def _compute_along(self, env: dict[str, Any], z_label: str, zs: list[float]) -> list[tuple]:
        """A single Map of z takes a fast path (10^5-10^6 values)."""
        if len(self.units) == 1 and self.units[0].inputs == (z_label,):
            unit = self.units[0]
            try:
                return [(unit.fn(z),) for z in zs]
            except Exception:
                pass  # fall through to report the failing value precisely
        return [self.raw({**env, z_label: z}) for z in zs]

    @staticmethod
    def _call(unit, args):
        try:
            return unit.fn(*args)
        except Exception as exc:
            raise InvalidProgramError(
                f"{unit.label}: its function raised {type(exc).__name__}({exc}) on "
                f"{args[0] if len(args) == 1 else tuple(args)!r}, a possible input"
            ) from exc

    def encode(self, values: tuple) -> dict[Dim, float]:
        encoded: dict[Dim, float] = {}
        for label, value in zip(self.outputs, values):
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, Accepted):  # a clause feature: multi-hot
                encoded.update({Dim(label, v): 1.0 for v in value})
                continue
            if self.ops.is_numerical(label):
                if value is None or not isinstance(value, Real):
                    raise InvalidProgramError(
                        f"{label}: numerical, but computes {value!r}; it must return numbers"
                    )
                if value != 0:
                    encoded[Dim(label)] = float(value)
            elif value is not None:
                encoded[Dim(label, value)] = 1.0
        return encoded

    def __call__(self, env: dict[str, Any]) -> dict[Dim, float]:
        return self.encode(self.raw(env))


def _match(ops: OpGraph, leaf: str, value: Any) -> dict[Dim, float]:
    """A linear indicator of `leaf == value`: its one-hot dim, or for None (no value,
    all dims zero) one minus the sum of its dims."""
    if value is not None:
        return {Dim(leaf, value): 1.0}
    indicator = {ONE: 1.0}
    for v in ops.values[leaf]:
        if v is not None:
            indicator[Dim(leaf, v)] = -1.0
    return indicator


def _match_all(ops: OpGraph, leaves: list[str], combo: tuple) -> dict[Dim, float]:
    total: dict[Dim, float] = {}
    for leaf, value in zip(leaves, combo):
        _add(total, _match(ops, leaf, value))
    return total


def linear_lookup_of(ops: OpGraph, block: Block):
    """The block's `linear_lookup.LinearLookup` when it is one such unit reading the
    one-hots of its own two inputs (not the numerical copies of them, see
    `linear_lookup.with_numerical_copies`: then it is a steps block along their form)."""
    unit = ops.units[block.units[0]]
    if len(block.units) == 1 and unit.linear is not None \
            and block.leaves == (unit.linear.x, unit.linear.y) == unit.inputs \
            and block.outputs == (unit.label,):
        return unit.linear
    return None


def lower_block(ops: OpGraph, block: Block) -> MLPPart:
    """The exact MLP neurons for one fused block."""
    lookup = linear_lookup_of(ops, block)
    if lookup is not None:
        from rasp_compiler.compiler import linear_lookup
        return linear_lookup.lower(ops, block, lookup)
    first = ops.units[block.units[0]]
    if len(block.units) == 1 and first.feature is not None and block.leaves == first.inputs:
        return clause_feature(ops, block)  # linear in its inputs: 2 neurons per value
    categorical = [leaf for leaf in block.leaves if not ops.is_numerical(leaf)]
    numerical = [leaf for leaf in block.leaves if ops.is_numerical(leaf)]
    function = _BlockFunction(ops, block)
    # None (no value) is a choice too: outputs that ignore that input must still appear.
    choices = [list(ops.values[leaf]) for leaf in categorical]
    if not numerical:
        return _lookup(ops, block, categorical, choices, function)
    (z_label,) = numerical
    form = ops.forms.get(z_label) or LinearForm.single(Dim(z_label))
    if not categorical and all(ops.is_numerical(o) for o in block.outputs):
        smooth = _piecewise_linear(ops, block, z_label, form, function)
        steps = _steps(ops, block, categorical, choices, z_label, form, function)
        return smooth if smooth is not None and smooth.width < steps.width else steps
    part = _steps(ops, block, categorical, choices, z_label, form, function)
    if first.linear is not None and len(block.units) == 1:
        from rasp_compiler.compiler.linear_lookup import (
            LINEAR_STEPS,  # the same steps, along x + r y
        )
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
    function = _BlockFunction(ops, block)
    choices = [list(ops.values[leaf]) for leaf in categorical]
    if not numerical:
        return len(_lookup_boxes(categorical, choices, function, stop_after))
    (z_label,) = numerical
    if not categorical and all(ops.is_numerical(o) for o in block.outputs):
        form = ops.forms.get(z_label) or LinearForm.single(Dim(z_label))
        shape = _piecewise_shape(ops, block, z_label, form, function)
        if shape is not None:
            _, _, pivot_outputs, hinges = shape
            smooth = int(np.any(pivot_outputs != 0)) + len(hinges)
            # lower_block keeps the narrower construction, so the width is min(smooth, steps).
            return min(smooth, _count_steps(ops, block.label, categorical, choices, z_label, function,
                                            min(stop_after, smooth)))
    return _count_steps(ops, block.label, categorical, choices, z_label, function, stop_after)


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
                _add(w_in, {ONE: 1.0})
                _add(w_in, {Dim(leaf, v): -1.0 for v in every
                            if v is not None and identity_key(v) not in kept})
            else:
                _add(w_in, {Dim(leaf, v): 1.0 for v in allowed})
        _add(w_in, {ONE: -(constrained - 1.0)})
        w_in[BOS] = -BOS_GATE
        neurons.append(_neuron(w_in, out))
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


def _count_steps(ops, label, categorical, choices, z_label, function, stop_after: int) -> int:
    """The width `_steps` would have (the same function calls, no neurons)."""
    if len(categorical) <= 1:
        form = ops.forms.get(z_label) or LinearForm.single(Dim(z_label))
        plan = _step_plan(ops, label, categorical, choices, z_label, form, function)
        function.forget_along()  # kept only for lower_block, which builds what it reads
        count = len(plan.anchors) + 2 * len(plan.rounds)
        if plan.separate:
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
            if not function.same(after, before) and _difference(function.encode(after),
                                                                function.encode(before)):
                count += 2
                if count > stop_after:
                    return count
        if count > stop_after:
            return count
    return count


@dataclass
class _StepPlan:
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


# Step plans by OpGraph (its id, dropped when it is collected): the size check counts a
# block's steps (count_neurons) and lowering builds them (lower_block); both read one
# plan, made once (a long sequence's plan calls the block's functions ~10^5-10^6 times).
_STEP_PLANS: dict[int, dict[tuple, "_StepPlan"]] = {}


def _step_plan(ops, label, categorical, choices, z_label, form, function) -> _StepPlan:
    """The shared steps of a block (`_StepPlan`), made once per OpGraph and block."""
    plans = _STEP_PLANS.get(id(ops))
    if plans is None:
        plans = _STEP_PLANS[id(ops)] = {}
        weakref.finalize(ops, _STEP_PLANS.pop, id(ops), None)
    key = (label, tuple(unit.label for unit in function.units), tuple(function.outputs),
           tuple(categorical), z_label, form)
    if key not in plans:
        plans[key] = _make_step_plan(ops, label, categorical, choices, z_label, form, function)
    return plans[key]


def _make_step_plan(ops, label, categorical, choices, z_label, form, function) -> _StepPlan:
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
            delta = _difference(function.encode(walk[step + 1]), function.encode(walk[step]))
            if not delta:
                continue
            low, high = sorted((zs[order[step]], zs[order[step + 1]]))
            gap = high - low
            _check_gap(label, z_label, low, high, z_bound)
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
    return _StepPlan(zs, descending, list(anchors.values()), rounds, separate)


def _check_gap(label: str, z_label: str, low: float, high: float, z_bound: float) -> None:
    """Refuse a step between two values of z float32 cannot tell apart."""
    if high - low < MIN_RELATIVE_GAP * z_bound:
        raise CompilationError(
            f"{label}: its output changes between {z_label} = {low!r} and {high!r}, only "
            f"{high - low:.3g} apart on a range of {z_bound:.3g}; float32 cannot tell them "
            f"apart reliably. Round {z_label} with a Map first, or compile with a smaller "
            f"max_seq_len"
        )


def _steps(ops, block, categorical, choices, z_label, form, function) -> MLPPart:
    """Clamped steps along z (see the module doc). With at most one categorical input the
    steps are shared between its values (`_StepPlan`); with more, every combination
    gets its own, gated by its match."""
    z_bound = max(form_bound(ops, form), ops.magnitudes[z_label])
    if len(categorical) > 1:
        neurons, smallest_gap, leaf_weight = _combo_steps(
            ops, block, categorical, list(itertools.product(*choices)), z_label, form, function)
    else:
        plan = _step_plan(ops, block.label, categorical, choices, z_label, form, function)
        neurons, smallest_gap, leaf_weight = _shared_steps(ops, categorical, plan, form, z_bound)
        if plan.separate:
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


def _shared_steps(ops, categorical, plan: _StepPlan, form: LinearForm, z_bound: float):
    """The neurons of a plan: (neurons, smallest gap, largest weight on the input's dims).

    A pair of neurons for a shared delta: s(z - theta_v) +- 1/2 for each value v it
    serves (s = +-2/gap, the smallest gap among them), the bias -s theta_v +- 1/2 on
    v's dimension, and on `one` the bias b0 that keeps the pair off for every other
    value, s z + b0 <= -1/2 on every z (0, so no weight, when s z is that low
    already). Every neuron carries a BOS gate; `ungate` drops those not needed.
    """
    neurons: list[Neuron] = []
    leaf_weight = 0.0
    for output, values in plan.anchors:
        if categorical:  # on exactly when the input holds one of these values
            w_in = {Dim(categorical[0], v): 1.0 for v in values}
            w_in[BOS] = -BOS_GATE
        else:
            w_in = {ONE: 1.0, BOS: -1.0}
        neurons.append(_neuron(w_in, output))
    smallest_gap = float("inf")
    for delta, members in plan.rounds:
        gap = min(g for _, _, g in members)
        smallest_gap = min(smallest_gap, gap)
        slope = (-2.0 if plan.descending else 2.0) / gap
        highest = max(slope * z for z in plan.zs)
        b0 = min(0.0, -0.5 - highest) if categorical else 0.0
        for half, sign in ((0.5, 1.0), (-0.5, -1.0)):
            w_in: dict[Dim, float] = {}
            _add(w_in, form.as_dict(), slope)
            if categorical:
                _add(w_in, {ONE: b0})
                for value, theta, _ in members:
                    weight = -slope * theta + half - b0
                    _add(w_in, {Dim(categorical[0], value): weight})
                    leaf_weight = max(leaf_weight, abs(weight))
            else:
                ((_, theta, _),) = members
                _add(w_in, {ONE: -slope * theta + half})
            gate = abs(slope) * z_bound + max((abs(w) for w in w_in.values()), default=0.0) + 1.0
            w_in[BOS] = -gate
            neurons.append(_neuron(w_in, {d: sign * w for d, w in delta.items()}))
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
        match = _match_all(ops, categorical, combo)
        first = function.encode(raws[0])
        if first:
            w_in = dict(match)
            if k:
                _add(w_in, {ONE: -(k - 1.0)})
                w_in[BOS] = -BOS_GATE
            else:
                w_in[ONE], w_in[BOS] = 1.0, -1.0
            neurons.append(_neuron(w_in, first))
        for i in range(len(zs) - 1):
            if function.same(raws[i + 1], raws[i]):
                continue
            delta = _difference(function.encode(raws[i + 1]), function.encode(raws[i]))
            if not delta:
                continue
            gap = zs[i + 1] - zs[i]
            _check_gap(block.label, z_label, zs[i], zs[i + 1], z_bound)
            smallest_gap = min(smallest_gap, gap)
            theta = (zs[i] + zs[i + 1]) / 2
            slope = 2.0 / gap
            linear: dict[Dim, float] = {}
            _add(linear, form.as_dict(), slope)
            _add(linear, {ONE: -slope * theta})
            if k:
                gate = slope * (zs[-1] - theta) + 1.0
                largest_gate = max(largest_gate, gate * max(k, 1))
                _add(linear, match, gate)
                _add(linear, {ONE: -gate * k})
            _add(linear, {BOS: -(slope * (z_bound + abs(theta)) + 1.0)})
            rising = dict(linear)
            _add(rising, {ONE: 0.5})
            falling = dict(linear)
            _add(falling, {ONE: -0.5})
            neurons.append(_neuron(rising, delta))
            neurons.append(_neuron(falling, {d: -w for d, w in delta.items()}))
    return neurons, smallest_gap, largest_gate


def _piecewise_linear(ops, block, z_label, form, function) -> MLPPart | None:
    """f(z_p) plus a hinge wherever the slope changes, anchored at the pivot z_p where |f| is
    smallest: ReLU(z - z_i) for breakpoints right of it, ReLU(z_i - z) left of it.

    At any z only the hinges between z_p and z are on, so their float32 rounding
    scales with how far f travels from f(z_p), not with its steepest slope:
    anchored at one end, 1/z - 1 near z = 1 would cancel terms thousands of times
    larger than the result (see precision.py).
    """
    shape = _piecewise_shape(ops, block, z_label, form, function)
    if shape is None:
        return None  # too steep: z noise would be amplified; steps are flat near each value
    z_bound, zs, pivot_outputs, hinges = shape
    dims = [Dim(label) for label in block.outputs]
    neurons = []
    if np.any(pivot_outputs != 0):
        neurons.append(_neuron({ONE: 1.0, BOS: -1.0}, dict(zip(dims, pivot_outputs))))
    for i, side, coefficients, keep in hinges:
        w_in: dict[Dim, float] = {}
        _add(w_in, form.as_dict(), side)
        _add(w_in, {ONE: -side * float(zs[i]), BOS: -(z_bound + abs(float(zs[i])) + 1.0)})
        change = {d: float(w) for d, w, k in zip(dims, coefficients, keep) if k}
        neurons.append(_neuron(w_in, change))
    return MLPPart(block.label, "piecewise-linear", block.units, block.leaves, block.outputs,
                   tuple(neurons), {})


def _piecewise_shape(ops, block, z_label, form, function):
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
                    _add(total, {Dim(other, value): 1.0})
        if not total:
            continue
        total[BOS] = -gate
        lowered = dict(total)
        _add(lowered, {ONE: -1.0})
        out = {Dim(spec.label, shared_value): 1.0}
        neurons.append(_neuron(total, out))
        neurons.append(_neuron(lowered, {d: -w for d, w in out.items()}))
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
        neurons.append(_neuron({dim: sign, ONE: -margin, BOS: margin}, {dim: -sign}))
    owners = tuple(dict.fromkeys(dim.sop for dim, _ in writes))
    return MLPPart("bos-cleanup", "bos-cleanup", (), owners, owners, tuple(neurons), {})
