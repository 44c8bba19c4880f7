"""The RASP language: tracr's public API, so a tracr program runs here by changing one import.

    from rasp_compiler import rasp      # instead of: from tracr.rasp import rasp

An expression is either an SOp (a sequence operation: one value per position)
or a Selector (a boolean query-by-key matrix). Expressions are plain Python
objects forming a DAG; `rasp_compiler.graph` turns one into a graph and
`rasp_compiler.evaluator` gives every construct its exact meaning. This module
only builds expressions and checks their arguments.

Differences from tracr, all deliberate:
- Labels come from a counter per kind (`map_1`, `map_2`, `aggregate_1`, ...), so
  adding a Select does not rename every Map; `.named()` overrides the label.
- `&`, `|`, `~` on selectors always build SelectorAnd/Or/Not (tracr folds some
  of them into one Select at construction); the compiler normalises them later
  and its report shows the expression as written.
- Bad arguments raise `InvalidProgramError` that names the expression, not `assert`.
"""

from __future__ import annotations

import abc
import enum
import itertools
import numbers
from collections import defaultdict
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar, Union

from rasp_compiler.errors import EvaluationError, InvalidProgramError, describe_values

Value = Union[None, int, float, str, bool]
SelectorValue = list[list[bool]]
RASPExprT = TypeVar("RASPExprT", bound="RASPExpr")
SOpT = TypeVar("SOpT", bound="SOp")
T = TypeVar("T")

_NAME_KEY = "name"
_ENCODING_KEY = "encoding"


# --------------------------------------------------------------------------- predicates


class Comparison(enum.Enum):
    """A two-place predicate for Select, called as `predicate(key, query)`."""

    EQ = "=="
    LT = "<"
    LEQ = "<="
    GT = ">"
    GEQ = ">="
    NEQ = "!="
    TRUE = "True"
    FALSE = "False"

    def __call__(self, key: Value, query: Value) -> bool:
        if key is None or query is None:
            raise EvaluationError(
                f"Comparison.{self.name} was called with key={key!r}, query={query!r}; "
                "predicates are not defined on None (the evaluator treats None as never "
                "selected): test for None before calling the comparison"
            )
        return _COMPARISONS[self](key, query)

    @property
    def symbol(self) -> str:
        return self.value

    def negated(self) -> "Comparison":
        """The comparison that is true exactly where this one is false."""
        return _NEGATIONS[self]


_COMPARISONS: dict[Comparison, Callable[[Any, Any], bool]] = {
    Comparison.EQ: lambda key, query: key == query,
    Comparison.LT: lambda key, query: key < query,
    Comparison.LEQ: lambda key, query: key <= query,
    Comparison.GT: lambda key, query: key > query,
    Comparison.GEQ: lambda key, query: key >= query,
    Comparison.NEQ: lambda key, query: key != query,
    Comparison.TRUE: lambda key, query: True,
    Comparison.FALSE: lambda key, query: False,
}

_NEGATIONS = {
    Comparison.EQ: Comparison.NEQ,
    Comparison.NEQ: Comparison.EQ,
    Comparison.LT: Comparison.GEQ,
    Comparison.GEQ: Comparison.LT,
    Comparison.GT: Comparison.LEQ,
    Comparison.LEQ: Comparison.GT,
    Comparison.TRUE: Comparison.FALSE,
    Comparison.FALSE: Comparison.TRUE,
}


class Encoding(enum.Enum):
    """How an SOp lives in the residual stream: one-hot per value, or one number."""

    CATEGORICAL = "categorical"
    NUMERICAL = "numerical"


# --------------------------------------------------------------------------- expressions

_label_counters: defaultdict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))
_unique_ids = itertools.count(1)


