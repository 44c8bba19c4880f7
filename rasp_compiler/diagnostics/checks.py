"""Diagnostics: what every part of a compiled model does, and checks that it does exactly that.

Over 600 lines on purpose for now: layout, pattern checks and the two read-backs share one
run-and-evaluate path; it is split by job in issue 24's layered package, which moves every
module in one step with the weights unchanged.

- `layout(model)`: per layer, each head (the selector it implements, the SOps its
  query, key and value sides read, the SOp it writes) and each MLP part (the ops
  it computes, fused ones listed, its neurons and outputs); where every node of
  the program lives; depth against the lower bound. Text, JSON, short repr.
- `residual_map(model)`: each SOp's dimensions, and which sublayer writes and
  which read it.
- `check_patterns(model, inputs)`: every head's attention pattern against the
  exact normalised selector matrix from the evaluator (BOS column included).
- `read_back(model, inputs)`: every SOp decoded from the residual right after the
  sublayer that writes it, against the evaluator; the first divergence is the bug.
- `raw_read_back(model, inputs)`: the same SOps' raw residual dimensions, not decoded,
  against the exact encoding of the evaluator's value (one-hot within 1e-3, numbers
  within verification's tolerance), from the sublayer that writes them to the end.

Axis names: b input, h head, q query position, k key position (0 is BOS).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from rasp_compiler.errors import EvaluationError, UnknownNameError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.lang.identity import ValueMap, identity_key
from rasp_compiler.model.encoding import readout_numbers
from rasp_compiler.model.hooks import Slot, hook
from rasp_compiler.model.records import CompilationRecord, require_compilation
from rasp_compiler.verify.checker import ATOL, RAW_TOLERANCE, RTOL, values_match

DEFAULT_PATTERN_TOLERANCE = 1e-3


def sublayer_name(time: int) -> str:
    """'embeddings', 'layer 0 attention', 'layer 0 MLP', ... for a schedule time."""
    return Slot.at(time).name


def residual_hook(time: int) -> str:
    """The cache entry holding the residual right after sublayer `time`."""
    return Slot.at(time).residual_after


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class NodePlace:
    """Where one node of the RASP program lives in the model."""

    label: str
    kind: str  # SOp / selector class name
    place: str  # "embedding", "head", "mlp", "linear form", "folded", "selector", "unused"
    where: str  # a human-readable location


@dataclass(frozen=True)
class ModelLayout:
    depth: int
    lower_bound: int
    layers: tuple[dict, ...]
    nodes: tuple[NodePlace, ...]

    def node(self, label: str) -> NodePlace:
        for place in self.nodes:
            if place.label == label:
                return place
        raise UnknownNameError(f"no node {label!r} in {self!r}'s program; have "
                               f"{[place.label for place in self.nodes]}")

    def to_json(self) -> str:
        return json.dumps(
            {"depth": self.depth, "lower_bound": self.lower_bound, "layers": list(self.layers),
             "nodes": [asdict(n) for n in self.nodes]}, indent=1, default=str)

    def __repr__(self) -> str:
        heads = [len(layer["heads"]) for layer in self.layers]
        return f"ModelLayout(depth={self.depth}, lower_bound={self.lower_bound}, heads={heads})"

    def _repr_html_(self) -> str:
        from rasp_compiler.model.html import layout_html

        return layout_html(self)

    def __str__(self) -> str:
        lines = [f"depth {self.depth} (lower bound {self.lower_bound})"]
        for layer in self.layers:
            lines.append(f"layer {layer['index']}")
            if not layer["heads"]:
                lines.append("  attention: (empty)")
            for head in layer["heads"]:
                lines.append(
                    f"  {head['name']} {head['kind']:<9} {head['writes']:<18} <- {head['expression']}")
                lines.append(
                    f"  {'':4} query {', '.join(head['queries']) or '-'}; key "
                    f"{', '.join(head['keys']) or '-'}; value {', '.join(head['values']) or 'bos'}; "
                    f"coldness {head['coldness']:.1f}")
            if not layer["mlp"]:
                lines.append("  mlp: (empty)")
            for part in layer["mlp"]:
                lines.append(
                    f"  mlp[{part['start']}:{part['stop']}] {part['construction']:<16} "
                    f"{', '.join(part['units']) or '-'} -> {', '.join(part['outputs']) or '-'}")
        lines.append("nodes")
        width = max((len(n.label) for n in self.nodes), default=4)
        for node in self.nodes:
            lines.append(f"  {node.label:<{width}}  {node.kind:<17} {node.place:<11} {node.where}")
        return "\n".join(lines)


def layout(model) -> ModelLayout:
    """The model's layer plan and where each node of the program lives."""
    layers = []
    places: dict[str, tuple[str, str]] = {}
    counted: dict[str, list[str]] = {}  # SelectorWidth -> the heads that count for it
    for layer in model.info.layers:
        heads = []
        for head in layer.heads:
            heads.append({
                "name": head.name, "kind": head.kind, "writes": head.label,
                "source": head.source, "selector": head.selector,
                "expression": head.expression, "queries": list(head.queries),
                "keys": list(head.keys), "values": list(head.values),
                "coldness": head.coldness, "key_size": head.key_size,
                "value_size": head.value_size,
            })
            where = f"{head.name} (layer {layer.index} attention)"
            if head.kind == "width":
                counted.setdefault(head.source, []).append(head.name)
            else:
                places.setdefault(head.source, ("head", where))
            places.setdefault(head.selector, ("selector", f"selector of {where}"))
        parts = []
        for part in layer.mlp:
            parts.append({
                "construction": part.construction, "units": list(part.units),
                "reads": list(part.leaves), "outputs": list(part.outputs),
                "start": part.start, "stop": part.stop,
            })
            for unit in part.units:
                mlp = f"layer {layer.index} MLP [{part.start}:{part.stop}] ({part.construction})"
                if unit in counted:
                    places.setdefault(unit, ("head+mlp", f"counted by {', '.join(counted[unit])}, "
                                                         f"decoded in {mlp}"))
                else:
                    places.setdefault(unit, ("mlp", mlp))
        layers.append({"index": layer.index, "heads": heads, "mlp": parts,
                       "mlp_hidden": layer.mlp_hidden})
    nodes = []
    record = model.compilation  # a loaded model has no program: its nodes are unknown
    if record is not None:
        ops, live = record.ops, record.schedule.live
        graph = record.graph
        parents = _selector_parents(model, record)
        for label in graph.order:
            expr = graph.expr(label)
            if label in places:
                place, where = places[label]
            elif label in counted:  # a width whose decoding is a free form (numerical)
                place, where = "head", f"counted by {', '.join(counted[label])}"
            elif label in ops.embeddings:
                place, where = "embedding", f"written by the {ops.embeddings[label].by} embedding"
            elif label in ops.forms and label in live:
                place, where = "linear form", f"free: {ops.forms[label]}"
            elif label in ops.folded and label not in live:
                heads = ", ".join(ops.folded[label])
                place, where = "folded", f"folded into the tables of {heads}"
            elif isinstance(expr, rasp.Selector) and label in parents:
                place, where = "selector", f"part of {parents[label]}"
            else:
                place, where = "unused", "not needed by the output"
            nodes.append(NodePlace(label, type(expr).__name__, place, where))
    return ModelLayout(model.depth, model.lower_bound, tuple(layers), tuple(nodes))


