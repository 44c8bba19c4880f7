"""The batched evaluator's selector rules: a Select as a boolean array [B, q, k] (query
first), its predicate called once per distinct (key, query) pair present, numerical
comparisons vectorised, sparse tables for large value sets; and the Boolean combinations.
batch_evaluator.py's run dispatches to them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rasp_compiler.lang import rasp
from rasp_compiler.lang.coded import DENSE_PAIR_LIMIT, Coded, codes_present, per_row

if TYPE_CHECKING:
    from rasp_compiler.lang.batch_evaluator import _Run


def select(run: _Run, node: rasp.Select) -> np.ndarray:
    keys, queries = run.coded(node.keys), run.coded(node.queries)
    width = len(keys.table)
    used_keys = codes_present(keys.codes, width)
    used_queries = codes_present(queries.codes, len(queries.table))
    if len(used_keys) * len(used_queries) > DENSE_PAIR_LIMIT:
        return sparse_select(run, node, keys, queries)
    # The predicate on every used (query, key) pair: [used queries, used keys].
    holds = compare_numbers(node.predicate, [keys.table[k] for k in used_keys.tolist()],
                             [queries.table[q] for q in used_queries.tolist()])
    if holds is None:
        pairs = np.stack(np.meshgrid(used_keys, used_queries), axis=-1).reshape(-1, 2)
        holds = call_predicate(run, node, keys, queries, pairs).reshape(
            len(used_queries), len(used_keys))
    if holds.all() or not holds.any():  # e.g. TRUE: one matrix for every input
        return np.broadcast_to(bool(holds.all()), (run.batch, run.n, run.n))
    relation = np.zeros((len(queries.table), width), dtype=bool)
    relation[np.ix_(used_queries, used_keys)] = holds
    # one flat take: about twice as fast as indexing the 2-D relation by two arrays
    return per_row(lambda q, k: np.take(relation.ravel(), (q * width)[:, :, None]
                                         + k[:, None, :]), queries.codes, keys.codes)


def call_predicate(run: _Run, node: rasp.Select, keys: Coded, queries: Coded,
                    pairs: np.ndarray) -> np.ndarray:
    """The Select's predicate on each (key code, query code) pair [P, 2]: False where
    either value is None (never selected); the inputs holding a pair on which it raises
    are undefined."""
    predicate = node.predicate
    arguments = [(keys.table[k], queries.table[q]) for k, q in pairs.tolist()]
    live = [i for i, (key, query) in enumerate(arguments) if key is not None and query is not None]
    results, failed = run.call_each(lambda key, query: bool(predicate(key, query)),
                                    [arguments[i] for i in live])
    holds = np.zeros(len(pairs), dtype=bool)
    holds[[i for i, result in zip(live, results) if result]] = True
    if failed:
        rows = np.zeros(run.batch, dtype=bool)
        for j in failed:
            k, q = pairs[live[j]]
            rows |= (keys.codes == k).any(axis=1) & (queries.codes == q).any(axis=1)
        run.fail(rows)
    return holds


_NUMPY_COMPARISONS = {
    rasp.Comparison.EQ: np.equal, rasp.Comparison.LT: np.less,
    rasp.Comparison.LEQ: np.less_equal, rasp.Comparison.GT: np.greater,
    rasp.Comparison.GEQ: np.greater_equal, rasp.Comparison.NEQ: np.not_equal,
}


def compare_numbers(predicate, keys: list, queries: list) -> np.ndarray | None:
    """A Comparison of plain numbers, as numpy arrays [queries, keys] (False where
    either is None), when float64 compares them as Python does: every value an int of
    at most 2^53 in magnitude or a float. None otherwise (then it is called per pair)."""
    compare = _NUMPY_COMPARISONS.get(predicate)
    if compare is None:
        return None
    arrays = []
    for values in (keys, queries):
        if not all(v is None or type(v) is float or (type(v) is int and abs(v) <= 2 ** 53)
                   for v in values):
            return None
        arrays.append((np.array([0.0 if v is None else v for v in values], dtype=np.float64),
                       np.array([v is not None for v in values], dtype=bool)))
    (k, k_live), (q, q_live) = arrays
    return compare(k[None, :], q[:, None]) & k_live[None, :] & q_live[:, None]


def sparse_select(run: _Run, node: rasp.Select, keys: Coded, queries: Coded) -> np.ndarray:
    """A Select over more used pairs than DENSE_PAIR_LIMIT: the predicate per distinct
    (query, key) pair present in the batch."""
    width = len(keys.table)
    combined = queries.codes[:, :, None] * width + keys.codes[:, None, :]
    unique, inverse = np.unique(combined.ravel(), return_inverse=True)
    pairs = np.stack([unique % width, unique // width], axis=-1)
    selected = call_predicate(run, node, keys, queries, pairs)
    return selected[inverse.reshape(run.batch, run.n, run.n)]


def constant_selector(run: _Run, node: rasp.ConstantSelector) -> np.ndarray:
    n = run.n
    if node.check_length and (len(node.value) != n or any(len(row) != n for row in node.value)):
        run.fail(np.ones(run.batch, dtype=bool))
        return np.zeros((run.batch, n, n), dtype=bool)
    matrix = np.zeros((n, n), dtype=bool)
    for q, row in enumerate(node.value[:n]):
        matrix[q, : min(len(row), n)] = row[:n]
    return np.broadcast_to(matrix, (run.batch, n, n))


def selector_and(run: _Run, node: rasp.SelectorAnd) -> np.ndarray:
    return per_row(np.logical_and, run.values[node.fst.label], run.values[node.snd.label])


def selector_or(run: _Run, node: rasp.SelectorOr) -> np.ndarray:
    return per_row(np.logical_or, run.values[node.fst.label], run.values[node.snd.label])


def selector_not(run: _Run, node: rasp.SelectorNot) -> np.ndarray:
    return per_row(np.logical_not, run.values[node.inner.label])