class RASPExpr(abc.ABC):
    """Base of every RASP expression: annotations (name, encoding, ...) and children."""

    kind: str = "expr"  # the default-label prefix, e.g. "aggregate" gives "aggregate_3"

    def __init__(self) -> None:
        self.unique_id: int = next(_unique_ids)
        self._annotations: Mapping[str, Any] = MappingProxyType(self._default_annotations())

    def _default_annotations(self) -> dict[str, Any]:
        return {_NAME_KEY: f"{self.kind}_{next(_label_counters[self.kind])}"}

    @property
    @abc.abstractmethod
    def children(self) -> Sequence["RASPExpr"]:
        """Direct dependencies of this expression, in a fixed order."""

    @property
    def annotations(self) -> Mapping[str, Any]:
        return self._annotations

    @annotations.setter
    def annotations(self, annotations: Mapping[str, Any]) -> None:
        self._annotations = MappingProxyType({**self._annotations, **annotations})

    @property
    def name(self) -> str:
        return self._annotations[_NAME_KEY]

    @property
    def label(self) -> str:
        """The unique, stable identifier of this expression in a program."""
        return self.name

    def named(self: RASPExprT, name: str) -> RASPExprT:
        """Sets this expression's label (in place, as tracr does) and returns it."""
        if not isinstance(name, str) or not name:
            raise InvalidProgramError(
                f"{self.label}: .named() takes a non-empty string, got {name!r}"
            )
        return annotate(self, name=name)

    def annotated(self: RASPExprT, **annotations: Any) -> RASPExprT:
        return annotate(self, **annotations)

    def __call__(self, xs: Sequence[Value]):
        """Evaluates this expression on `xs` with the reference evaluator."""
        from rasp_compiler.evaluator import evaluate

        return evaluate(self, xs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


def annotate(expr: RASPExprT, **annotations: Any) -> RASPExprT:
    """Adds annotations to `expr` in place (tracr semantics) and returns it."""
    if not isinstance(expr, RASPExpr):
        raise InvalidProgramError(f"annotate() expects a RASP expression, got {expr!r}")
    name = annotations.get(_NAME_KEY, expr.label)
    if isinstance(expr, _Primitive) and name != expr.kind:
        raise InvalidProgramError(
            f"{expr.kind}: the program inputs tokens, indices and length keep their labels "
            f"(every {type(expr).__name__}() is the one input {expr.kind!r}); to name it, name "
            f"a copy: rasp.Map(lambda x: x, rasp.{expr.kind}).named({name!r})"
        )
    if _ENCODING_KEY in annotations:
        if not isinstance(expr, SOp):
            raise InvalidProgramError(
                f"{expr.label}: only SOps have an encoding; {type(expr).__name__} is a selector"
            )
        if not isinstance(annotations[_ENCODING_KEY], Encoding):
            raise InvalidProgramError(
                f"{expr.label}: encoding must be rasp.Encoding.CATEGORICAL or NUMERICAL, "
                f"got {annotations[_ENCODING_KEY]!r}"
            )
    expr.annotations = {**expr.annotations, **annotations}
    return expr


def _check_sop(owner: str, role: str, value: Any) -> None:
    if not isinstance(value, SOp):
        hint = " Wrap a constant with rasp.Full(value)." if not isinstance(value, RASPExpr) else ""
        raise InvalidProgramError(
            f"{owner}: {role} must be an SOp, got {type(value).__name__} {value!r}.{hint}"
        )


def _check_selector(owner: str, role: str, value: Any) -> None:
    if not isinstance(value, Selector):
        raise InvalidProgramError(
            f"{owner}: {role} must be a Selector (Select, ConstantSelector or a combination), "
            f"got {type(value).__name__} {value!r}"
        )


def _check_hashable(owner: str, role: str, value: Any) -> None:
    """Values become dictionary keys (value sets, one-hot dimensions): they must hash."""
    try:
        hash(value)
    except TypeError:
        raise InvalidProgramError(
            f"{owner}: {role} {value!r} is a {type(value).__name__}, which is not hashable; "
            f"RASP values must be hashable (numbers, strings, bools, None, tuples): write a "
            f"tuple instead of a list"
        ) from None


def _check_function(owner: str, f: Any) -> None:
    if not callable(f) or isinstance(f, RASPExpr):
        raise InvalidProgramError(
            f"{owner}: expected a plain Python function, got {type(f).__name__} {f!r}"
        )


# --------------------------------------------------------------------------- SOps


class SOp(RASPExpr):
    """A sequence operation: one value per input position. Default encoding: categorical."""

    kind = "sop"

    def _default_annotations(self) -> dict[str, Any]:
        return {**super()._default_annotations(), _ENCODING_KEY: Encoding.CATEGORICAL}

    __hash__ = RASPExpr.__hash__  # `==` builds a Map, so hash by identity explicitly

    def __lt__(self, other: Value) -> "SOp":
        return Map(lambda x: x < other, self)

    def __le__(self, other: Value) -> "SOp":
        return Map(lambda x: x <= other, self)

    def __eq__(self, other: Value) -> "SOp":  # type: ignore[override]
        return Map(lambda x: x == other, self)

    def __ne__(self, other: Value) -> "SOp":  # type: ignore[override]
        return Map(lambda x: x != other, self)

    def __gt__(self, other: Value) -> "SOp":
        return Map(lambda x: x > other, self)

    def __ge__(self, other: Value) -> "SOp":
        return Map(lambda x: x >= other, self)

    def __add__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x + y, self, other)
        return Map(lambda x: x + other, self)

    def __radd__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x + y, other, self)
        return Map(lambda x: other + x, self)

    def __sub__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x - y, self, other)
        return Map(lambda x: x - other, self)

    def __rsub__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x - y, other, self)
        return Map(lambda x: other - x, self)

    def __mul__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x * y, self, other)
        return Map(lambda x: x * other, self)

    def __rmul__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x * y, other, self)
        return Map(lambda x: other * x, self)

    def __truediv__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x / y, self, other)
        return Map(lambda x: x / other, self)

    def __rtruediv__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x / y, other, self)
        return Map(lambda x: other / x, self)

    def __invert__(self) -> "SOp":
        return Map(lambda x: not x, self)

    def __and__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x and y, self, other)
        return Map(lambda x: x and other, self)

    def __or__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x or y, self, other)
        return Map(lambda x: x or other, self)

    def __rand__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x and y, other, self)
        return Map(lambda x: other and x, self)

    def __ror__(self, other: Union["SOp", Value]) -> "SOp":
        if isinstance(other, SOp):
            return SequenceMap(lambda x, y: x or y, other, self)
        return Map(lambda x: other or x, self)


