"""The batched reference evaluator: one program on a whole batch of same-length inputs.

The coded representation is coded.py, the selector rules batch_selectors.py; this module
holds the run and the SOp rules, in evaluator.py's order.

evaluator.py is the definition of every construct; this module computes the
same values for B inputs of n tokens at once with numpy arrays, so that
verification can check every input of a vocabulary up to millions of inputs.
Differential tests (tests/lang/test_batch_evaluator.py) hold it equal to the scalar
evaluator on every node of every case and of fuzzed programs.

How values are held:
- an SOp is `Coded`: a table of its distinct values and an int array of codes
  [B, n] into it. Distinct means distinct under identity.py (True, 1 and 1.0
  are three entries; None is an entry like any other), so two positions hold
  the same value exactly when they hold the same code;
- a numerical SOp whose values are all floats (or None) is `Numbers`: a float64
  array [B, n] and a None mask;
- a selector is a boolean array [B, q, k] (query first, as in the evaluator);
- `undefined` [B] marks the inputs on which the evaluator raises EvaluationError
  (a categorical Aggregate selecting different values, a function that raises,
  a ConstantSOp of the wrong length). Later values of those rows are
  placeholders; `failure` keeps the label and query position the evaluator's
  error would name.

User functions are called once per distinct argument present in the batch (per
distinct pair for a SequenceMap and a Select predicate), never once per
position. A value that is the same on every input (indices, length, a Select of
indices by indices, anything computed from those alone) is held broadcast over
the batch (an array whose batch stride is 0, see `uniform`) and computed on one
row: `Select(indices, indices, LEQ)` is one n x n matrix, and a numerical mean
over it one matrix product. A numerical mean is an exact integer sum (the values
are checked to be integers times one power of two) divided once. Anything this module cannot vectorise (a numerical mean whose float64 sum
might round, a default that is not a number) falls back, for that node only, to
the scalar evaluator's rule, row by row.

Causal mode is the evaluator's: every selector masked to keys at or before the
query, `length` at position i is i + 1.

Users: verify.py (the expected outputs), safety.py (the search for an input on
which an Aggregate mixes values) and causal.py (the causal-invariance search),
through `by_length` (inputs of any lengths, grouped) and
`first_causal_difference`; each keeps the first-found order of the input-by-input
search it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rasp_compiler.errors import EvaluationError, InvalidInputError
from rasp_compiler.lang import evaluator, rasp
from rasp_compiler.lang.batch_selectors import (
    constant_selector,
    select,
    selector_and,
    selector_not,
    selector_or,
)
from rasp_compiler.lang.coded import (
    DENSE_PAIR_LIMIT,
    Coded,
    CodeTable,
    Numbers,
    SOpValues,
    as_numbers,
    coded_from_objects,
    codes_present,
    numbers_to_coded,
    object_array,
    outputs_differ,
    per_row,
    rows_with,
    uniform,
)
from rasp_compiler.lang.graph import ProgramGraph, build_graph
from rasp_compiler.lang.identity import as_number, identity_key

_EXACT_SCALES = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 52)
_FLOAT_INTEGERS = float(2 ** 53)


# --------------------------------------------------------------------------- result


@dataclass(eq=False)
class BatchEvaluation:
    """Every expression's values on B inputs of n tokens, keyed by label."""

    graph: ProgramGraph
    vocab: tuple  # the token of each id
    ids: np.ndarray  # int [B, n]
    values: dict[str, SOpValues | np.ndarray]
    undefined: np.ndarray  # bool [B]: the evaluator raises EvaluationError on these
    failure_label: np.ndarray  # object [B]: the label the evaluator's error names (or None)
    failure_position: np.ndarray  # int [B]: the query position it names (-1: none)
    causal: bool = False
    _coded: dict[str, Coded] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.graph.output

    @property
    def batch(self) -> int:
        return self.ids.shape[0]

    @property
    def length(self) -> int:
        return self.ids.shape[1]

    def coded(self, label: str) -> Coded:
        """SOp `label` as codes into a table of distinct values (Numbers converted once)."""
        value = self.values[label]
        if isinstance(value, Coded):
            return value
        if label not in self._coded:
            self._coded[label] = numbers_to_coded(value)
        return self._coded[label]

    def tokens(self, b: int) -> tuple:
        return tuple(self.vocab[i] for i in self.ids[b].tolist())

    def lists(self, label: str) -> list:
        """Per input, the value as the scalar evaluator gives it: a list for an SOp, a
        matrix (list of lists of bools) for a selector; undefined inputs included."""
        value = self.values[label]
        if isinstance(value, np.ndarray):
            return value.tolist()
        return value.objects().tolist()

    def row_value(self, label: str, b: int, position: int) -> Any:
        """SOp `label`'s value at input b, position `position` (a selector: that row)."""
        value = self.values[label]
        if isinstance(value, np.ndarray):
            return value[b, position].tolist()
        if isinstance(value, Numbers):
            return None if value.none[b, position] else float(value.values[b, position])
        return value.table[value.codes[b, position]]

    def row(self, b: int) -> dict[str, Any]:
        """Every expression's value on input b, as `evaluate_all(...).values` gives it."""
        out = {}
        for label, value in self.values.items():
            if isinstance(value, np.ndarray):
                out[label] = value[b].tolist()
            elif isinstance(value, Numbers):
                out[label] = [None if none else x for x, none in
                              zip(value.values[b].tolist(), value.none[b].tolist())]
            else:
                out[label] = [value.table[i] for i in value.codes[b].tolist()]
        return out


