"""Atoms: each Select or ConstantSelector as a boolean relation between two value sets.

An atom says which values of one categorical SOp, read on the query side, select
which values of another, read on the key side. A head reads one-hot dimensions,
so Maps of categorical SOps are folded into the atom: it reads the Map's input
and applies the function to the value table (`fold`). Atoms are built from the
program graph and its value sets alone; the selector chooser (selectors.py) and
the rewriter both use `AtomBuilder` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from rasp_compiler.compiler.values import ValueSets
from rasp_compiler.errors import InvalidProgramError, UnsupportedExpressionError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.graph import ProgramGraph


@dataclass(frozen=True, eq=False)
class Atom:
    """One Select after folding: query position q selects key k iff relation[qv][kv]."""

    select: str  # the Select's label as written (several joined by '+' once merged)
    query: str  # SOp whose dims the query side reads (one-hot, or a clause feature)
    key: str  # SOp whose dims the key side reads
    query_values: tuple
    key_values: tuple
    relation: np.ndarray  # bool [len(query_values), len(key_values)]
    folded: tuple[str, ...] = ()  # labels of the Maps folded into this atom

    def __post_init__(self) -> None:
        # Frozen means frozen: the relation is a read-only copy, so no stage can change
        # an atom another stage holds.
        relation = np.array(self.relation, dtype=bool)
        relation.setflags(write=False)
        object.__setattr__(self, "relation", relation)

    def describe(self) -> str:
        return f"{self.select}: {self.key} (keys) vs {self.query} (queries)"

    @property
    def pair(self) -> tuple[str, str]:
        return (self.query, self.key)

    def name(self) -> str:
        return f"{self.select}[{self.key}|{self.query}]"

    def with_relation(self, relation: np.ndarray, select: str | None = None) -> "Atom":
        return Atom(select or self.select, self.query, self.key, self.query_values,
                    self.key_values, relation, self.folded)


@dataclass(frozen=True)
class Folded:
    """An SOp seen through the Maps of categorical SOps above it (see `AtomBuilder.fold`)."""

    base: str  # the SOp a head reads
    mapping: Callable[[Any], Any]  # the folded Maps composed; None stays None
    maps: tuple[str, ...]  # labels of the folded Maps, outermost first


@dataclass(frozen=True)
class AtomBuilder:
    """Atoms of a program's selectors, from its graph and value sets."""

    graph: ProgramGraph
    value_sets: ValueSets

    def values(self, label: str) -> tuple:
        """The values of an SOp as heads read them: the vocab in order for tokens,
        0..max_seq_len-1 for indices (read by ConstantSelectors even when unused)."""
        if label == "tokens":
            return self.value_sets.vocab
        if label == "indices":
            return tuple(range(self.value_sets.max_seq_len))
        return self.value_sets[label]

    def nullable(self, label: str) -> bool:
        return None in self.values(label)

    def is_numerical(self, label: str) -> bool:
        return label in self.graph.graph and rasp.is_numerical(self.graph.expr(label))

    def fold(self, sop: rasp.SOp) -> Folded:
        """Follow Maps of categorical SOps down to the SOp a head can read directly."""
        functions = []
        maps = []
        expr = sop
        while isinstance(expr, rasp.Map) and rasp.is_categorical(expr.inner):
            functions.append(expr.f)
            maps.append(expr.label)
            expr = expr.inner

        def mapping(value, functions=tuple(reversed(functions))):
            for f in functions:
                if value is None:
                    return None
                value = f(value)
            return value

        return Folded(expr.label, mapping, tuple(maps))

    def atom(self, selector: rasp.Selector) -> Atom:
        """The atom of a Select or a ConstantSelector."""
        if isinstance(selector, rasp.Select):
            return self._select(selector)
        if isinstance(selector, rasp.ConstantSelector):
            return self._constant(selector)
        raise UnsupportedExpressionError(
            f"{selector.label}: no compilation rule for selector type {type(selector).__name__}"
        )

    def all_true(self, select: str) -> Atom:
        """Every token selects every token (`length` is the width of this selector)."""
        vocab = self.value_sets.vocab
        return Atom(select, "tokens", "tokens", vocab, vocab,
                    np.ones((len(vocab),) * 2, dtype=bool))

    def _select(self, select: rasp.Select) -> Atom:
        key, query = self.fold(select.keys), self.fold(select.queries)
        for role, folded, written in (("keys", key, select.keys),
                                      ("queries", query, select.queries)):
            if self.is_numerical(folded.base):
                raise UnsupportedExpressionError(
                    f"{select.label}: its {role} {written.label} are numerical, but a Select "
                    f"compares categories; write rasp.categorical(rasp.Map(lambda x: x, "
                    f"{written.label})) and select on that"
                )
        key_values = tuple(v for v in self.values(key.base) if v is not None)
        query_values = tuple(v for v in self.values(query.base) if v is not None)
        relation = _relation(select, [query.mapping(q) for q in query_values],
                             [key.mapping(k) for k in key_values])
        return Atom(select.label, query.base, key.base, query_values, key_values, relation,
                    key.maps + query.maps)

    def _constant(self, selector: rasp.ConstantSelector) -> Atom:
        n = self.value_sets.max_seq_len
        relation = np.zeros((n, n), dtype=bool)
        for q, row in enumerate(selector.value[:n]):
            for k, selected in enumerate(row[:n]):
                relation[q, k] = bool(selected)
        positions = tuple(range(n))
        return Atom(selector.label, "indices", "indices", positions, positions, relation)


_COMPARISONS = {
    rasp.Comparison.EQ: np.equal, rasp.Comparison.NEQ: np.not_equal,
    rasp.Comparison.LT: np.less, rasp.Comparison.LEQ: np.less_equal,
    rasp.Comparison.GT: np.greater, rasp.Comparison.GEQ: np.greater_equal,
}


def _relation(select: rasp.Select, queries: list, keys: list) -> np.ndarray:
    """relation[i][j] = predicate(keys[j], queries[i]), False where either is None.

    Comparisons of plain numbers are vectorised (sorting 64 tokens by tie-broken
    keys compares 4,000 x 4,000 values); any other predicate is called per pair.
    """
    predicate = select.predicate
    if isinstance(predicate, rasp.Comparison) and _plain_numbers(queries) and _plain_numbers(keys):
        if predicate is rasp.Comparison.TRUE:
            return np.ones((len(queries), len(keys)), dtype=bool)
        if predicate is rasp.Comparison.FALSE:
            return np.zeros((len(queries), len(keys)), dtype=bool)
        q = np.array(queries, dtype=np.float64)[:, None]
        k = np.array(keys, dtype=np.float64)[None, :]
        return _COMPARISONS[predicate](k, q)  # predicate(key, query)
    relation = np.zeros((len(queries), len(keys)), dtype=bool)
    for i, qv in enumerate(queries):
        if qv is None:
            continue
        for j, kv in enumerate(keys):
            if kv is None:
                continue
            try:
                relation[i, j] = bool(predicate(kv, qv))
            except Exception as exc:
                raise InvalidProgramError(
                    f"{select.label}: the predicate raised {type(exc).__name__}({exc}) on "
                    f"key={kv!r}, query={qv!r}, values its inputs can take"
                ) from exc
    return relation


def _plain_numbers(values: list) -> bool:
    """All ints/floats/bools small enough to compare exactly as float64."""
    return all(
        isinstance(v, (int, float)) and abs(v) < 2**53 and v == v for v in values
    )