class _Primitive(SOp):
    """An input of the program: its label is fixed and it has no children."""

    def _default_annotations(self) -> dict[str, Any]:
        return {_NAME_KEY: self.kind, _ENCODING_KEY: Encoding.CATEGORICAL}

    @property
    def label(self) -> str:
        """Always the kind (as in tracr): every TokensType() is the one input `tokens`."""
        return self.kind

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()

    def __repr__(self) -> str:
        return self.kind


class TokensType(_Primitive):
    """The input tokens."""

    kind = "tokens"


class IndicesType(_Primitive):
    """The position of each token: 0, 1, ..., length - 1."""

    kind = "indices"


class LengthType(_Primitive):
    """The input length at every position (compiled as the width of an all-true selector)."""

    kind = "length"


tokens = TokensType()
indices = IndicesType()
length = LengthType()


class Map(SOp):
    """Applies `f` to the value at each position: Map(lambda x: x + 1, tokens)."""

    kind = "map"

    def __init__(self, f: Callable[[Value], Value], inner: SOp, simplify: bool = True):
        super().__init__()
        _check_function(self.label, f)
        _check_sop(self.label, "the input of Map", inner)
        self.f = f
        self.inner = inner
        if simplify and isinstance(inner, Map):
            # As tracr: Map(f, Map(g, x)) becomes Map(f . g, x).
            inner_f = inner.f
            self.f = lambda x: f(inner_f(x))
            self.inner = inner.inner

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.inner,)


class SequenceMap(SOp):
    """Applies `f` to the pair of values at each position: SequenceMap(f, fst, snd)."""

    kind = "sequence_map"

    def __init__(self, f: Callable[[Value, Value], Value], fst: SOp, snd: SOp):
        super().__init__()
        _check_function(self.label, f)
        _check_sop(self.label, "the first input of SequenceMap", fst)
        _check_sop(self.label, "the second input of SequenceMap", snd)
        self.f = f
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.fst, self.snd)