# --------------------------------------------------------------------------- entry points


def evaluate_batch(expr: rasp.RASPExpr | ProgramGraph, ids, vocab: Sequence, *,
                   causal: bool = False) -> BatchEvaluation:
    """Every expression's values on the inputs `ids` [B, n] (indices into `vocab`).

    `causal=True` masks every selector to keys at or before the query.
    """
    graph = expr if isinstance(expr, ProgramGraph) else build_graph(expr)
    ids = np.asarray(ids)
    if ids.ndim != 2 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise InvalidInputError(
            f"evaluate_batch takes token ids as a 2-D integer array [batch, length], got "
            f"shape {ids.shape} and dtype {ids.dtype}"
        )
    vocab = tuple(vocab)
    if ids.size and (ids.min() < 0 or ids.max() >= len(vocab)):
        raise InvalidInputError(
            f"token ids must be in 0..{len(vocab) - 1} (indices into the vocab {list(vocab)})"
        )
    if ids.shape[1] == 0:
        raise InvalidInputError("evaluate_batch needs inputs of at least one token")
    run = _Run(graph, vocab, ids.astype(np.int64, copy=False), bool(causal))
    return run.evaluate()


def evaluate_inputs(expr: rasp.RASPExpr | ProgramGraph, inputs: Sequence[Sequence], *,
                    causal: bool = False) -> BatchEvaluation:
    """`evaluate_batch` on token sequences of one length (the vocab is what they hold)."""
    inputs = [list(xs) for xs in inputs]
    lengths = {len(xs) for xs in inputs}
    if len(lengths) != 1:
        raise InvalidInputError(
            f"evaluate_inputs takes inputs of one length, got lengths {sorted(lengths)}; "
            f"group them by length first"
        )
    table = CodeTable()
    ids = np.array([[table.add(token) for token in xs] for xs in inputs], dtype=np.int64)
    return evaluate_batch(expr, ids, table.values, causal=causal)


# --------------------------------------------------------------------------- the run