def _selector_parents(model, record: CompilationRecord) -> dict[str, str]:
    """Sub-selectors of composite selectors that reach heads, mapped to their root."""
    out: dict[str, str] = {}
    for head_layer in model.info.layers:
        for head in head_layer.heads:
            if head.selector not in record.graph.graph:
                continue
            stack = [record.graph.expr(head.selector)]
            while stack:
                expr = stack.pop()
                for child in expr.children:
                    if isinstance(child, rasp.Selector):
                        out.setdefault(child.label, head.selector)
                        stack.append(child)
    return out


def head_to_selector(model) -> dict[str, str]:
    return {head.name: head.selector for layer in model.info.layers for head in layer.heads}


def selector_to_heads(model) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for layer in model.info.layers:
        for head in layer.heads:
            out.setdefault(head.selector, []).append(head.name)
    return out


# --------------------------------------------------------------------------- residual map


@dataclass(frozen=True)
class ResidualEntry:
    owner: str
    start: int
    stop: int
    values: tuple  # the value of each dimension (numerical: ("number",))
    written_by: str
    read_by: tuple[str, ...]


@dataclass(frozen=True)
class ResidualMap:
    width: int
    entries: tuple[ResidualEntry, ...]

    def __str__(self) -> str:
        lines = [f"residual stream: {self.width} dimensions"]
        for e in self.entries:
            shown = ", ".join(str(v) for v in e.values[:8]) + (", ..." if len(e.values) > 8 else "")
            lines.append(f"  [{e.start}:{e.stop}] {e.owner}: {shown}")
            lines.append(f"      written by {e.written_by}; read by {', '.join(e.read_by) or '-'}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"width": self.width, "entries": [asdict(e) for e in self.entries]},
                          indent=1, default=str)