class LinearSequenceMap(SequenceMap):
    """fst_fac * fst + snd_fac * snd at each position."""

    kind = "linear_sequence_map"

    def __init__(self, fst: SOp, snd: SOp, fst_fac: float, snd_fac: float):
        for name, fac in (("fst_fac", fst_fac), ("snd_fac", snd_fac)):
            if not isinstance(fac, numbers.Real):
                raise InvalidProgramError(
                    f"LinearSequenceMap: {name} must be a number, got {fac!r}"
                )
        super().__init__(lambda x, y: fst_fac * x + snd_fac * y, fst, snd)
        self.fst_fac = fst_fac
        self.snd_fac = snd_fac


class Full(SOp):
    """The constant `fill` at every position."""

    kind = "full"

    def __init__(self, fill: Value):
        super().__init__()
        _check_hashable(self.label, "the fill value", fill)
        self.fill = fill

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()


class ConstantSOp(SOp):
    """A fixed sequence of values (for tests); `check_length` demands len(value) == len(input)."""

    kind = "constant_sop"

    def __init__(self, value: Sequence[Value], check_length: bool = True):
        super().__init__()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise InvalidProgramError(
                f"{self.label}: ConstantSOp takes a list of values, got {value!r}"
            )
        for position, item in enumerate(value):
            _check_hashable(self.label, f"the value at position {position}", item)
        self.value = list(value)
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()


class SelectorWidth(SOp):
    """The number of keys the selector selects, for each query position."""

    kind = "selector_width"

    def __init__(self, selector: "Selector"):
        super().__init__()
        _check_selector(self.label, "the input of SelectorWidth", selector)
        self.selector = selector

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.selector,)


class Aggregate(SOp):
    """For each query, the selected values of `sop`: their mean (numerical) or their
    common value (categorical); `default` where nothing is selected."""

    kind = "aggregate"

    def __init__(self, selector: "Selector", sop: SOp, default: Value = None):
        super().__init__()
        _check_selector(self.label, "the selector of Aggregate", selector)
        _check_sop(self.label, "the values of Aggregate", sop)
        if default is not None and not isinstance(default, (str, bool, numbers.Real)):
            raise InvalidProgramError(
                f"{self.label}: the default must be None, a number, a bool or a string, "
                f"got {type(default).__name__} {default!r}"
            )
        self.selector = selector
        self.sop = sop
        self.default = default

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.selector, self.sop)


# --------------------------------------------------------------------------- selectors


class Selector(RASPExpr):
    """A boolean matrix M[query][key]; combine with `&`, `|`, `~`."""

    kind = "selector"

    def __and__(self, other: "Selector") -> "Selector":
        return SelectorAnd(self, other)

    def __rand__(self, other: "Selector") -> "Selector":
        return SelectorAnd(other, self)

    def __or__(self, other: "Selector") -> "Selector":
        return SelectorOr(self, other)

    def __ror__(self, other: "Selector") -> "Selector":
        return SelectorOr(other, self)

    def __invert__(self) -> "Selector":
        return SelectorNot(self)


class Select(Selector):
    """Selects key position k for query position q where predicate(keys[k], queries[q])."""

    kind = "select"

    def __init__(self, keys: SOp, queries: SOp, predicate: Callable[[Value, Value], bool]):
        super().__init__()
        _check_sop(self.label, "the keys of Select", keys)
        _check_sop(self.label, "the queries of Select", queries)
        if not callable(predicate) or isinstance(predicate, RASPExpr):
            raise InvalidProgramError(
                f"{self.label}: the predicate must be a rasp.Comparison or a function "
                f"(key, query) -> bool, got {predicate!r}"
            )
        self.keys = keys
        self.queries = queries
        self.predicate = predicate

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.keys, self.queries)


class ConstantSelector(Selector):
    """A fixed boolean matrix (for tests); `check_length` demands a square matching the input."""

    kind = "constant_selector"

    def __init__(self, value: SelectorValue, check_length: bool = True):
        super().__init__()
        try:
            self.value = [[bool(x) for x in row] for row in value]
        except TypeError as exc:
            raise InvalidProgramError(
                f"{self.label}: ConstantSelector takes a list of rows of booleans, got {value!r}"
            ) from exc
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()