class _Run:
    """One batched evaluation: the nodes in topological order, each by its rule."""

    def __init__(self, graph: ProgramGraph, vocab: tuple, ids: np.ndarray, causal: bool):
        self.graph = graph
        self.causal = causal
        self.batch, self.n = ids.shape
        # Tokens as codes into the vocab with equal-and-same tokens merged.
        table = CodeTable()
        remap = np.array([table.add(token) for token in vocab] or [0], dtype=np.int64)
        self.vocab = vocab
        self.ids = ids
        self.tokens = Coded(tuple(table.values), remap[ids])
        self.undefined = np.zeros(self.batch, dtype=bool)
        self.failure_label = np.full(self.batch, None, dtype=object)
        self.failure_position = np.full(self.batch, -1, dtype=np.int64)
        self.values: dict[str, Any] = {}
        self.coded_cache: dict[str, Coded] = {}
        self.mask = np.tril(np.ones((self.n, self.n), dtype=bool)) if causal else None

    def evaluate(self) -> BatchEvaluation:
        for node in self.graph.exprs():
            value = self.node(node)
            if isinstance(node, rasp.Selector):
                if self.mask is not None:
                    value = per_row(lambda v: v & self.mask, value)
            elif rasp.is_numerical(node):
                value = as_numbers(value)
            self.values[node.label] = value
        return BatchEvaluation(self.graph, self.vocab, self.ids, self.values, self.undefined,
                               self.failure_label, self.failure_position, self.causal,
                               self.coded_cache)

    def node(self, node: rasp.RASPExpr):
        if self.batch == 0:
            return _empty(node, self.n)
        if self.causal and type(node) is rasp.LengthType:
            return Coded(tuple(range(1, self.n + 1)),
                         np.broadcast_to(np.arange(self.n), (self.batch, self.n)))
        rule = rasp.rule_for(_RULES, node)
        if rule is None:
            return self.scalar(node)  # the evaluator says there is no rule: every row raises
        return rule(self, node)

    # ----------------------------------------------------------------- helpers

    def fail(self, rows: np.ndarray, label: str | None = None, position=None) -> None:
        """Mark `rows` (a bool mask [B]) undefined; the first failure of a row is kept."""
        new = rows & ~self.undefined
        if not new.any():
            return
        self.undefined |= new
        if label is not None:
            self.failure_label[new] = label
            self.failure_position[new] = position[new] if position is not None else -1

    def coded(self, sop: rasp.SOp) -> Coded:
        value = self.values[sop.label]
        if isinstance(value, Coded):
            return value
        if sop.label not in self.coded_cache:
            self.coded_cache[sop.label] = numbers_to_coded(value)
        return self.coded_cache[sop.label]

    def call_each(self, f: Callable, args: list[tuple]) -> tuple[list, list[int]]:
        """f(*a) for each argument tuple; (results, indices of the calls that raised)."""
        results, failed = [], []
        for i, a in enumerate(args):
            try:
                results.append(f(*a))
            except Exception:  # user code: the evaluator reports it as undefined
                results.append(None)
                failed.append(i)
        return results, failed

    def scalar(self, node: rasp.RASPExpr):
        """The node by the scalar evaluator's own rule, row by row (the fallback)."""
        rule = evaluator._CAUSAL_RULES.get(type(node)) if self.causal else None
        try:
            rule = rule or evaluator._rule_for(node)
        except EvaluationError:
            self.fail(np.ones(self.batch, dtype=bool))
            return _empty_like(node, self.batch, self.n)
        children = [self.lists_of(child) for child in node.children]
        inputs = [self.tokens.table[i] for i in self.tokens.codes[0].tolist()]  # length only
        out = []
        failed = np.zeros(self.batch, dtype=bool)
        labels: dict[int, tuple] = {}
        for b in range(self.batch):
            if self.undefined[b]:
                out.append(None)
                continue
            try:
                out.append(rule(node, inputs, *(rows[b] for rows in children)))
            except EvaluationError as error:
                failed[b] = True
                labels[b] = (error.label, error.position)
                out.append(None)
        if labels:
            new = failed & ~self.undefined
            self.undefined |= new
            for b, (label, position) in labels.items():
                if label is not None:
                    self.failure_label[b] = label
                    self.failure_position[b] = -1 if position is None else position
        if isinstance(node, rasp.Selector):
            matrix = np.zeros((self.batch, self.n, self.n), dtype=bool)
            for b, rows in enumerate(out):
                if rows is not None:
                    matrix[b] = rows
            return matrix
        objects = np.empty((self.batch, self.n), dtype=object)
        for b, row in enumerate(out):
            if row is not None:
                objects[b, :] = object_array(row)
        return coded_from_objects(objects)

    def lists_of(self, expr: rasp.RASPExpr) -> list:
        value = self.values[expr.label]
        if isinstance(value, np.ndarray):
            return value.tolist()
        return value.objects().tolist()


