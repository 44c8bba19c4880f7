"""What every MLP construction is made of: neurons over named residual dimensions.

A `Neuron` is a hidden unit's input and output weights, each keyed by a residual
dimension (`Dim`), and an `MLPPart` the neurons one fused block contributes to a
layer's MLP, with the noise each of its inputs may carry. The constructions
(mlp.py's lookups and clause features, mlp_steps.py's steps and hinges,
mlp_linear.py's steps along a linear form) build them with the weight arithmetic
here and read the block's function (`BlockFunction`) on its leaves' values; it is a
module of its own so that each construction module imports it and none imports
another's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping

import numpy as np

from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.compiler.schedule import Block
from rasp_compiler.compiler.selectors import Accepted
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang.identity import find_clash, identity_key, same_value
from rasp_compiler.model.residual import ONE, Dim, LinearForm

BOS_GATE = 2.0  # subtracted at BOS from lookup neurons (their pre-activation is at most 1)
MIN_RELATIVE_GAP = 2e-5  # float32 cannot place a step between values closer than this
CATEGORICAL_NOISE_BUDGET = 0.01  # largest leak a one-hot input of a lookup may carry


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


def add_weights(target: dict[Dim, float], source: Mapping[Dim, float], factor: float = 1.0) -> None:
    for dim, weight in source.items():
        target[dim] = target.get(dim, 0.0) + factor * weight


def weight_difference(after: Mapping[Dim, float], before: Mapping[Dim, float]) -> dict[Dim, float]:
    out = dict(after)
    add_weights(out, before, -1.0)
    return {dim: w for dim, w in out.items() if w != 0}


def make_neuron(w_in: Mapping[Dim, float], w_out: Mapping[Dim, float]) -> Neuron:
    return Neuron(
        tuple((d, w) for d, w in w_in.items() if w != 0),
        tuple((d, w) for d, w in w_out.items() if w != 0),
    )


class BlockFunction:
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


def indicator(ops: OpGraph, leaf: str, value: Any) -> dict[Dim, float]:
    """A linear indicator of `leaf == value`: its one-hot dim, or for None (no value,
    all dims zero) one minus the sum of its dims."""
    if value is not None:
        return {Dim(leaf, value): 1.0}
    indicator = {ONE: 1.0}
    for v in ops.values[leaf]:
        if v is not None:
            indicator[Dim(leaf, v)] = -1.0
    return indicator


def combo_indicator(ops: OpGraph, leaves: list[str], combo: tuple) -> dict[Dim, float]:
    total: dict[Dim, float] = {}
    for leaf, value in zip(leaves, combo):
        add_weights(total, indicator(ops, leaf, value))
    return total