def residual_map(model) -> ResidualMap:
    readers: dict[str, list[str]] = {}
    forms = {} if model.compilation is None else model.compilation.ops.forms
    writers: dict[str, str] = {"one": "embeddings (every position)", "bos": "embeddings (BOS)"}
    for layer in model.info.layers:
        for head in layer.heads:
            writers[head.label] = f"{head.name} (layer {layer.index} attention)"
            for role, sops in (("query", head.queries), ("key", head.keys), ("value", head.values)):
                for sop in sops:
                    readers.setdefault(sop, []).append(f"{head.name} {role}")
        for part in layer.mlp:
            for out in part.outputs:
                writers.setdefault(out, f"layer {layer.index} MLP ({part.construction})")
            for leaf in part.leaves:
                sops = forms[leaf].sops() if leaf in forms else {leaf}
                for sop in sops:
                    readers.setdefault(sop, []).append(f"layer {layer.index} MLP")
    if model.output in model.readouts:
        for index in model.readouts[model.output].indices:
            readers.setdefault(model.layout.dims[index].sop, []).append("decoder")
    entries = []
    for owner, (start, stop) in model.layout.ranges().items():
        dims = model.layout.dims[start:stop]
        values = tuple("number" if d.is_numerical else d.value for d in dims)
        written = writers.get(owner, "embeddings")
        entries.append(ResidualEntry(owner, start, stop, values, written,
                                     tuple(dict.fromkeys(readers.get(owner, [])))))
    return ResidualMap(model.layout.width, tuple(entries))


# --------------------------------------------------------------------------- pattern check


@dataclass(frozen=True)
class HeadCheck:
    head: str  # L{layer}H{index}
    label: str
    selector: str
    max_deviation: float
    min_margin: float  # smallest logit gap between intended and other keys
    max_bos_leak: float  # largest BOS weight where BOS should get none
    passed: bool
    worst_input: tuple | None
    worst_query: int | None  # 1-based token position (0 = BOS)


@dataclass(frozen=True)
class PatternReport:
    tolerance: float
    heads: tuple[HeadCheck, ...]

    @property
    def passed(self) -> bool:
        return all(h.passed for h in self.heads)

    def failed(self) -> list[HeadCheck]:
        return [h for h in self.heads if not h.passed]

    def __str__(self) -> str:
        lines = [f"attention pattern check (tolerance {self.tolerance:g}): "
                 f"{'PASS' if self.passed else 'FAIL'}"]
        for h in self.heads:
            verdict = "pass" if h.passed else (
                f"FAIL at input {list(h.worst_input)}, query position {h.worst_query}")
            lines.append(f"  {h.head} {h.label:<18} max dev {h.max_deviation:.2e}  margin "
                         f"{h.min_margin:7.2f}  BOS leak {h.max_bos_leak:.1e}  {verdict}")
        return "\n".join(lines)


def ideal_pattern(kind: str, matrix: np.ndarray, length: int,
                  bos_share: float = 1.0) -> np.ndarray:
    """The exact attention pattern [T, T] a head implementing `matrix` ([n, n]) should have.

    Row 0 (BOS query) attends to BOS. An Aggregate spreads evenly over the selected
    keys, or puts everything on BOS when none is selected; a SelectorWidth gives BOS
    `bos_share` times what each selected key gets (`AttentionOp.bos_share`, widths.py).
    Padding positions stay zero.
    """
    n = matrix.shape[0]
    pattern = np.zeros((length, length))
    pattern[0, 0] = 1.0
    for q in range(n):
        selected = np.flatnonzero(matrix[q]) + 1
        if kind == "width":
            pattern[q + 1, 0] = bos_share / (len(selected) + bos_share)
            pattern[q + 1, selected] = 1.0 / (len(selected) + bos_share)
        elif len(selected):
            pattern[q + 1, selected] = 1.0 / len(selected)
        else:
            pattern[q + 1, 0] = 1.0
    return pattern