def _empty(node, n: int):
    return _empty_like(node, 0, n)


def _empty_like(node, batch: int, n: int):
    if isinstance(node, rasp.Selector):
        return np.zeros((batch, n, n), dtype=bool)
    return Coded((None,), np.zeros((batch, n), dtype=np.int64))


# --------------------------------------------------------------------------- SOps


def _tokens(run: _Run, node) -> Coded:
    return run.tokens


def _indices(run: _Run, node) -> Coded:
    return Coded(tuple(range(run.n)), np.broadcast_to(np.arange(run.n), (run.batch, run.n)))


def _length(run: _Run, node) -> Coded:
    return Coded((run.n,), np.zeros((run.batch, run.n), dtype=np.int64))


def _full(run: _Run, node: rasp.Full) -> Coded:
    return Coded((node.fill,), np.zeros((run.batch, run.n), dtype=np.int64))


def _constant_sop(run: _Run, node: rasp.ConstantSOp) -> Coded:
    n = run.n
    if node.check_length and len(node.value) != n:
        run.fail(np.ones(run.batch, dtype=bool))
        return Coded((None,), np.zeros((run.batch, n), dtype=np.int64))
    row = list(node.value[:n]) + [None] * (n - len(node.value))
    table = CodeTable()
    codes = np.array([table.add(v) for v in row], dtype=np.int64)
    return Coded(tuple(table.values), np.broadcast_to(codes, (run.batch, n)))


def _map(run: _Run, node: rasp.Map) -> SOpValues:
    inner = run.coded(node.inner)
    used = codes_present(inner.codes, len(inner.table))
    arguments = [inner.table[i] for i in used]
    calls = [i for i, x in enumerate(arguments) if x is not None]
    results, failed = run.call_each(node.f, [(arguments[i],) for i in calls])
    out = CodeTable()
    lookup = np.zeros(max(len(inner.table), 1), dtype=np.int64)
    for i, x in zip(used, arguments):
        if x is None:
            lookup[i] = out.add(None)
    for j, result in zip(calls, results):
        lookup[used[j]] = out.add(result)
    if failed:
        bad = np.zeros(len(inner.table), dtype=bool)
        bad[used[[calls[j] for j in failed]]] = True
        run.fail(rows_with(inner.codes, bad))
    return _coded(out, per_row(lambda c: lookup[c], inner.codes))


