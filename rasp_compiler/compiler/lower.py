"""Lower: every scheduled operation to weights over the named residual dimensions.

`lower_model` gives the whole model's weights (`LoweredModel`): the residual layout,
the embeddings and each head here, each layer's MLP from its blocks' parts (mlp.py).

Heads: an atom Select(K, Q, P) is the bilinear form c * P(k, q) between Q's
one-hot (query side) and K's one-hot (key side); a conjunction of t atoms adds
their forms. A BOS column (`one` on the query side, `bos` on the key side) gives
the BOS key c * (t - 1/2) for an Aggregate, so BOS wins only when nothing is
selected (the default), and c * t for a SelectorWidth, so BOS shares attention
with the w selected keys and receives 1 / (w + 1); above max_seq_len 16 its score
is raised by ln N when the width is categorical, so it receives N / (N + w), whose
values stay ~1/(4N) apart (widths.py).

Coldness c: with at most N keys, the attention mass that leaks away from the
intended keys is at most (N + 1) * exp(-c / 2) =: eps, so c = 2 ln((N + 1) / eps).
eps is `attention_precision` or smaller where an MLP reading the head's output
needs it (a step placed between two close values), and the compiler refuses
when that would ask float32 for more than it has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Mapping

import numpy as np

from rasp_compiler.compiler.mlp import bos_cleanup, lower_block, ungate
from rasp_compiler.compiler.neurons import MLPPart
from rasp_compiler.compiler.ops import AttentionOp, OpGraph
from rasp_compiler.compiler.schedule import Schedule
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang import rasp
from rasp_compiler.model.constants import ATOL
from rasp_compiler.model.residual import (
    BOS,
    ONE,
    Dim,
    LinearForm,
    Readout,
    ResidualLayout,
    build_layout,
)

DEFAULT_ATTENTION_PRECISION = 1e-7
FLOAT32_PRECISION_FLOOR = 1e-9  # below this, float32 softmax noise dominates
LEAK_SHARE_OF_TOLERANCE = 0.25  # of constants.ATOL, for the leak of a numerical average


@dataclass(frozen=True, eq=False)
class LoweredHead:
    """One compiled head: its weights (dense over the residual) and softmax coldness.

    What it implements is `ops.attention[label]`.
    """

    label: str  # the attention op (the SOp it writes)
    layer: int
    index: int  # position among the layer's heads
    coldness: float
    leak_bound: float  # largest attention mass on unintended keys
    w_q: np.ndarray  # [d_model, key_size]
    w_k: np.ndarray
    w_v: np.ndarray  # [d_model, value_size]
    w_o: np.ndarray  # [value_size, d_model]

    @property
    def key_size(self) -> int:
        return self.w_q.shape[1]

    @property
    def value_size(self) -> int:
        return self.w_v.shape[1]


@dataclass(frozen=True, eq=False)
class LoweredMLP:
    """One layer's MLP: its parts (fused blocks, BOS cleanup) side by side."""

    layer: int
    parts: tuple[MLPPart, ...]
    w_1: np.ndarray  # [d_model, hidden]
    w_2: np.ndarray  # [hidden, d_model]

    @property
    def hidden(self) -> int:
        return self.w_1.shape[1]

    def part_ranges(self) -> dict[str, tuple[int, int]]:
        out, start = {}, 0
        for part in self.parts:
            out[part.label] = (start, start + part.width)
            start += part.width
        return out


@dataclass(frozen=True, eq=False)
class LoweredModel:
    layout: ResidualLayout
    token_embeddings: np.ndarray  # [len(vocab) + 2 (BOS, PAD), d_model]
    position_embeddings: np.ndarray  # [max_seq_len + 1, d_model]
    heads: tuple[tuple[LoweredHead, ...], ...]  # per layer
    mlps: tuple[LoweredMLP, ...]
    readouts: Mapping[str, Readout]


