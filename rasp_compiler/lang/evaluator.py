"""The reference evaluator: the exact meaning of every RASP construct.

The compiled model is checked against this module, position by position, so it
must never pretend an output exists that a transformer cannot produce. Rules
(docs/language.md gives them with examples):

- Select: M[q][k] = predicate(keys[k], queries[q]); an entry whose key or query
  is None (an Aggregate that selected nothing) is False.
- SelectorAnd / SelectorOr / SelectorNot act elementwise.
- Aggregate, numerical: the exact mean of the selected values (computed with
  fractions, then rounded once to a float); `default` (0 when None) if none.
- Aggregate, categorical: the value of the selected positions when they all
  hold the same one; `default` (usually None) if none; an EvaluationError when
  they disagree, since no compiled head can output a mixture of categories.
  "The same" means equal and of one type (True and 1 are a mix: identity.py).
- A numerical SOp's values are floats (True, 1 and 1.0 are all 1.0): one
  residual dimension holds the number, so later functions see what the model sees.
- SelectorWidth: the number of selected keys of each query.
- Map / SequenceMap: the function at each position; None in gives None out.

Evaluation walks the graph bottom-up with no recursion and returns every
intermediate value, because diagnostics compare each SOp with the model.

Causal mode (`causal=True`) is the meaning of a decoder-only model: every
selector is masked to keys at or before the query (M[q][k] is False for k > q)
and `length` at position i is i + 1, so each position's value depends only on
the tokens up to it. docs/language.md explains why this, and not "the output of
the whole program on each prefix", is what a causally masked model computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from numbers import Real
from typing import Any, Callable, Mapping, Sequence

from rasp_compiler.errors import EvaluationError, InvalidInputError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.graph import ProgramGraph, build_graph
from rasp_compiler.lang.identity import as_number, find_clash, same_value

SelectorMatrix = list[list[bool]]
Values = Mapping[str, Any]


@dataclass(frozen=True)
class Evaluation:
    """Every expression's value on one input: SOps give lists, selectors give matrices."""

    inputs: tuple
    output: str
    values: Mapping[str, Any]
    causal: bool = False

    def __getitem__(self, label: str):
        return self.values[label]

    @property
    def output_values(self) -> list:
        return self.values[self.output]


def evaluate(expr: rasp.RASPExpr | ProgramGraph, xs: Sequence[rasp.Value], *,
             causal: bool = False):
    """The value of `expr` on the input `xs` (a list for an SOp, a matrix for a selector).

    `causal=True` masks every selector to keys at or before the query (see module doc).
    """
    return evaluate_all(expr, xs, causal=causal).output_values


def evaluate_all(expr: rasp.RASPExpr | ProgramGraph, xs: Sequence[rasp.Value], *,
                 causal: bool = False) -> Evaluation:
    """The value of `expr` and of every expression it depends on, keyed by label.

    Pass a prebuilt `ProgramGraph` to evaluate many inputs without rebuilding it.
    """
    inputs = tuple(check_input(xs))
    values: dict[str, Any] = {}
    graph = expr if isinstance(expr, ProgramGraph) else build_graph(expr)
    for node in graph.exprs():
        rule = _CAUSAL_RULES.get(type(node)) if causal else None
        if rule is None:
            rule = _rule_for(node)
        value = rule(node, inputs, *(values[child.label] for child in node.children))
        if causal and isinstance(node, rasp.Selector):
            value = _mask_future(value)
        values[node.label] = finish(node, value)
    return Evaluation(inputs=inputs, output=graph.output, values=values, causal=bool(causal))


def check_input(xs: Sequence[rasp.Value]) -> Sequence[rasp.Value]:
    """`xs` if it is a sequence of tokens, else an InvalidInputError."""
    if isinstance(xs, (bytes, bytearray)) or not isinstance(xs, Sequence):
        raise InvalidInputError(
            f"the input must be a sequence of tokens (a list), got {type(xs).__name__} {xs!r}"
        )
    return xs