def head_matrix(record: CompilationRecord, label: str, evaluation) -> np.ndarray:
    """The exact boolean selection [n, n] of head `label` on one evaluated input."""
    op = record.ops.attention[label]
    n = len(evaluation.inputs)
    whole = (op.selector in evaluation.values
             and label in (op.source, f"{op.source}.attn"))
    if whole:
        return np.array(evaluation[op.selector], dtype=bool).reshape(n, n)
    matrix = np.ones((n, n), dtype=bool)
    for atom in op.atoms:
        q_index = ValueMap((v, i) for i, v in enumerate(atom.query_values))  # 0 is not 0.0
        k_index = ValueMap((v, i) for i, v in enumerate(atom.key_values))
        queries = _values_of(atom.query, evaluation)
        keys = _values_of(atom.key, evaluation)
        for q in range(n):
            for k in range(n):
                i, j = q_index.get(queries[q]), k_index.get(keys[k])
                matrix[q, k] &= i is not None and j is not None and bool(atom.relation[i, j])
    return matrix


@dataclass(frozen=True)
class PatternStats:
    """How one head's pattern on one input compares with its ideal pattern."""

    max_deviation: float
    worst_query: int  # the query row (0 = BOS) with the largest deviation
    min_margin: float  # inf where every key of every row is intended
    max_bos_leak: float


def pattern_stats(ideal: np.ndarray, got: np.ndarray, logits: np.ndarray) -> PatternStats:
    """Deviation, logit margin (intended keys against the rest) and BOS leak (BOS weight
    where the ideal gives BOS none) of one head on one input; all arrays [T, T]."""
    deviation = np.abs(got - ideal)
    worst_query = int(np.unravel_index(np.argmax(deviation), deviation.shape)[0])
    margin, leak = np.inf, 0.0
    for q in range(ideal.shape[0]):
        intended = ideal[q] > 0
        if (~intended).any():
            margin = min(margin, float(logits[q][intended].min() - logits[q][~intended].max()))
        if ideal[q, 0] == 0:
            leak = max(leak, float(got[q, 0]))
    return PatternStats(float(deviation.max()), worst_query, margin, leak)


def _values_of(label: str, evaluation) -> list:
    """An SOp's values on an evaluated input (the inputs even when the program never names them)."""
    if label in evaluation.values:
        return evaluation[label]
    if label == "tokens":
        return list(evaluation.inputs)
    if label == "indices":
        return list(range(len(evaluation.inputs)))
    return [None] * len(evaluation.inputs)


def _run_and_evaluate(model, record: CompilationRecord, inputs, backend: str):
    """The inputs as lists, the model's activation cache, and the evaluator's values
    (None for an input on which the program is undefined)."""
    inputs = [list(x) for x in inputs]
    _, cache = model.run_with_cache(inputs, backend=backend)
    evaluations = []
    for xs in inputs:
        try:
            evaluations.append(evaluate_all(record.graph, xs, causal=model.causal))
        except EvaluationError:
            evaluations.append(None)
    return inputs, cache, evaluations


def check_patterns(model, inputs: Sequence[Sequence], tolerance: float = DEFAULT_PATTERN_TOLERANCE,
                   *, backend: str = "jax") -> PatternReport:
    """Compare every head's attention with the exact normalised selector matrix
    (the model run by `backend`, "jax" or "numpy")."""
    record = require_compilation(model, "check_patterns")
    inputs, cache, evaluations = _run_and_evaluate(model, record, inputs, backend)
    checks = []
    for layer in model.info.layers:
        patterns = cache[hook(layer.index, "attn.hook_pattern")]
        scores = cache[hook(layer.index, "attn.hook_attn_scores")]
        for head in layer.heads:
            worst = (0.0, None, None)
            margin, leak = np.inf, 0.0
            for b, (xs, evaluation) in enumerate(zip(inputs, evaluations)):
                if evaluation is None:
                    continue
                length = len(xs) + 1
                matrix = head_matrix(record, head.label, evaluation)
                ideal = ideal_pattern(head.kind, matrix, length,
                                      record.ops.attention[head.label].bos_share)
                stats = pattern_stats(ideal,
                                      patterns[b, head.index, :length, :length],
                                      scores[b, head.index, :length, :length])
                if stats.max_deviation > worst[0]:
                    worst = (stats.max_deviation, tuple(xs), stats.worst_query)
                margin = min(margin, stats.min_margin)
                leak = max(leak, stats.max_bos_leak)
            checks.append(HeadCheck(
                head=head.name, label=head.label, selector=head.selector,
                max_deviation=worst[0], min_margin=margin, max_bos_leak=leak,
                passed=worst[0] <= tolerance,
                worst_input=worst[1] if worst[0] > tolerance else None,
                worst_query=worst[2] if worst[0] > tolerance else None,
            ))
    return PatternReport(tolerance, tuple(checks))