def lower_model(
    ops: OpGraph,
    schedule: Schedule,
    *,
    attention_precision: float = DEFAULT_ATTENTION_PRECISION,
) -> LoweredModel:
    layout = residual_layout(ops, schedule)
    mlp_parts = [[lower_block(ops, block) for block in layer.blocks] for layer in schedule.layers]
    budgets = _noise_budgets(mlp_parts)
    heads = []
    for layer, parts in zip(schedule.layers, mlp_parts):
        layer_heads = tuple(
            _head(ops, ops.attention[label], layout, layer.index, i,
                  _precision(ops, ops.attention[label], budgets, attention_precision))
            for i, label in enumerate(layer.heads)
        )
        heads.append(layer_heads)
        writes = [w for label in layer.heads for w in ops.attention[label].bos_writes]
        parts[:] = [ungate(part, writes) for part in parts]
        if writes:
            parts.append(bos_cleanup(ops, writes))
    mlps = tuple(_dense_mlp(layer.index, parts, layout) for layer, parts in zip(schedule.layers, mlp_parts))
    return LoweredModel(
        layout=layout,
        token_embeddings=_token_embeddings(ops, layout),
        position_embeddings=_position_embeddings(ops, layout),
        heads=tuple(heads),
        mlps=mlps,
        readouts=_readouts(ops, schedule, layout),
    )


# --------------------------------------------------------------------------- layout


def residual_layout(ops: OpGraph, schedule: Schedule) -> ResidualLayout:
    """One dimension per value of each materialized categorical SOp, one per numerical SOp."""
    owners = [
        (label, ops.is_numerical(label), ops.values[label])
        for label in ops.order
        if label in schedule.materialized
    ]
    return build_layout(owners)


def _readouts(ops: OpGraph, schedule: Schedule, layout: ResidualLayout) -> dict[str, Readout]:
    readouts: dict[str, Readout] = {}
    for label in ops.order:
        unit = ops.units.get(label)
        if unit is not None and unit.feature is not None:
            continue  # a multi-hot clause feature is not a value
        if label in schedule.materialized:
            if ops.is_numerical(label):
                form = LinearForm.single(Dim(label))
            else:
                dims = layout.dims_of(label)
                readouts[label] = Readout(label, False, tuple(layout.index[d] for d in dims),
                                          tuple(d.value for d in dims), ())
                continue
        elif label in ops.forms and ops.forms[label].sops() <= schedule.materialized:
            form = ops.forms[label]
        else:
            continue
        pairs = [(layout.index[d], c) for d, c in form.terms]
        readouts[label] = Readout(label, True, tuple(i for i, _ in pairs), (),
                                  tuple(c for _, c in pairs))
    return readouts


# --------------------------------------------------------------------------- embeddings


def _token_embeddings(ops: OpGraph, layout: ResidualLayout) -> np.ndarray:
    vocab = ops.vocab
    owners = {d.sop for d in layout.dims}
    table = np.zeros((len(vocab) + 2, layout.width), dtype=np.float32)
    index = layout.index
    for row, token in enumerate(vocab):
        table[row, index[ONE]] = 1.0
        for embedding in ops.embeddings.values():
            if embedding.by == "token" and embedding.label in owners:
                _write(table, row, index, embedding.label, embedding.encoding, embedding.table[token])
    bos_row, pad_row = len(vocab), len(vocab) + 1
    table[bos_row, index[ONE]] = 1.0
    table[bos_row, index[BOS]] = 1.0
    table[pad_row, index[ONE]] = 1.0
    return table


def _position_embeddings(ops: OpGraph, layout: ResidualLayout) -> np.ndarray:
    n = ops.max_seq_len
    table = np.zeros((n + 1, layout.width), dtype=np.float32)
    owners = {d.sop for d in layout.dims}
    for embedding in ops.embeddings.values():
        if embedding.by != "position" or embedding.label not in owners:
            continue
        for position, value in embedding.table.items():
            if position < n:
                _write(table, position + 1, layout.index, embedding.label, embedding.encoding, value)
    return table


def _write(table, row, index, label, encoding, value) -> None:
    if value is None:
        return
    if encoding is rasp.Encoding.NUMERICAL:
        table[row, index[Dim(label)]] = float(value)
    else:
        table[row, index[Dim(label, value)]] = 1.0


# --------------------------------------------------------------------------- heads


def _noise_budgets(mlp_parts: list[list[MLPPart]]) -> dict[str, float]:
    budgets: dict[str, float] = {}
    for parts in mlp_parts:
        for part in parts:
            for sop, budget in part.noise_budget.items():
                budgets[sop] = min(budget, budgets.get(sop, math.inf))
    return budgets