def finish(expr: rasp.RASPExpr, value: Any) -> Any:
    """A construct's value as the program holds it: a numerical SOp's values are floats
    (one residual dimension holds the number)."""
    if isinstance(expr, rasp.SOp) and rasp.is_numerical(expr):
        return [as_number(v) for v in value]
    return value


def _mask_future(matrix: SelectorMatrix) -> SelectorMatrix:
    """A selector matrix with every key after its query deselected (the causal mask)."""
    return [[selected and k <= q for k, selected in enumerate(row)] for q, row in enumerate(matrix)]


def causal_invariance(expr: rasp.RASPExpr | ProgramGraph, inputs) -> tuple | None:
    """None when the causal meaning equals the bidirectional one on every input given;
    else the first (input, position, bidirectional value, causal value) that differs.

    Inputs on which either evaluation is undefined are skipped.
    """
    graph = expr if isinstance(expr, ProgramGraph) else build_graph(expr)
    for xs in inputs:
        try:
            full = evaluate_all(graph, xs).output_values
            masked = evaluate_all(graph, xs, causal=True).output_values
        except EvaluationError:
            continue
        for position, (a, b) in enumerate(zip(full, masked)):
            if not _same(a, b):
                return tuple(xs), position, a, b
    return None


def _same(a: Any, b: Any) -> bool:
    """The same value (identity.py: 0 is not 0.0, nor -0.0), floats within rounding."""
    if isinstance(a, float) and isinstance(b, float) and a != b:
        return abs(a - b) <= 1e-12 * max(1.0, abs(a))
    return same_value(a, b)


def _rule_for(expr: rasp.RASPExpr) -> Callable[..., Any]:
    rule = rasp.rule_for(RULES, expr)
    if rule is not None:
        return rule
    raise EvaluationError(f"{expr.label}: no evaluation rule for {type(expr).__name__}")


# --------------------------------------------------------------------------- SOps
#
# One rule per construct: rule(expr, xs, *values of expr.children, in order). The walk
# above and rasp.DefaultRASPEvaluator (tracr's recursive structure) both call these.


def _tokens(expr, xs):
    return list(xs)


def _indices(expr, xs):
    return list(range(len(xs)))


def _length(expr, xs):
    return [len(xs)] * len(xs)


def _full(expr: rasp.Full, xs):
    return [expr.fill] * len(xs)


def _constant_sop(expr: rasp.ConstantSOp, xs):
    if expr.check_length and len(expr.value) != len(xs):
        raise EvaluationError(
            f"{expr.label}: Constant len {len(expr.value)} doesn't match input len {len(xs)}: "
            f"this ConstantSOp has {len(expr.value)} values but the input has {len(xs)} "
            f"tokens; pass an input of that length or build it with check_length=False"
        )
    n = len(xs)
    return list(expr.value[:n]) + [None] * (n - len(expr.value))


def _apply(expr: rasp.RASPExpr, f: Callable, *args):
    try:
        return f(*args)
    except Exception as exc:  # user code: report which node and which input broke it
        shown = args[0] if len(args) == 1 else args
        raise EvaluationError(
            f"{expr.label}: the function of this {type(expr).__name__} raised "
            f"{type(exc).__name__}({exc}) on input {shown!r}"
        ) from exc


def _map(expr: rasp.Map, xs, inner):
    return [None if x is None else _apply(expr, expr.f, x) for x in inner]


def _sequence_map(expr: rasp.SequenceMap, xs, fst, snd):
    return [None if x is None or y is None else _apply(expr, expr.f, x, y)
            for x, y in zip(fst, snd)]


def _selector_width(expr: rasp.SelectorWidth, xs, matrix):
    return [sum(row) for row in matrix]