# --------------------------------------------------------------------------- read-back


@dataclass(frozen=True)
class SOpReadBack:
    label: str
    written_after: str  # sublayer name
    positions: int
    mismatches: int
    first: str | None  # the first mismatch, described


@dataclass(frozen=True)
class ReadBackReport:
    sops: tuple[SOpReadBack, ...]
    not_in_residual: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def agrees(self) -> bool:
        return all(s.mismatches == 0 for s in self.sops)

    @property
    def first_divergence(self) -> SOpReadBack | None:
        """The earliest SOp (in execution order) whose read-back disagrees."""
        for sop in self.sops:
            if sop.mismatches:
                return sop
        return None

    def __str__(self) -> str:
        first = self.first_divergence
        lines = ["value read-back: " + ("every SOp agrees with the evaluator" if first is None
                 else f"first divergence: {first.label} after {first.written_after}")]
        for s in self.sops:
            status = "ok" if not s.mismatches else f"{s.mismatches} wrong; first {s.first}"
            lines.append(f"  {s.label:<20} after {s.written_after:<20} {status}")
        for label, why in self.not_in_residual:
            lines.append(f"  {label:<20} not in the residual: {why}")
        return "\n".join(lines)


def read_back(model, inputs: Sequence[Sequence], *, backend: str = "jax") -> ReadBackReport:
    """Decode every SOp right after the sublayer that writes it; compare with the evaluator
    (the model run by `backend`, "jax" or "numpy")."""
    record = require_compilation(model, "read_back")
    inputs, cache, evaluations = _run_and_evaluate(model, record, inputs, backend)
    residuals = {"hook_embed+pos": cache["hook_embed"] + cache["hook_pos_embed"]}
    time = record.schedule.time
    labels = _labels_by_write_time(model, record)
    results = []
    for label in labels:
        hook = residual_hook(time[label])
        residual = residuals[hook] if hook in residuals else cache[hook]
        mismatches, positions, first = 0, 0, None
        for b, (xs, evaluation) in enumerate(zip(inputs, evaluations)):
            if evaluation is None or label not in evaluation.values:
                continue
            got = model.decode(label, residual[b], len(xs))
            categorical = not model.readouts[label].numerical  # 0 is not 0.0 (identity.py)
            for position, (value, expected) in enumerate(zip(got, evaluation[label])):
                positions += 1
                if not values_match(value, expected, categorical=categorical):
                    mismatches += 1
                    if first is None:
                        first = (f"input {xs} position {position}: expected {expected!r}, "
                                 f"got {value!r}")
        results.append(SOpReadBack(label, sublayer_name(time[label]), positions, mismatches, first))
    missing = []
    place = {n.label: n for n in layout(model).nodes}
    for label in record.graph.sops():
        if label not in model.readouts and label in place:
            missing.append((label, place[label].where))
    return ReadBackReport(tuple(results), tuple(missing))


# --------------------------------------------------------------------------- raw read-back


@dataclass(frozen=True)
class SOpRawCheck:
    """How far one SOp's residual dimensions are from the exact encoding of its value."""

    label: str
    written_after: str  # sublayer name
    numerical: bool
    positions: int  # token positions checked (BOS and padding are not)
    max_deviation: float  # categorical: max |dim - one-hot|; numerical: max |read - value|
    over: int  # positions past the bound
    first: str | None  # the first position past the bound, described

    @property
    def passed(self) -> bool:
        return self.over == 0


@dataclass(frozen=True)
class RawReadBackReport:
    tolerance: float  # on a categorical SOp's one-hot dims
    atol: float  # numerical SOps: within atol + rtol * |value|
    rtol: float
    sops: tuple[SOpRawCheck, ...]

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.sops)

    @property
    def max_deviation(self) -> float:
        """The worst deviation of any categorical SOp's one-hot dims."""
        return max((s.max_deviation for s in self.sops if not s.numerical), default=0.0)

    def failed(self) -> list[SOpRawCheck]:
        return [s for s in self.sops if not s.passed]

    def __str__(self) -> str:
        lines = [f"raw read-back (one-hot dims within {self.tolerance:g} of exact, numbers within "
                 f"{self.atol:g} + {self.rtol:g} x |value|): "
                 f"{'PASS' if self.passed else 'FAIL'}"]
        for s in self.sops:
            verdict = "ok" if s.passed else f"{s.over} past the bound; first {s.first}"
            lines.append(f"  {s.label:<20} after {s.written_after:<20} max dev "
                         f"{s.max_deviation:.2e}  {verdict}")
        return "\n".join(lines)