class SelectorAnd(Selector):
    """Elementwise AND of two selectors."""

    kind = "selector_and"

    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        _check_selector(self.label, "the first input of SelectorAnd", fst)
        _check_selector(self.label, "the second input of SelectorAnd", snd)
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.fst, self.snd)


class SelectorOr(Selector):
    """Elementwise OR of two selectors."""

    kind = "selector_or"

    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        _check_selector(self.label, "the first input of SelectorOr", fst)
        _check_selector(self.label, "the second input of SelectorOr", snd)
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.fst, self.snd)


class SelectorNot(Selector):
    """Elementwise NOT of a selector."""

    kind = "selector_not"

    def __init__(self, inner: Selector):
        super().__init__()
        _check_selector(self.label, "the input of SelectorNot", inner)
        self.inner = inner

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.inner,)


# --------------------------------------------------------------------------- encodings


def numerical(sop: SOpT) -> SOpT:
    """Marks `sop` as numerically encoded (one residual dimension holding the number)."""
    _check_sop("numerical()", "the argument", sop)
    return annotate(sop, encoding=Encoding.NUMERICAL)


def categorical(sop: SOpT) -> SOpT:
    """Marks `sop` as categorically encoded (one residual dimension per value)."""
    _check_sop("categorical()", "the argument", sop)
    return annotate(sop, encoding=Encoding.CATEGORICAL)


def get_encoding(sop: SOp) -> Encoding:
    _check_sop("get_encoding()", "the argument", sop)
    return sop.annotations[_ENCODING_KEY]


def is_numerical(sop: SOp) -> bool:
    return get_encoding(sop) is Encoding.NUMERICAL


def is_categorical(sop: SOp) -> bool:
    return get_encoding(sop) is Encoding.CATEGORICAL


def rule_for(rules: Mapping[type, T], expr: RASPExpr) -> T | None:
    """A stage's rule for `expr`: its class's entry in `rules`, else its nearest base's."""
    for cls in type(expr).__mro__:
        if cls in rules:
            return rules[cls]
    return None


def check_averaged(expr: Aggregate, values: Sequence[Value], where: str,
                   error: type[Exception] = InvalidProgramError) -> None:
    """A numerical Aggregate averages numbers: refuse `values` of its SOp that are not (the
    values it can read, for value sets and the rewriter; those one query selected, for the
    evaluator, which raises its own `error`)."""
    bad = [v for v in values if not isinstance(v, numbers.Real)]
    if bad:
        raise error(
            f"{expr.label}: a numerical Aggregate averages numbers, but {where} "
            f"{describe_values(bad)} of {expr.sop.label}; make the aggregate categorical "
            f"(rasp.categorical) or map the values to numbers first"
        )


def predicate_name(predicate: Callable[..., bool]) -> str:
    """How a predicate prints in layouts and reports: `LT`, or a function's name."""
    if isinstance(predicate, Comparison):
        return predicate.name
    return getattr(predicate, "__name__", type(predicate).__name__)


# --------------------------------------------------------------------------- evaluation


def evaluate(expr: RASPExpr, xs: Sequence[Value]):
    """Evaluates `expr` on the token list `xs` (see rasp_compiler.evaluator)."""
    from rasp_compiler.evaluator import evaluate as _evaluate

    return _evaluate(expr, xs)


class DefaultRASPEvaluator:
    """tracr-compatible evaluator object: `DefaultRASPEvaluator().evaluate(expr, xs)`."""

    def evaluate(self, expr: RASPExpr, xs: Sequence[Value]):
        return evaluate(expr, xs)


__all__ = [
    "Aggregate",
    "Comparison",
    "ConstantSOp",
    "ConstantSelector",
    "DefaultRASPEvaluator",
    "Encoding",
    "Full",
    "IndicesType",
    "LengthType",
    "LinearSequenceMap",
    "Map",
    "RASPExpr",
    "SOp",
    "Select",
    "Selector",
    "SelectorAnd",
    "SelectorNot",
    "SelectorOr",
    "SelectorWidth",
    "SequenceMap",
    "TokensType",
    "Value",
    "annotate",
    "categorical",
    "evaluate",
    "get_encoding",
    "indices",
    "is_categorical",
    "is_numerical",
    "length",
    "numerical",
    "predicate_name",
    "tokens",
]