def exact_mean(selected: Sequence[Real]) -> float:
    """The mean rounded once from the exact rational value (order-independent)."""
    return float(sum(Fraction(x) for x in selected) / len(selected))


def _aggregate(expr: rasp.Aggregate, xs, matrix, sop_values):
    numerical = rasp.is_numerical(expr)
    out = []
    for q, row in enumerate(matrix):
        chosen = [k for k, selected in enumerate(row) if selected]
        if not chosen:
            out.append((0 if expr.default is None else expr.default) if numerical else expr.default)
            continue
        picked = [sop_values[k] for k in chosen]
        if numerical:
            rasp.check_averaged(expr, picked, f"at query position {q} it selected", EvaluationError)
            out.append(exact_mean(picked))
        else:
            distinct = list(dict.fromkeys(picked))
            if len(distinct) == 1 and len(picked) > 1:
                clash = find_clash(picked)  # True and 1 are equal, but not one value
                if clash is not None:
                    distinct = [picked[i] for i in clash]
            if len(distinct) > 1:
                raise EvaluationError(
                    f"{expr.label}: this categorical Aggregate selects positions {chosen} at "
                    f"query position {q}, which hold different values {distinct} of "
                    f"{expr.sop.label}; a categorical aggregate must select one value (make "
                    f"the selector pick one position, or make it numerical to average)",
                    label=expr.label,
                    position=q,
                )
            out.append(distinct[0])
    return out


# --------------------------------------------------------------------------- selectors


def _select(expr: rasp.Select, xs, keys, queries) -> SelectorMatrix:
    matrix = []
    for query in queries:
        row = []
        for key in keys:
            if key is None or query is None:
                row.append(False)
                continue
            try:
                row.append(bool(expr.predicate(key, query)))
            except Exception as exc:
                raise EvaluationError(
                    f"{expr.label}: the predicate raised {type(exc).__name__}({exc}) on "
                    f"key={key!r}, query={query!r}"
                ) from exc
        matrix.append(row)
    return matrix


def _constant_selector(expr: rasp.ConstantSelector, xs) -> SelectorMatrix:
    n = len(xs)
    if expr.check_length and (len(expr.value) != n or any(len(row) != n for row in expr.value)):
        raise EvaluationError(
            f"{expr.label}: Constant len {len(expr.value)} doesn't match input len {n}: this "
            f"ConstantSelector must be {n} x {n} for this input (or built with "
            f"check_length=False)"
        )
    rows = [list(row[:n]) + [False] * (n - len(row)) for row in expr.value[:n]]
    return rows + [[False] * n for _ in range(n - len(rows))]


def _selector_and(expr: rasp.SelectorAnd, xs, a, b) -> SelectorMatrix:
    return [[x and y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]


def _selector_or(expr: rasp.SelectorOr, xs, a, b) -> SelectorMatrix:
    return [[x or y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]


def _selector_not(expr: rasp.SelectorNot, xs, inner) -> SelectorMatrix:
    return [[not x for x in row] for row in inner]


def _causal_length(expr, xs):
    """`length` as a causal model computes it: the number of tokens seen so far."""
    return [i + 1 for i in range(len(xs))]


_CAUSAL_RULES: dict[type, Callable[..., Any]] = {
    rasp.LengthType: _causal_length,
}

RULES: dict[type, Callable[..., Any]] = {
    rasp.TokensType: _tokens,
    rasp.IndicesType: _indices,
    rasp.LengthType: _length,
    rasp.Full: _full,
    rasp.ConstantSOp: _constant_sop,
    rasp.Map: _map,
    rasp.SequenceMap: _sequence_map,
    rasp.SelectorWidth: _selector_width,
    rasp.Aggregate: _aggregate,
    rasp.Select: _select,
    rasp.ConstantSelector: _constant_selector,
    rasp.SelectorAnd: _selector_and,
    rasp.SelectorOr: _selector_or,
    rasp.SelectorNot: _selector_not,
}