def exact_encoding(readout, values: Sequence) -> np.ndarray:
    """The exact readout columns [n, k] of `values` (a categorical readout: the value's
    one-hot, all zero for None; NaN where a value has no column, which nothing matches).
    Numerical readouts have no columns to compare: use their form (readout_numbers)."""
    columns = {identity_key(value): i for i, value in enumerate(readout.values)}
    exact = np.zeros((len(values), len(readout.indices)))
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            exact[position, columns[identity_key(value)]] = 1.0
        except (KeyError, TypeError):
            exact[position] = np.nan
    return exact


def raw_deviation(readout, columns: np.ndarray, values: Sequence) -> np.ndarray:
    """Per position [n], how far the raw columns [n, k] are from the exact encoding of
    `values`: max |column - one-hot| (categorical; inf for a value with no column), or
    |form - value| (numerical; 0 where the value is None)."""
    columns = np.asarray(columns, dtype=np.float64)
    if readout.numerical:
        expected = np.array([np.nan if v is None else float(v) for v in values])
        deviation = np.abs(readout_numbers(readout, columns) - expected)
        return np.where(np.isnan(expected), 0.0, np.where(np.isnan(deviation), np.inf, deviation))
    exact = exact_encoding(readout, values)
    if not exact.shape[1]:
        return np.zeros(len(values))
    deviation = np.abs(columns - exact).max(axis=1)
    return np.where(np.isnan(deviation), np.inf, deviation)


def raw_read_back(model, inputs: Sequence[Sequence], tolerance: float = RAW_TOLERANCE, *,
                  backend: str = "jax") -> RawReadBackReport:
    """Every SOp's raw residual dimensions at every token position, from right after the
    sublayer that writes it to the end of the model (nothing else writes them), against
    the exact encoding of the evaluator's value: a categorical SOp's one-hot within
    `tolerance`, a numerical one within verification's atol + rtol x |value|. No
    decoding: a model whose one-hots are 0.92 fails here, while the decoder (0.1) and
    read_back accept it."""
    record = require_compilation(model, "raw_read_back")
    inputs, cache, evaluations = _run_and_evaluate(model, record, inputs, backend)
    points = [(0, cache["hook_embed"] + cache["hook_pos_embed"])]
    for layer in range(model.depth):
        points.append((2 * layer + 1, cache[hook(layer, "hook_resid_mid")]))
        points.append((2 * layer + 2, cache[hook(layer, "hook_resid_post")]))
    time = record.schedule.time
    labels = _labels_by_write_time(model, record)
    results = []
    for label in labels:
        readout = model.readouts[label]
        indices = list(readout.indices)
        worst, positions, over, first = 0.0, 0, 0, None
        for b, (xs, evaluation) in enumerate(zip(inputs, evaluations)):
            if evaluation is None or label not in evaluation.values:
                continue
            expected = evaluation[label]
            n = len(xs)
            positions += n
            if readout.numerical:
                sizes = np.array([0.0 if v is None else abs(float(v)) for v in expected])
                allowed = ATOL + RTOL * sizes
            else:
                allowed = np.full(n, float(tolerance))
            past = np.zeros(n, dtype=bool)
            for at, residual in points:
                if at < time[label]:
                    continue
                deviation = raw_deviation(readout, residual[b, 1: n + 1][:, indices], expected)
                worst = max(worst, float(deviation.max()))
                beyond = deviation > allowed
                if beyond.any() and first is None:
                    position = int(np.argmax(beyond))
                    first = (f"input {xs} position {position} after {sublayer_name(at)}: "
                             f"expected {expected[position]!r}, off by "
                             f"{float(deviation[position]):.3g}")
                past |= beyond
            over += int(past.sum())
        results.append(SOpRawCheck(label, sublayer_name(time[label]), readout.numerical,
                                   positions, worst, over, first))
    return RawReadBackReport(float(tolerance), ATOL, RTOL, tuple(results))


def _labels_by_write_time(model, record) -> list[str]:
    """The program's SOps that have a readout, in the order the model writes them."""
    time, graph = record.schedule.time, record.graph.graph
    return sorted((l for l in model.readouts if l in time and l in graph),
                  key=lambda l: (time[l], record.ops.position[l]))