def _precision(ops: OpGraph, op: AttentionOp, budgets: Mapping[str, float], default: float) -> float:
    """The leak eps this head may have, from what its readers tolerate."""
    if op.encoding is rasp.Encoding.NUMERICAL:
        magnitude = max([1.0] + [abs(float(v)) for v in ops.values[op.label] if isinstance(v, Real)])
    else:
        magnitude = 1.0
    eps = default
    if op.encoding is rasp.Encoding.NUMERICAL and op.kind == "aggregate":
        # An average is off by the leak times the span of what it averages (see
        # precision.py): colder heads for wide spans, as far as float32 allows.
        numbers = [float(v) for v in ops.values[op.label] if isinstance(v, Real)]
        span = max(numbers, default=0.0) - min(numbers, default=0.0)
        if span * eps > LEAK_SHARE_OF_TOLERANCE * ATOL:
            eps = max(LEAK_SHARE_OF_TOLERANCE * ATOL / span, FLOAT32_PRECISION_FLOOR)
    if op.label in budgets:
        eps = min(eps, budgets[op.label] / (2.0 * magnitude))
    if eps < FLOAT32_PRECISION_FLOOR:
        raise CompilationError(
            f"{op.source}: the MLP reading {op.label} distinguishes values so close that this "
            f"head would need an attention leak below {eps:.2g}, finer than float32 softmax "
            f"resolves ({FLOAT32_PRECISION_FLOOR:g}); round {op.label} with a Map or lower "
            f"max_seq_len"
        )
    return eps


def coldness_for(max_seq_len: int, eps: float) -> float:
    """Softmax inverse temperature so that at most eps of the attention mass leaks."""
    return 2.0 * math.log((max_seq_len + 1) / eps)


def bos_columns(op: AttentionOp) -> int:
    """Query/key columns a head spends on BOS: 1, or 2 for a selector without atoms."""
    return 1 if op.atoms else 2


def head_size(op: AttentionOp) -> tuple[int, int]:
    """(key_size, value_size) of the head `_head` builds for `op`, without building it."""
    key_size = bos_columns(op) + sum(len(relation_bicliques(atom.relation)) for atom in op.atoms)
    return key_size, len({out for _, out, _ in op.ov})


def _head(ops: OpGraph, op: AttentionOp, layout: ResidualLayout, layer: int, index: int,
          eps: float) -> LoweredHead:
    n = ops.max_seq_len
    c = coldness_for(n, eps)
    rows = layout.index
    q_blocks, k_blocks = [], []
    for atom in op.atoms:
        w_q, w_k = _atom_weights(atom, c, rows, layout.width)
        q_blocks.append(w_q)
        k_blocks.append(w_k)
    clauses = len(op.atoms)
    # Column 0: every query scores the BOS key c*t (width) or c*(t - 1/2) (aggregate).
    # The BOS query must attend to BOS (whose value row is all the bos_writes cleanup
    # removes). With atoms it does: it holds no one-hot, so every other key scores 0
    # there. Without (a selector of every key), column 1 gives the BOS query's BOS
    # key a further c*(t + 1).
    columns = bos_columns(op)
    bos_q = np.zeros((layout.width, columns), np.float32)
    bos_k = np.zeros((layout.width, columns), np.float32)
    bos_q[rows[ONE], 0] = 1.0
    if op.kind == "width":  # BOS weighs as much as s keys (widths.py)
        bos_k[rows[BOS], 0] = c * clauses + math.log(op.bos_share)
    else:
        bos_k[rows[BOS], 0] = c * (clauses - 0.5)
    if columns == 2:
        bos_q[rows[BOS], 1] = 1.0
        bos_k[rows[BOS], 1] = c * (clauses + 1)
    w_q = np.concatenate(q_blocks + [bos_q], axis=1)
    w_k = np.concatenate(k_blocks + [bos_k], axis=1)

    outputs = list(dict.fromkeys(out for _, out, _ in op.ov))
    w_v = np.zeros((layout.width, len(outputs)), dtype=np.float32)
    w_o = np.zeros((len(outputs), layout.width), dtype=np.float32)
    for j, out in enumerate(outputs):
        w_o[j, rows[out]] = 1.0
    for read, out, weight in op.ov:
        w_v[rows[read], outputs.index(out)] += weight
    return LoweredHead(
        label=op.label,
        layer=layer,
        index=index,
        coldness=c,
        leak_bound=(n + 1) * math.exp(-c / 2),
        w_q=w_q,
        w_k=w_k,
        w_v=w_v,
        w_o=w_o,
    )


