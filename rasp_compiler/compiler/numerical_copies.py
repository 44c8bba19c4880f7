"""The numerical-copies pass: linear lookups read numerical copies of their inputs.

A graph-to-graph pass that runs after scheduling. Read from the one-hots, each
`linear-steps` neuron (mlp_linear.py) carries a weight for every value of both
inputs (z = sum of v [x = v] + r sum of w [y = w]): about 8 N^2 weights for the 4N
neurons of `length - indices`. A numerical copy `x.number` (one dimension holding
x's value) brings that to a few per neuron. It is written where x is: by the
embedding for tokens, indices and constants, and, for a categorical SOp decoded by
an MLP from one number (a SelectorWidth's decoder), by a second MLP block beside
the decoder in the same layer, with x's value as a number (piecewise-linear, so it
carries the attention's error scaled by the decoder's slope, which precision.py
bounds). The lookup becomes a Map of the numerical form `f.z` = x.number + r
y.number (the one-hot reading stays for an input without a copy), compiled by the
ordinary steps of mlp_steps.py. An input gets a copy only where it saves weights;
x's one-hot is dropped when nothing else reads it.

The pass returns a second reading of the program, (OpGraph, Schedule), rescheduled
and never deeper than the first; whether float32 keeps the copies exact enough is
only known once it is lowered, so the pipeline tries it first and falls back to the
one-hot reading (pipeline.first_exact_reading).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Callable

import numpy as np

from rasp_compiler.compiler.linear_forms import AFFINE_TOLERANCE, LinearLookup
from rasp_compiler.compiler.mlp import neuron_bound
from rasp_compiler.compiler.mlp_linear import linear_lookup_of
from rasp_compiler.compiler.ops import Embedding, MLPUnit, OpGraph
from rasp_compiler.compiler.schedule import Block, Schedule, schedule
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang import rasp
from rasp_compiler.model.residual import Dim, LinearForm

COPY_SUFFIX = ".number"  # the numerical copy of categorical SOp x is the hidden SOp `x.number`
FORM_SUFFIX = ".z"  # the linear form a linear lookup `f` walks along, read from copies: `f.z`
HINGE_WEIGHTS = 4  # non-zero weights of one neuron of a copy's MLP (z, one, bos in; one out)
NUMERICAL = rasp.Encoding.NUMERICAL


def with_numerical_copies(ops: OpGraph, scheduled: Schedule, *, max_fused_input_space: int
                          ) -> tuple[OpGraph, Schedule] | None:
    """(ops, schedule) where each linear lookup compiled on its own reads numerical copies
    of its inputs where that saves weights (see the module doc), or None when no lookup
    gains from that. The copied reading is rescheduled; if that would take more layers,
    None."""
    copier = _Copier(ops, scheduled)
    for layer in scheduled.layers:
        for block in layer.blocks:
            copier.read_from_copies(block)
    if not copier.copies:
        return None
    copied = copier.copied_ops()
    rescheduled = schedule(copied, max_fused_input_space=max_fused_input_space)
    if rescheduled.depth > scheduled.depth:
        return None
    # The copies' forms cut chains of MLPs that unlimited fusion could join: the depth
    # bound, and the notes on why units were not fused, are those of the one-hot reading.
    bound = min(scheduled.lower_bound, rescheduled.lower_bound)
    notes = tuple(dict.fromkeys(scheduled.fusion_notes + rescheduled.fusion_notes))
    return copied, dataclasses.replace(rescheduled, lower_bound=bound, fusion_notes=notes)


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
        k = int(np.clip(np.searchsorted(self.zs, z), 1, len(self.zs) - 1))
        nearest = k - 1 if abs(z - self.zs[k - 1]) <= abs(z - self.zs[k]) else k
        if abs(z - self.zs[nearest]) > self.quantum:  # only its own zs are ever asked for
            raise CompilationError(
                f"{self.lookup.describe()}: {z!r} is not one of the values this linear form "
                f"takes; this is a compiler bug, please report it with the program")
        return self.outputs[nearest]


class _Copier:
    """The copied reading while it is built: new copies, forms and units beside the
    original OpGraph's (which is never changed), and where each goes in the order."""

    def __init__(self, ops: OpGraph, scheduled: Schedule):
        self.ops = ops
        self.block_of = {unit: block for layer in scheduled.layers for block in layer.blocks
                         for unit in block.units}
        self.taken = set(ops.values) | {expr.label for expr in ops.graph.exprs()}
        self.values, self.encodings = dict(ops.values), dict(ops.encodings)
        self.embeddings, self.units = dict(ops.embeddings), dict(ops.units)
        self.forms = dict(ops.forms)
        self.after: dict[str, list[str]] = {}  # label -> new labels placed right after it
        self.before: dict[str, list[str]] = {}  # label -> new labels placed right before it
        self.copies: dict[str, str] = {}

    def copy_cost(self, source: str) -> float | None:
        """Non-zero weights of writing source's copy; None when it cannot have one."""
        ops = self.ops
        if f"{source}{COPY_SUFFIX}" in self.taken or None in ops.values[source]:
            return None
        if source in ops.embeddings:
            return sum(v is not None and float(v) != 0
                       for v in ops.embeddings[source].table.values())
        block = self.block_of.get(source)
        if block is None or block.units != (source,):
            return None  # an attention output or a fused block: no place to write a copy
        leaves = [ops.values[leaf] for leaf in block.leaves]
        if len(block.leaves) != 1 or not ops.is_numerical(block.leaves[0]) or None in leaves[0]:
            return None  # the copy must be a function of one number, as the decoder is
        return HINGE_WEIGHTS * neuron_bound(ops, block)

    def make_copy(self, source: str) -> str:
        """The label of source's copy, made (as an embedding or an MLP unit) if new."""
        if source in self.copies:
            return self.copies[source]
        ops = self.ops
        label = f"{source}{COPY_SUFFIX}"
        if source in ops.embeddings:
            embedding = ops.embeddings[source]
            table = [(k, float(v)) for k, v in embedding.table.items() if v is not None]
            self.embeddings[label] = Embedding(label, embedding.by, NUMERICAL, table)
        else:
            unit = ops.units[source]
            self.units[label] = MLPUnit(label, unit.inputs, _AsNumber(unit.fn), NUMERICAL, "Copy")
        self.values[label] = tuple(sorted({float(v) for v in ops.values[source]}))
        self.encodings[label] = NUMERICAL
        self.after.setdefault(source, []).append(label)
        self.copies[source] = label
        return label

    def read_from_copies(self, block: Block) -> None:
        """Make the block's linear lookup, if it is one, a Map of `f.z` over the copies of
        those of its inputs whose copy saves weights."""
        lookup = linear_lookup_of(self.ops, block)
        (label,) = block.units if lookup is not None else (None,)
        if lookup is None or f"{label}{FORM_SUFFIX}" in self.taken:
            return
        steps = 2 * lookup.changes
        chosen: dict[str, str] = {}
        for source, source_values in ((lookup.x, lookup.x_values), (lookup.y, lookup.y_values)):
            cost = self.copy_cost(source)
            spread = sum(float(v) != 0 for v in source_values)
            if cost is not None and steps * (spread - 1) > (0 if source in self.copies else cost):
                chosen[source] = self.make_copy(source)
        if not chosen:
            return
        terms: dict[Dim, float] = {}
        for source, source_values, factor in ((lookup.x, lookup.x_values, 1.0),
                                              (lookup.y, lookup.y_values, lookup.ratio)):
            if source in chosen:
                terms[Dim(chosen[source])] = terms.get(Dim(chosen[source]), 0.0) + factor
            else:
                for v in source_values:
                    terms[Dim(source, v)] = terms.get(Dim(source, v), 0.0) + factor * float(v)
        z = f"{label}{FORM_SUFFIX}"
        self.forms[z] = LinearForm.of(terms)
        self.values[z] = lookup.zs
        self.encodings[z] = NUMERICAL
        self.before.setdefault(label, []).append(z)
        unit = self.ops.units[label]
        self.units[label] = MLPUnit(label, (z,), _AlongForm(lookup), unit.encoding, unit.kind,
                                    linear=lookup)

    def copied_ops(self) -> OpGraph:
        """The copied reading's OpGraph: the new labels in order, magnitudes for the new
        numerical SOps."""
        order: list[str] = []
        for label in self.ops.order:
            order.extend(self.before.get(label, ()))
            order.append(label)
            order.extend(self.after.get(label, ()))
        frozen = MappingProxyType
        magnitudes = dict(self.ops.magnitudes)
        for label in order:
            if label not in magnitudes and self.encodings[label] is NUMERICAL:
                magnitudes[label] = max((abs(float(v)) for v in self.values[label]), default=0.0)
        return dataclasses.replace(
            self.ops, values=frozen(self.values), encodings=frozen(self.encodings),
            order=tuple(order), embeddings=frozen(self.embeddings), units=frozen(self.units),
            forms=frozen(self.forms), position=frozen({label: i for i, label in enumerate(order)}),
            magnitudes=frozen(magnitudes))