def _sequence_map(run: _Run, node: rasp.SequenceMap) -> SOpValues:
    if (isinstance(node, rasp.LinearSequenceMap) and rasp.is_numerical(node)
            and isinstance(run.values[node.fst.label], Numbers)
            and isinstance(run.values[node.snd.label], Numbers)
            and all(_plain_number(f) for f in (node.fst_fac, node.snd_fac))):
        x, y = run.values[node.fst.label], run.values[node.snd.label]
        a, b = float(node.fst_fac), float(node.snd_fac)
        with np.errstate(all="ignore"):  # inf as Python gives it, without a warning
            total = per_row(lambda u, v: a * u + b * v, x.values, y.values)
        none = per_row(np.logical_or, x.none, y.none)
        return Numbers(per_row(lambda n, t: np.where(n, 0.0, t), none, total), none)
    fst, snd = run.coded(node.fst), run.coded(node.snd)
    width = len(snd.table)
    pairs = per_row(lambda f, s: f * width + s, fst.codes, snd.codes)
    if len(fst.table) * width <= DENSE_PAIR_LIMIT:
        used = codes_present(pairs, len(fst.table) * width)
        inverse = None
    else:
        used, inverse = np.unique(pairs.ravel(), return_inverse=True)
    arguments = [(fst.table[p // width], snd.table[p % width]) for p in used.tolist()]
    calls = [i for i, (x, y) in enumerate(arguments) if x is not None and y is not None]
    results, failed = run.call_each(node.f, [arguments[i] for i in calls])
    out = CodeTable()
    codes_of_used = np.zeros(len(used), dtype=np.int64)
    none_code = None
    for i, (x, y) in enumerate(arguments):
        if x is None or y is None:
            none_code = out.add(None) if none_code is None else none_code
            codes_of_used[i] = none_code
    for j, result in zip(calls, results):
        codes_of_used[j] = out.add(result)
    if inverse is None:
        lookup = np.zeros(max(len(fst.table) * width, 1), dtype=np.int64)
        lookup[used] = codes_of_used
        codes = per_row(lambda p: lookup[p], pairs)
    else:
        codes = codes_of_used[inverse.reshape(pairs.shape)]
    if failed:
        bad_pairs = used[[calls[j] for j in failed]]
        run.fail(np.isin(pairs, bad_pairs).any(axis=1))
    return _coded(out, codes)


def _coded(table: CodeTable, codes: np.ndarray) -> Coded:
    """A rule's result; held uniform when it has one value (e.g. a Map of the length)."""
    if len(table.values) <= 1:
        return Coded(tuple(table.values) or (None,), np.broadcast_to(np.int64(0), codes.shape))
    return Coded(tuple(table.values), codes)


def _plain_number(value) -> bool:
    return type(value) in (int, float, bool) and float(value) == value


def _selector_width(run: _Run, node: rasp.SelectorWidth) -> Coded:
    widths = per_row(lambda s: s.sum(axis=2, dtype=np.int64), run.values[node.selector.label])
    return Coded(tuple(range(run.n + 1)), widths)


def _aggregate(run: _Run, node: rasp.Aggregate) -> SOpValues:
    if rasp.is_numerical(node):
        return _numerical_aggregate(run, node)
    selector = run.values[node.selector.label]  # [B, q, k]
    sop = run.coded(node.sop)
    size = len(sop.table)
    keys = sop.codes[:, None, :]
    low = np.where(selector, keys, size).min(axis=2)
    high = np.where(selector, keys, -1).max(axis=2)
    chosen = high >= 0
    mixed = chosen & (low != high)
    if mixed.any():
        rows = mixed.any(axis=1)
        run.fail(rows, node.label, np.argmax(mixed, axis=1))
    table = CodeTable(sop.table)
    default = table.add(node.default)
    return Coded(tuple(table.values), np.where(chosen, np.minimum(low, size - 1), default))


def _numerical_aggregate(run: _Run, node: rasp.Aggregate) -> SOpValues:
    default = as_number(0 if node.default is None else node.default)
    if type(default) is not float:
        return run.scalar(node)  # a default that is not a number: the scalar rule
    selector = run.values[node.selector.label]
    source = run.values[node.sop.label]
    if isinstance(source, Numbers):  # 0.0 where None
        values, bad = source.values, source.none
        distinct = source.coded.table if source.coded is not None else ()
        table = np.array([0.0 if v is None else v for v in distinct], dtype=np.float64)
    else:
        table = np.zeros(len(source.table), dtype=np.float64)  # 0.0 where not a number
        not_number = np.zeros(len(source.table), dtype=bool)
        for i, v in enumerate(source.table):
            if not isinstance(v, Real):
                not_number[i] = True
                continue
            try:
                number = float(v)
            except OverflowError:
                return run.scalar(node)
            if number != v:
                return run.scalar(node)  # an int float64 cannot hold: exact rule
            table[i] = number
        values, bad = table[source.codes], not_number[source.codes]
    # Every value is an integer times 2^-scale (the table's scale holds for the values
    # drawn from it), so the sums are integer sums: exact, in any order, and computed
    # without BLAS (whose threads fight the verification forward's for the cores).
    scale = _exact_scale(table, run.n) if len(table) else None
    scale = _exact_scale(values, run.n) if scale is None else scale
    if scale is None:
        return run.scalar(node)
    integers = (np.ldexp(values, scale) if scale else values).astype(np.int64)
    if uniform(selector):  # one matrix for every input: [B, k] @ [k, q]
        matrix = np.ascontiguousarray(selector[0].T, dtype=np.int64)
        if bad.any():
            picked_bad = (bad.astype(np.int64) @ matrix) > 0
            if picked_bad.any():
                run.fail(picked_bad.any(axis=1))
        counts = matrix.sum(axis=0)
        sums = integers @ matrix
    else:
        picked_bad = (selector & bad[:, None, :]).any(axis=2)
        if picked_bad.any():
            run.fail(picked_bad.any(axis=1))
        counts = selector.sum(axis=2)
        sums = np.matmul(selector.astype(np.int64), integers[:, :, None])[..., 0]
    with np.errstate(all="ignore"):
        sums = np.ldexp(sums, -scale) if scale else sums.astype(np.float64)
        means = sums / np.maximum(counts, 1) + 0.0
    out = np.where(counts > 0, means, default)  # + 0.0 above: an exact mean is never -0.0
    return Numbers(out, np.zeros(out.shape, dtype=bool))


def _exact_scale(values: np.ndarray, terms: int) -> int | None:
    """A power of two 2^scale that makes every value an integer with every sum of up to
    `terms` of them below 2^53 in magnitude (so exact in float64 and int64), or None."""
    if values.size == 0:
        return 0
    if not np.isfinite(values).all():
        return None
    largest = float(np.abs(values).max())
    if largest == 0.0:
        return 0
    for scale in _EXACT_SCALES:
        if largest * 2.0 ** scale * terms >= _FLOAT_INTEGERS:
            return None
        scaled = np.ldexp(values, scale)
        if np.array_equal(scaled, np.floor(scaled)):
            return scale
    return None


_RULES: Mapping[type, Callable[[_Run, Any], Any]] = {
    rasp.TokensType: _tokens,
    rasp.IndicesType: _indices,
    rasp.LengthType: _length,
    rasp.Full: _full,
    rasp.ConstantSOp: _constant_sop,
    rasp.Map: _map,
    rasp.SequenceMap: _sequence_map,
    rasp.SelectorWidth: _selector_width,
    rasp.Aggregate: _aggregate,
    rasp.Select: select,
    rasp.ConstantSelector: constant_selector,
    rasp.SelectorAnd: selector_and,
    rasp.SelectorOr: selector_or,
    rasp.SelectorNot: selector_not,
}


# --------------------------------------------------------------------------- many inputs


def by_length(inputs: Sequence[Sequence], vocab: Sequence) -> list[tuple[np.ndarray, np.ndarray]]:
    """Token sequences of `vocab` grouped by length: (their places in `inputs`, their
    token ids [B, n]) per length, shortest first. A token must be a vocab token itself
    (identity.py)."""
    index: dict = {}
    for i, token in enumerate(vocab):
        index.setdefault(identity_key(token), i)
    groups: dict[int, tuple[list[int], list[list[int]]]] = {}
    for place, xs in enumerate(inputs):
        try:
            row = [index[identity_key(token)] for token in xs]
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"input {place} ({list(xs)!r}) holds a token that is not in the vocab {list(vocab)}"
            ) from None
        places, rows = groups.setdefault(len(row), ([], []))
        places.append(place)
        rows.append(row)
    return [(np.array(places, dtype=np.int64), np.array(rows, dtype=np.int64).reshape(len(rows), n))
            for n, (places, rows) in sorted(groups.items())]


def first_causal_difference(graph: ProgramGraph, ids: np.ndarray, vocab: Sequence,
                            places: np.ndarray, masked: BatchEvaluation | None = None):
    """(place, (input, position, ordinary value, causal value)) for the first input (by
    place) on which the program's output differs between its ordinary and its causal
    meaning, both defined (evaluator.causal_invariance's rule); None if none does.
    `masked`: the causal evaluation of these inputs, if made already."""
    masked = masked if masked is not None else evaluate_batch(graph, ids, vocab, causal=True)
    ordinary = evaluate_batch(graph, ids, vocab, causal=False)
    differs = outputs_differ(ordinary.values[graph.output], masked.values[graph.output])
    differs &= (~ordinary.undefined & ~masked.undefined)[:, None]
    rows = np.flatnonzero(differs.any(axis=1))
    if not len(rows):
        return None
    row = int(rows[np.argmin(places[rows])])
    position = int(np.argmax(differs[row]))
    return int(places[row]), (masked.tokens(row), position,
                              ordinary.row_value(graph.output, row, position),
                              masked.row_value(graph.output, row, position))