def _atom_weights(atom, c: float, rows: Mapping[Dim, int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Query and key matrices whose product is c * relation on the atom's one-hots.

    Column j pairs a set of query values with a set of key values, all of whose
    pairs the relation selects (a biclique); every selected pair is in exactly one
    column, so a query scores c on the keys it selects and 0 elsewhere
    (`relation_bicliques`).
    """
    query_rows = np.array([rows[Dim(atom.query, v)] for v in atom.query_values], dtype=np.int64)
    key_rows = np.array([rows[Dim(atom.key, v)] for v in atom.key_values], dtype=np.int64)
    bicliques = relation_bicliques(atom.relation)
    w_q = np.zeros((width, len(bicliques)), np.float32)
    w_k = np.zeros((width, len(bicliques)), np.float32)
    for column, (queries, keys) in enumerate(bicliques):
        w_q[query_rows[queries], column] = 1.0
        w_k[key_rows[keys], column] = c
    return w_q, w_k


def relation_bicliques(relation: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The selected (query, key) pairs of a relation [queries, keys] split into bicliques
    (query values x key values, all selected), each pair in exactly one: a column each.

    Stars, one biclique per live value of the side with fewer of them (the other
    side's weights hold the relation's rows or columns), unless the queries' key
    sets are nested (an order: LT, LEQ, GT, GEQ): then a staircase split needs no
    more columns and about n log n weights instead of n^2 / 2 (`_staircase`).
    """
    relation = np.asarray(relation, dtype=bool)
    live_queries = np.flatnonzero(relation.any(axis=1))
    live_keys = np.flatnonzero(relation.any(axis=0))
    if len(live_queries) <= len(live_keys):
        stars = [(np.array([q]), np.flatnonzero(relation[q])) for q in live_queries]
    else:
        stars = [(np.flatnonzero(relation[:, k]), np.array([k])) for k in live_keys]
    stairs = _staircase(relation, live_queries)
    if stairs is not None and len(stairs) <= len(stars) and (
            sum(len(q) + len(k) for q, k in stairs) < sum(len(q) + len(k) for q, k in stars)):
        return stairs
    return stars


def _staircase(relation: np.ndarray, live_queries: np.ndarray):
    """Bicliques of a relation whose queries' key sets form a chain, or None.

    In chain order row i selects the first t_i keys (t rising). The rows of the
    upper half all select the first t_m keys (m the middle row): one biclique; the
    rest of the upper half (keys t_m.., without row m) and the lower half recurse.
    At most one biclique per row; each row and key is in O(log n) of them.
    """
    if not len(live_queries):
        return []
    sets = relation[live_queries]
    order = np.argsort(sets.sum(axis=1), kind="stable")
    rows, sets = live_queries[order], sets[order]
    if not np.all(sets[1:] >= sets[:-1]):
        return None  # not nested
    first = np.argmax(sets, axis=0)  # the first row selecting each key
    selected = sets.any(axis=0)
    keys = np.flatnonzero(selected)[np.argsort(first[selected], kind="stable")]
    t = sets.sum(axis=1)  # row i selects keys[:t[i]]
    bicliques = []
    pending = [(0, len(rows), 0)]  # rows lo..hi-1 still need their keys from k0 on
    while pending:
        lo, hi, k0 = pending.pop()
        if lo >= hi:
            continue
        m = (lo + hi) // 2
        if t[m] > k0:
            bicliques.append((rows[m:hi], keys[k0:t[m]]))
        pending.append((m + 1, hi, int(max(t[m], k0))))
        pending.append((lo, m, k0))
    return sorted(bicliques, key=lambda pair: (int(pair[0][0]), int(pair[1][0])))


# --------------------------------------------------------------------------- MLPs


def _dense_mlp(layer: int, parts: list[MLPPart], layout: ResidualLayout) -> LoweredMLP:
    hidden = sum(part.width for part in parts)
    w_1 = np.zeros((layout.width, hidden), dtype=np.float32)
    w_2 = np.zeros((hidden, layout.width), dtype=np.float32)
    column = 0
    for part in parts:
        for neuron in part.neurons:
            for dim, weight in neuron.w_in:
                w_1[layout.index[dim], column] += weight
            for dim, weight in neuron.w_out:
                w_2[column, layout.index[dim]] += weight
            column += 1
    return LoweredMLP(layer=layer, parts=tuple(parts), w_1=w_1, w_2=w_2)
