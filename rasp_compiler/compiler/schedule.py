"""Schedule: each operation to a (layer, attention | MLP) slot, at minimal depth.

Layers are numbered from 0, as the parameters (`layer_0/...`), hooks (`blocks.0...`)
and head names (`L0H0`) number them. Time is counted in sublayers: 0 is the
embeddings, 2l+1 the attention of layer l, 2l+2 its MLP (model/hooks.py's `Slot`
converts). An attention op runs at the first attention sublayer after all it
reads; an MLP unit at the first MLP sublayer after its inputs, or, when an input
is another unit computed in that same MLP, fused with it into one block (one
MLP computes the composition exactly, because every value set is finite).

Fusion is refused when the block would read two numerical quantities (one
hidden ReLU layer cannot compute a general function of two reals exactly) or
when its input space (the product of its inputs' value counts) exceeds
`max_fused_input_space`; the unit then waits one layer. Scheduling again with
every fusion allowed gives the lower bound reported beside the depth reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.errors import UnsupportedExpressionError
from rasp_compiler.model.hooks import ATTENTION, EMBEDDINGS, MLP, Slot

DEFAULT_MAX_FUSED_INPUT_SPACE = 16_384


@dataclass(frozen=True)
class Block:
    """One fused MLP computation: `units` in order, reading `leaves`, writing `outputs`."""

    layer: int  # from 0
    units: tuple[str, ...]
    leaves: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def label(self) -> str:
        return "+".join(self.outputs) if self.outputs else "+".join(self.units)


@dataclass(frozen=True)
class ScheduledLayer:
    index: int  # from 0
    heads: tuple[str, ...]  # attention ops (labels of what they write)
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Schedule:
    layers: tuple[ScheduledLayer, ...]
    time: Mapping[str, int]  # sublayer after which each live SOp is available
    materialized: frozenset[str]  # SOps that own residual dimensions
    live: frozenset[str]
    lower_bound: int
    fusion_notes: tuple[str, ...]  # why a unit could not join its inputs' MLP

    @property
    def depth(self) -> int:
        return len(self.layers)

    def layer_of(self, label: str) -> int | None:
        """The layer that writes `label` (None: the embeddings and forms of them)."""
        slot = Slot.at(self.time[label])
        return None if slot == EMBEDDINGS else slot.layer


def schedule(ops: OpGraph, *, max_fused_input_space: int = DEFAULT_MAX_FUSED_INPUT_SPACE) -> Schedule:
    """Place every live operation at its earliest slot, fusing MLP units where allowed."""
    live = _live(ops)
    _check_units_have_one_numerical_input(ops, live)
    fusable = _FusionRule(ops, max_fused_input_space)
    time, blocks, notes = _place(ops, live, fusable)
    unlimited_time, _, _ = _place(ops, live, lambda leaves, last: (True, ""))
    materialized = _materialized(ops, live, blocks)

    depth = max((math.ceil(t / 2) for t in time.values()), default=0)
    lower_bound = max((math.ceil(t / 2) for t in unlimited_time.values()), default=0)
    layers = []
    for layer in range(depth):
        heads = tuple(label for label in ops.order if label in ops.attention
                      and label in time and time[label] == Slot.attention(layer).time)
        layer_blocks = []
        for units in blocks:
            if time[units[0]] != Slot.mlp(layer).time:
                continue
            leaves = _leaves(ops, units)
            outputs = tuple(u for u in units if u in materialized)
            layer_blocks.append(Block(layer, tuple(units), tuple(leaves), outputs))
        layers.append(ScheduledLayer(layer, heads, tuple(layer_blocks)))
    return Schedule(
        layers=tuple(layers),
        time=MappingProxyType(time),
        materialized=frozenset(materialized),
        live=frozenset(live),
        lower_bound=lower_bound,
        fusion_notes=tuple(notes),
    )


def _live(ops: OpGraph) -> set[str]:
    """Every SOp the output depends on (Maps folded into every reader drop out here)."""
    live = {ops.output}
    for label in reversed(ops.order):
        if label in live:
            live |= ops.inputs_of(label)
    return live


def _check_units_have_one_numerical_input(ops: OpGraph, live: set[str]) -> None:
    for label, unit in ops.units.items():
        if label not in live:
            continue
        numerical = sorted({i for i in unit.inputs if ops.is_numerical(i)})
        if len(numerical) > 1:
            raise UnsupportedExpressionError(
                f"{label}: this {unit.kind} reads two numerical SOps ({', '.join(numerical)}); "
                f"one MLP computes an exact function of at most one number. Use a "
                f"rasp.LinearSequenceMap if the function is linear, or make one input "
                f"categorical with rasp.categorical(rasp.Map(lambda x: x, ...))"
            )


def _leaves(ops: OpGraph, units) -> list[str]:
    inside = set(units)
    leaves: list[str] = []
    for unit in units:
        for label in ops.units[unit].inputs:
            if label not in inside and label not in leaves:
                leaves.append(label)
    return leaves


class _FusionRule:
    """Whether a set of units may share one MLP block, and why not (decided on the SOps
    the block would read from outside it)."""

    def __init__(self, ops: OpGraph, max_space: int):
        self.ops = ops
        self.max_space = max_space
        self.counts: dict[str, int] = {}  # values (not None) of each leaf read so far

    def __call__(self, leaves: Iterable[str], last: str) -> tuple[bool, str]:
        leaves = sorted(leaves, key=lambda leaf: _position(self.ops, leaf))
        numerical = [leaf for leaf in leaves if self.ops.is_numerical(leaf)]
        if len(numerical) > 1:
            return False, (
                f"{last} was not fused with its inputs: the fused MLP would read "
                f"{len(numerical)} numerical SOps ({', '.join(numerical)}), and one MLP layer "
                f"computes exact functions of at most one; it waits one layer"
            )
        space = 1
        for leaf in leaves:
            if leaf not in self.counts:
                self.counts[leaf] = max(1, sum(v is not None for v in self.ops.values[leaf]))
            space *= self.counts[leaf]
        if space > self.max_space:
            return False, (
                f"{last} was not fused with its inputs: the fused MLP's input space would be "
                f"{space:,} combinations (limit max_fused_input_space={self.max_space:,}); "
                f"it waits one layer"
            )
        return True, ""


def _position(ops: OpGraph, label: str) -> tuple[int, str]:
    return ops.position.get(label, len(ops.position)), label


@dataclass
class _Growing:
    """A fused block while units join it: its units (in the order they joined), the same as
    a set, and the SOps it reads from outside (each once, in the order first read)."""

    units: list[str]
    members: set[str]
    leaves: dict[str, None]


def _place(
    ops: OpGraph, live: set[str], fusable: Callable[[Iterable[str], str], tuple[bool, str]]
) -> tuple[dict[str, int], list[list[str]], list[str]]:
    """Earliest sublayer of every live SOp, and the fused blocks of MLP units.

    A block's members and outside reads are kept as it grows, and blocks merge smaller
    into larger, so a chain of k units fused into one block costs about k, not k^2
    (a chain of 3,000 Maps took 18 s when each step re-sorted and re-read the block)."""
    time: dict[str, int] = {}
    block_of: dict[str, int] = {}
    blocks: dict[int, _Growing] = {}
    notes: list[str] = []
    next_block = 0
    for label in ops.order:
        if label not in live:
            continue
        inputs = ops.inputs_of(label)
        ready = max((time[i] for i in inputs), default=0)
        if label in ops.embeddings:
            time[label] = 0
        elif label in ops.forms:
            time[label] = ready
        elif label in ops.attention:
            time[label] = Slot.first_after(ready, ATTENTION).time
        else:
            merged_into = None
            if Slot.at(ready).sublayer == MLP:  # an MLP wrote its last input: join it
                at_ready = [i for i in inputs if time[i] == ready]
                if all(i in ops.units for i in at_ready):
                    candidates = [blocks[b] for b in sorted({block_of[i] for i in at_ready})]
                    reads = {**{leaf: None for c in candidates for leaf in c.leaves},
                             **{i: None for i in ops.units[label].inputs}}
                    leaves = [leaf for leaf in reads
                              if not any(leaf in c.members for c in candidates)]
                    allowed, why = fusable(leaves, label)
                    if allowed:
                        ids = sorted({block_of[i] for i in at_ready},
                                     key=lambda b: -len(blocks[b].members))
                        merged_into = ids[0]
                        into = blocks[merged_into]
                        for b in ids[1:]:
                            for u in blocks.pop(b).units:
                                block_of[u] = merged_into
                                into.units.append(u)
                                into.members.add(u)
                        into.units.append(label)
                        into.members.add(label)
                        into.leaves = dict.fromkeys(leaves)
                        block_of[label] = merged_into
                        time[label] = ready
                    else:
                        notes.append(why)
            if merged_into is None:
                time[label] = Slot.first_after(ready, MLP).time
                blocks[next_block] = _Growing([label], {label},
                                              dict.fromkeys(ops.units[label].inputs))
                block_of[label] = next_block
                next_block += 1
    ordered = [_in_order(ops, block.units) for block in blocks.values()]
    ordered.sort(key=lambda units: ops.position[units[0]])
    return time, ordered, notes


def _in_order(ops: OpGraph, units: list[str]) -> list[str]:
    return sorted(set(units), key=ops.position.__getitem__)


def _materialized(ops: OpGraph, live: set[str], blocks: list[list[str]]) -> list[str]:
    """SOps that need residual dimensions: read by a head, a block, or the decoder."""
    need: set[str] = set()

    def read(label: str) -> None:
        if label in ops.forms:
            need.update(ops.forms[label].sops())
        else:
            need.add(label)

    read(ops.output)
    for label in live:
        if label in ops.attention:
            need.update(ops.attention[label].reads)
    for units in blocks:
        for leaf in _leaves(ops, units):
            read(leaf)
    return [label for label in ops.order if label in need]
