"""Size: the model's parameter count, bounded before any weight is allocated.

lower and assemble build dense float32 matrices: [d_model, hidden] twice per
MLP, [d_model, heads * key_size] and [d_model, heads * value_size] twice per
attention layer, and the two embedding tables. A SequenceMap of tokens (1,000
values) and indices (400) needs 400,000 MLP neurons over a 1,400-wide residual:
lower took 36 s to build its 1.9 billion parameters, and larger ones died in
numpy's MemoryError. This stage runs right after the schedule:

- the residual width d_model and every head's key and value size are exact
  and cheap (value sets and selector relations are already known);
- every MLP part is bounded from its value sets alone (`mlp.neuron_bound`);
- only when those bounds pass `max_parameters` are MLP parts counted, largest
  first (`mlp.count_neurons`: the function calls lower would make, no
  weights), each count stopping as soon as the total certainly passes.

So a model within the limit is never refused on a bound, and a refusal costs
at most counting about max_parameters / (2 * d_model) neurons: well under a
second for the example above.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod

from rasp_compiler.compiler.lower import head_size, residual_layout
from rasp_compiler.compiler.mlp import count_neurons, neuron_bound
from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.compiler.schedule import Block, Schedule
from rasp_compiler.errors import ModelTooLargeError, describe_bytes
from rasp_compiler.model.constants import BYTES_PER_PARAMETER, DEFAULT_MAX_PARAMETERS  # noqa: F401


@dataclass(frozen=True)
class SizePart:
    """One part of the model and its parameters: exact when low == high."""

    kind: str  # "embeddings", "attention" (one layer's heads) or "mlp" (one MLP part)
    layer: int | None  # from 0; None for the embeddings
    low: int
    high: int
    block: Block | None = None  # the MLP part's block (None: the layer's BOS cleanup)
    heads: tuple[str, ...] = ()  # an attention layer's ops

    @property
    def exact(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class SizeEstimate:
    """Bounds on the parameter count of the model lower and assemble would build."""

    d_model: int
    parts: tuple[SizePart, ...]

    @property
    def low(self) -> int:
        return sum(part.low for part in self.parts)

    @property
    def high(self) -> int:
        return sum(part.high for part in self.parts)

    @property
    def exact(self) -> bool:
        return all(part.exact for part in self.parts)

    @property
    def bytes(self) -> int:
        """float32 bytes of the parameters (the upper bound)."""
        return BYTES_PER_PARAMETER * self.high


def estimate_size(ops: OpGraph, schedule: Schedule, *, count: bool = False) -> SizeEstimate:
    """Exact embeddings and heads; MLP parts bounded from value sets, or counted."""
    d_model = residual_layout(ops, schedule).width
    rows = len(ops.vocab) + 2 + ops.max_seq_len + 1  # token table (with BOS, PAD) + positions
    parts = [SizePart("embeddings", None, rows * d_model, rows * d_model)]
    for layer in schedule.layers:
        sizes = [head_size(ops.attention[label]) for label in layer.heads]
        key_size = max((k for k, _ in sizes), default=0)
        value_size = max((v for _, v in sizes), default=0)
        attention = 2 * d_model * len(sizes) * (key_size + value_size)
        parts.append(SizePart("attention", layer.index, attention, attention, heads=layer.heads))
        for block in layer.blocks:
            width = count_neurons(ops, block, neuron_bound(ops, block)) if count else None
            low = 0 if width is None else width
            high = neuron_bound(ops, block) if width is None else width
            parts.append(SizePart("mlp", layer.index, 2 * d_model * low, 2 * d_model * high,
                                  block=block))
        cleanup = sum(len(ops.attention[label].bos_writes) for label in layer.heads)
        parts.append(SizePart("mlp", layer.index, 2 * d_model * cleanup, 2 * d_model * cleanup))
    return SizeEstimate(d_model, tuple(parts))


def check_size(ops: OpGraph, schedule: Schedule, max_parameters: int) -> SizeEstimate:
    """The size estimate, refined until it is within `max_parameters` or certainly past it.

    Raises ModelTooLargeError naming the largest part and a cheaper formulation.
    """
    estimate = estimate_size(ops, schedule)
    parts = list(estimate.parts)
    per_neuron = 2 * estimate.d_model
    order = sorted((i for i, p in enumerate(parts) if not p.exact), key=lambda i: -parts[i].high)
    for i in order:
        if sum(p.high for p in parts) <= max_parameters:
            break
        others = sum(p.low for j, p in enumerate(parts) if j != i)
        if others > max_parameters:
            break
        stop_after = (max_parameters - others) // per_neuron
        width = count_neurons(ops, parts[i].block, stop_after)
        exact = width <= stop_after or width * per_neuron >= parts[i].high
        parts[i] = replace(parts[i], low=width * per_neuron,
                           high=width * per_neuron if exact else parts[i].high)
    estimate = SizeEstimate(estimate.d_model, tuple(parts))
    if estimate.low > max_parameters:  # all exact, or a count passed the limit
        raise _refusal(ops, schedule, estimate, max_parameters)
    return estimate


# --------------------------------------------------------------------------- messages


def _refusal(ops: OpGraph, schedule: Schedule, estimate: SizeEstimate,
             limit: int) -> ModelTooLargeError:
    part = max(estimate.parts, key=lambda p: p.low)
    layout = residual_layout(ops, schedule)
    ranges = layout.ranges()
    widest = max((sop for sop in ranges if sop not in ("one", "bos")),
                 key=lambda sop: ranges[sop][1] - ranges[sop][0], default=None)
    label, what, advice = _describe(ops, part, estimate.d_model, widest)
    residual = f"The residual stream is {estimate.d_model:,} wide"
    if widest is not None:
        residual += (f" (one dimension per value of each categorical SOp it holds; the widest is "
                     f"{widest}, {ranges[widest][1] - ranges[widest][0]:,})")
    message = (
        f"{label}: {what}. The model would have {_amount(estimate.low, estimate.high)} "
        f"parameters, over max_parameters={limit:,} "
        f"({describe_bytes(BYTES_PER_PARAMETER * limit)} of float32). "
        f"Cheaper: {advice}. "
        f"{residual}, and each MLP neuron costs 2 x {estimate.d_model:,} parameters."
    )
    return ModelTooLargeError(message, parameters=estimate.low, limit=limit, label=label)


def _amount(low: int, high: int) -> str:
    """'N' when exact; else 'at least N (counting stopped there; up to M)'."""
    if low == high:
        return f"{low:,}"
    return f"at least {low:,} (counting stopped there; up to {high:,})"


def _describe(ops: OpGraph, part: SizePart, d_model: int,
              widest: str | None) -> tuple[str, str, str]:
    """(label, what needs the parameters, a cheaper formulation) for one part."""
    amount = f"{_amount(part.low, part.high)} parameters"
    if part.kind == "embeddings":
        label = widest or "embeddings"
        what = (f"the embedding tables alone need {amount} ({len(ops.vocab) + 2:,} token rows "
                f"and {ops.max_seq_len + 1:,} position rows of width {d_model:,})")
        return label, what, (f"make {label} numerical or map it to fewer values, shrink the "
                             f"vocab or max_seq_len, or raise max_parameters")
    if part.kind == "attention":
        widest_head = max(part.heads, key=lambda h: head_size(ops.attention[h])[0])
        op = ops.attention[widest_head]
        key_size, value_size = head_size(op)
        compared = "; ".join(f"{a.query} ({len(a.query_values):,} values) with {a.key} "
                             f"({len(a.key_values):,} values)" for a in op.atoms)
        heads = f"{len(part.heads)} head{'s' if len(part.heads) > 1 else ''}"
        what = (f"layer {part.layer}'s attention ({heads} of key size {key_size:,} and value "
                f"size {value_size:,}) needs {amount}; its widest head is this one's, comparing "
                f"{compared or 'nothing'}")
        return op.source, what, ("select on SOps with fewer values (map them to fewer values "
                                 "first), lower max_seq_len or the vocab, or raise max_parameters")
    block = part.block
    if block is None:
        what = f"layer {part.layer}'s BOS cleanup needs {amount}"
        return f"layer {part.layer}", what, "raise max_parameters"
    units = [ops.units[u] for u in block.units]
    kinds = ", ".join(dict.fromkeys(u.kind for u in units))
    this = f"this {kinds}" if len(units) == 1 else f"this fused MLP ({kinds})"
    neurons = f"{_amount(part.low // (2 * d_model), part.high // (2 * d_model))} MLP neurons"
    categorical = [leaf for leaf in block.leaves if not ops.is_numerical(leaf)]
    numerical = [leaf for leaf in block.leaves if ops.is_numerical(leaf)]
    combos = prod(len(ops.values[leaf]) for leaf in categorical)
    inputs = " x ".join(f"{leaf} ({len(ops.values[leaf]):,} values)" for leaf in categorical)
    if units[0].feature is not None and len(units) == 1:
        what = f"{this} (an OR clause's feature) needs {neurons} in layer {part.layer}"
        return block.label, what, ("write the selector over SOps with fewer values (see the "
                                   "selector report), or raise max_parameters")
    if numerical:
        (z,) = numerical
        per = f", for each of the {combos:,} combinations of {inputs}" if categorical else ""
        what = (f"{this} needs {neurons} in layer {part.layer}: two at each value "
                f"of {z} ({sum(v is not None for v in ops.values[z]):,} values) where its "
                f"output changes{per}")
        return block.label, what, (f"round {z} to fewer values with a Map first, lower "
                                   f"max_seq_len, or raise max_parameters")
    what = (f"{this} needs {neurons} in layer {part.layer}, one per combination of its "
            f"inputs' values that has an output ({inputs} = {combos:,} combinations)")
    if any(u.kind == "SequenceMap" for u in units):
        advice = ("split the SequenceMap (map each input to fewer values first, or combine "
                  "smaller SequenceMaps), use a numerical Map or LinearSequenceMap where the "
                  "function is linear, lower max_seq_len or the vocab, or raise max_parameters")
    else:
        advice = ("map its inputs to fewer values first, use a numerical Map where the function "
                  "is linear, lower max_seq_len or the vocab, or raise max_parameters")
    return block.label, what, advice
