"""The RASP language: tracr's public API, so a tracr program runs here by changing one import.

    from rasp_compiler import rasp      # instead of: from tracr.rasp import rasp

One module of over 1,000 lines on purpose. tracr code takes the whole language from one
module (`from tracr.rasp import rasp`, then `rasp.Map`, `rasp.numerical`,
`rasp.DefaultRASPEvaluator`: 34 names in tracr's own code), and tracr's test suite runs
against this module by putting it in `tracr.rasp.rasp`'s place. Its parts also call each
other both ways: the expression classes' operators (`&`, `|`, `~` on selectors, `==`, `+`
on SOps) build folded selectors and Maps, which are those classes, and `expr(xs)` calls the
evaluator, which dispatches on them; split, every part would import the others at its
bottom. It holds definitions only (the meaning of each construct is evaluator.py, graphs
graph.py).

An expression is either an SOp (a sequence operation: one value per position)
or a Selector (a boolean query-by-key matrix). Expressions are plain Python
objects forming a DAG; `rasp_compiler.lang.graph` turns one into a graph and
`rasp_compiler.lang.evaluator` gives every construct its exact meaning. This module
builds expressions, checks their arguments and holds tracr's annotation,
naming and evaluator machinery.

As in tracr: ids are handed out lazily (the first time `unique_id` or an
unnamed expression's `label` is read; graph.build_graph reads them in the order
tracr's compiler does), `annotate`/`.named`/`numerical` return annotated copies,
default annotations are computed on first read from `DEFAULT_ANNOTATORS`, and
`&`, `|`, `~` on Selects fold into one Select where tracr's do.

Differences from tracr, all deliberate (docs/language.md):
- A name the user gives is the label itself (`sort`, not `sort_12`); only
  unnamed expressions get `name_id`. graph.build_graph renames a clash.
- Where a folded selector can keep a `Comparison` exactly (`~Select(k, q, EQ)`
  is `Select(k, q, NEQ)`), it does, because the compiler reads Comparisons.
- Bad arguments raise `InvalidProgramError` that names the expression, not `assert`.
"""

from __future__ import annotations

import abc
import copy as _copy
import enum
import functools
import itertools
import logging
import numbers
from collections.abc import Mapping as _MappingABC
from typing import Any, Callable, Dict, Iterator, Mapping, Protocol, Sequence, TypeVar, Union

from rasp_compiler.errors import (
    EvaluationError,
    InvalidProgramError,
    UnknownNameError,
    describe_values,
)

Value = Union[None, int, float, str, bool]
SelectorValue = list[list[bool]]
NumericValue = Union[int, float]
RASPExprT = TypeVar("RASPExprT", bound="RASPExpr")
SOpT = TypeVar("SOpT", bound="SOp")
T = TypeVar("T")

_NAME_KEY = "name"
_ENCODING_KEY = "encoding"

_logger = logging.getLogger(__name__)


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




# --------------------------------------------------------------------------- annotations


class Annotator(Protocol):
    """Computes the default value of one annotation for an expression that lacks it."""

    def __call__(self, expr: "RASPExpr") -> Any:
        ...


# key -> annotator, called the first time an expression's missing annotation is read (the
# result is kept). tracr's two, `name` and `encoding`, are added below; add your own.
DEFAULT_ANNOTATORS: Dict[str, Annotator] = {}


class _Annotations(_MappingABC):
    """An expression's annotations: read-only; a missing key is filled in, on first read,
    by its annotator in DEFAULT_ANNOTATORS (and kept)."""

    __slots__ = ("_expr", "_values", "_label")

    def __init__(self, expr: "RASPExpr", values: Mapping[str, Any] = ()):
        self._expr = expr
        self._values: dict[str, Any] = dict(values)
        self._label: str | None = None  # the expression's label, once computed

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            pass
        annotator = DEFAULT_ANNOTATORS.get(key)
        if annotator is None:
            raise UnknownNameError(
                f"no annotation {key!r}: this expression has {sorted(self._values)} and "
                f"DEFAULT_ANNOTATORS provides defaults for {sorted(DEFAULT_ANNOTATORS)}; add it "
                f"with rasp.annotate(expr, {key}=...) or register an annotator in "
                f"rasp.DEFAULT_ANNOTATORS[{key!r}]"
            )
        value = self._values[key] = annotator(self._expr)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"annotations({self._values!r})"


# --------------------------------------------------------------------------- expressions


class RASPExpr(abc.ABC):
    """Base of every RASP expression: annotations (name, encoding, ...) and children.

    `unique_id` comes from the class-wide counter `RASPExpr._ids` the first time it
    is read (reset it, `rasp.RASPExpr._ids = itertools.count(1)`, for reproducible
    labels). Building an expression reads no id.
    """

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self._annotations = _Annotations(self)

    @property
    @abc.abstractmethod
    def children(self) -> Sequence["RASPExpr"]:
        """Direct dependencies of this expression, in a fixed order."""

    @property
    def annotations(self) -> Mapping[str, Any]:
        """This expression's annotations; missing ones come from DEFAULT_ANNOTATORS."""
        try:
            return self._annotations
        except AttributeError:  # a subclass that set attributes before RASPExpr.__init__
            self._annotations = _Annotations(self)
            return self._annotations

    @annotations.setter
    def annotations(self, annotations: Mapping[str, Any]) -> None:
        """Replaces every annotation (as tracr does; `annotate` keeps the old ones)."""
        _check_annotations(self, annotations)
        self._annotations = _Annotations(self, annotations)

    @property
    def name(self) -> str:
        return self.annotations[_NAME_KEY]

    @functools.cached_property
    def unique_id(self) -> int:
        """A number no other expression has, drawn from `RASPExpr._ids` on first read."""
        return next(self._ids)

    def copy(self: RASPExprT) -> RASPExprT:
        """A shallow copy (the same children) with the same annotations and a new id."""
        new = _copy.copy(self)
        new.__dict__.pop("unique_id", None)
        return new

    def __copy__(self: RASPExprT) -> RASPExprT:
        # copy.copy keeps the id (the compiler's internal copies keep their labels);
        # the copy gets annotations of its own, so defaults are computed for it.
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._annotations = _Annotations(new, self.annotations._values)
        return new

    @property
    def is_named(self) -> bool:
        """Whether this expression's name was given (by named/annotate) rather than its
        default: a given name is its label, a default name gets the id appended."""
        name = self.annotations[_NAME_KEY]
        annotator = DEFAULT_ANNOTATORS.get(_NAME_KEY)
        return annotator is None or name != annotator(self)

    @property
    def label(self) -> str:
        """The expression's identifier in a program: the name the user gave it, or for an
        unnamed one `{default name}_{unique_id}`, as tracr labels it (`map_12`)."""
        annotations = self.annotations
        if annotations._label is None:
            annotations._label = (self.name if self.is_named
                                  else f"{self.name}_{self.unique_id}")
        return annotations._label

    def named(self: RASPExprT, name: str) -> RASPExprT:
        """A copy of this expression named `name` (this one is unchanged, as in tracr)."""
        return annotate(self, name=name)

    def annotated(self: RASPExprT, **annotations: Any) -> RASPExprT:
        """A copy of this expression with `annotations` added."""
        return annotate(self, **annotations)

    def __call__(self, xs: Sequence[Value]):
        """Evaluates this expression on `xs` with the reference evaluator."""
        from rasp_compiler.lang.evaluator import evaluate

        return evaluate(self, xs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe(self)!r})"


def describe(expr: RASPExpr) -> str:
    """How messages name `expr` without drawing an id for it (ids follow tracr's compile
    order, so merely printing an expression must not assign one): its label when it has
    one already, else `map (no id yet)`."""
    if isinstance(expr, _Primitive) or "unique_id" in vars(expr) or expr.is_named:
        return expr.label
    return f"{expr.name} (no id yet)"


def annotate(expr: RASPExprT, **annotations: Any) -> RASPExprT:
    """A copy of `expr` with `annotations` added to its own (which win on a clash), as in
    tracr; `expr` itself is never changed."""
    if not isinstance(expr, RASPExpr):
        raise InvalidProgramError(
            f"annotate() takes a RASP expression (an SOp or a Selector), got "
            f"{type(expr).__name__} {expr!r}"
        )
    _check_annotations(expr, annotations)
    new = expr.copy()
    new._annotations = _Annotations(new, {**expr.annotations, **annotations})
    return new


def _check_annotations(expr: RASPExpr, annotations: Mapping[str, Any]) -> None:
    if _NAME_KEY in annotations:
        name = annotations[_NAME_KEY]
        if not isinstance(name, str) or not name:
            raise InvalidProgramError(
                f"{describe(expr)}: a name must be a non-empty string, got {name!r}; "
                f"write .named('some_name')"
            )
    if _ENCODING_KEY in annotations:
        if not isinstance(expr, SOp):
            raise InvalidProgramError(
                f"{describe(expr)}: only SOps have an encoding; {type(expr).__name__} is a "
                f"selector (annotate the SOps it reads instead)"
            )
        if not isinstance(annotations[_ENCODING_KEY], Encoding):
            raise InvalidProgramError(
                f"{describe(expr)}: encoding must be rasp.Encoding.CATEGORICAL or NUMERICAL, "
                f"got {annotations[_ENCODING_KEY]!r}; use rasp.numerical(sop) or "
                f"rasp.categorical(sop)"
            )


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

    _label: str = "input"

    @property
    def label(self) -> str:
        """Always the input's own (as in tracr): every TokensType() is the one input
        `tokens`, named or not."""
        return self._label

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()

    def __repr__(self) -> str:
        return self._label


class TokensType(_Primitive):
    """The input tokens."""

    _label = "tokens"


class IndicesType(_Primitive):
    """The position of each token: 0, 1, ..., length - 1."""

    _label = "indices"


class LengthType(_Primitive):
    """The input length at every position (compiled as the width of an all-true selector)."""

    _label = "length"


tokens = TokensType()
indices = IndicesType()
length = LengthType()


class Map(SOp):
    """Applies `f` to the value at each position: Map(lambda x: x + 1, tokens)."""

    def __init__(self, f: Callable[[Value], Value], inner: SOp, simplify: bool = True):
        super().__init__()
        _check_function("Map", f)
        _check_sop("Map", "the input of Map", inner)
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

    def __init__(self, f: Callable[[Value, Value], Value], fst: SOp, snd: SOp):
        super().__init__()
        owner = type(self).__name__
        _check_function(owner, f)
        _check_sop(owner, f"the first input of {owner}", fst)
        _check_sop(owner, f"the second input of {owner}", snd)
        if fst is snd:
            _logger.warning(
                "%s reads %s as both of its inputs; a Map says the same more simply: "
                "write rasp.Map(lambda x: f(x, x), sop) instead", owner, describe(fst))
        self.f = f
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.fst, self.snd)


class LinearSequenceMap(SequenceMap):
    """fst_fac * fst + snd_fac * snd at each position."""

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

    def __init__(self, fill: Value):
        super().__init__()
        _check_hashable("Full", "the fill value", fill)
        self.fill = fill

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()


def sop_not(sop: SOp) -> SOp:
    """`not` at each position: Map(lambda x: not x, sop)."""
    _check_sop("sop_not()", "the argument", sop)
    return Map(lambda x: not x, sop)


class ConstantSOp(SOp):
    """A fixed sequence of values (for tests); `check_length` demands len(value) == len(input)."""

    def __init__(self, value: Sequence[Value], check_length: bool = True):
        super().__init__()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise InvalidProgramError(
                f"ConstantSOp: takes a list of values, got {type(value).__name__} {value!r}; "
                f"write rasp.ConstantSOp([...])"
            )
        for position, item in enumerate(value):
            _check_hashable("ConstantSOp", f"the value at position {position}", item)
        self.value = list(value)
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()


class SelectorWidth(SOp):
    """The number of keys the selector selects, for each query position."""

    def __init__(self, selector: "Selector"):
        super().__init__()
        _check_selector("SelectorWidth", "the input of SelectorWidth", selector)
        self.selector = selector

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.selector,)


class Aggregate(SOp):
    """For each query, the selected values of `sop`: their mean (numerical) or their
    common value (categorical); `default` where nothing is selected."""

    def __init__(self, selector: "Selector", sop: SOp, default: Value = None):
        super().__init__()
        _check_selector("Aggregate", "the selector of Aggregate", selector)
        _check_sop("Aggregate", "the values of Aggregate", sop)
        if default is not None and not isinstance(default, (str, bool, numbers.Real)):
            raise InvalidProgramError(
                f"Aggregate: the default must be None, a number, a bool or a string, "
                f"got {type(default).__name__} {default!r}"
            )
        self.selector = selector
        self.sop = sop
        self.default = default

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.selector, self.sop)


# --------------------------------------------------------------------------- selectors


class Predicate(Protocol):
    """What Select compares with: called key first, `predicate(key, query) -> bool`."""

    def __call__(self, key: Value, query: Value) -> bool:
        ...


class Selector(RASPExpr):
    """A boolean matrix M[query][key]; combine with `&`, `|`, `~` (which fold two Selects
    into one where they can, as tracr's do: selector_and, selector_or, selector_not)."""

    def __and__(self, other: "Selector") -> "Selector":
        return selector_and(self, other)

    def __rand__(self, other: "Selector") -> "Selector":
        return selector_and(other, self)

    def __or__(self, other: "Selector") -> "Selector":
        return selector_or(self, other)

    def __ror__(self, other: "Selector") -> "Selector":
        return selector_or(other, self)

    def __invert__(self) -> "Selector":
        return selector_not(self)


class Select(Selector):
    """Selects key position k for query position q where predicate(keys[k], queries[q])."""

    def __init__(self, keys: SOp, queries: SOp, predicate: Predicate):
        super().__init__()
        _check_sop("Select", "the keys of Select", keys)
        _check_sop("Select", "the queries of Select", queries)
        if not callable(predicate) or isinstance(predicate, RASPExpr):
            raise InvalidProgramError(
                f"Select: the predicate must be a rasp.Comparison or a function "
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

    def __init__(self, value: SelectorValue, check_length: bool = True):
        super().__init__()
        try:
            self.value = [[bool(x) for x in row] for row in value]
        except TypeError as exc:
            raise InvalidProgramError(
                f"ConstantSelector: takes a list of rows of booleans, got {value!r}"
            ) from exc
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return ()


class SelectorAnd(Selector):
    """Elementwise AND of two selectors (`&` builds one when the two cannot fold)."""

    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        _check_selector("SelectorAnd", "the first input of SelectorAnd", fst)
        _check_selector("SelectorAnd", "the second input of SelectorAnd", snd)
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.fst, self.snd)


class SelectorOr(Selector):
    """Elementwise OR of two selectors (`|` builds one when the two cannot fold)."""

    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        _check_selector("SelectorOr", "the first input of SelectorOr", fst)
        _check_selector("SelectorOr", "the second input of SelectorOr", snd)
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.fst, self.snd)


class SelectorNot(Selector):
    """Elementwise NOT of a selector (`~` builds one unless its input is a Select)."""

    def __init__(self, inner: Selector):
        super().__init__()
        _check_selector("SelectorNot", "the input of SelectorNot", inner)
        self.inner = inner

    @property
    def children(self) -> Sequence[RASPExpr]:
        return (self.inner,)


# --------------------------------------------------------------------------- folding selectors
#
# As tracr: `~Select(k, q, p)` is `Select(k, q, not p)`, and `a & b`, `a | b` of two
# Selects that read the same keys and the same queries (a Full on one side matches
# anything: its fill is fixed in that Select's predicate) are one Select whose
# predicate combines the two. A Select entry whose key or query is None is False
# (evaluator.py), so the folded Select leaves such a position unselected where an
# explicit SelectorNot (or an OR across a Full side) would select it.
#
# The folded predicate stays a Comparison where that is the same function on every
# value (the compiler reads Comparisons): the negation of EQ, NEQ, TRUE, FALSE; `p & p`,
# `p | p`; TRUE & p and FALSE | p. The order comparisons are not negated into each
# other: `not (k < q)` and `k >= q` differ on values without a total order (frozensets,
# NaN), so `~Select(k, q, LT)` gets the function `not_LT`.

_EXACT_NEGATIONS = {Comparison.EQ, Comparison.NEQ, Comparison.TRUE, Comparison.FALSE}


class _FoldedPredicate:
    """A predicate made by folding selectors: callable, comparable, named for reports."""

    __name__ = "folded"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        return self.__name__


class _Not(_FoldedPredicate):
    def __init__(self, predicate: Predicate):
        self.predicate = predicate
        self.__name__ = f"not_{predicate_name(predicate)}"

    def __call__(self, key: Value, query: Value) -> bool:
        return not self.predicate(key, query)

    def _key(self) -> tuple:
        return (self.predicate,)


class _Both(_FoldedPredicate):
    """tracr's combination: both predicates are called, then `and` / `or`."""

    def __init__(self, conjunction: bool, fst: Predicate, snd: Predicate):
        self.conjunction = conjunction
        self.fst = fst
        self.snd = snd
        joiner = "_and_" if conjunction else "_or_"
        self.__name__ = f"{predicate_name(fst)}{joiner}{predicate_name(snd)}"

    def __call__(self, key: Value, query: Value) -> bool:
        fst, snd = self.fst(key, query), self.snd(key, query)
        return (fst and snd) if self.conjunction else (fst or snd)

    def _key(self) -> tuple:
        return (self.conjunction, self.fst, self.snd)


class _FixedKey(_FoldedPredicate):
    """`predicate(fill, query)`: a Select over Full(fill) keys, moved onto other keys."""

    def __init__(self, predicate: Predicate, fill: Value):
        self.predicate = predicate
        self.fill = fill
        self.__name__ = f"{predicate_name(predicate)}[key={fill!r}]"

    def __call__(self, key: Value, query: Value) -> bool:
        return self.fill is not None and self.predicate(self.fill, query)

    def _key(self) -> tuple:
        return (self.predicate, self.fill)


class _FixedQuery(_FoldedPredicate):
    """`predicate(key, fill)`: a Select over Full(fill) queries, moved onto other queries."""

    def __init__(self, predicate: Predicate, fill: Value):
        self.predicate = predicate
        self.fill = fill
        self.__name__ = f"{predicate_name(predicate)}[query={fill!r}]"

    def __call__(self, key: Value, query: Value) -> bool:
        return self.fill is not None and self.predicate(key, self.fill)

    def _key(self) -> tuple:
        return (self.predicate, self.fill)


def selector_not(inner: Selector, simplify: bool = True) -> Selector:
    """`~inner`: a Select with the negated predicate when `inner` is a Select (and
    `simplify`), else SelectorNot(inner)."""
    _check_selector("selector_not", "its input", inner)
    if simplify and isinstance(inner, Select):
        predicate = inner.predicate
        if isinstance(predicate, Comparison) and predicate in _EXACT_NEGATIONS:
            negated: Predicate = predicate.negated()
        elif isinstance(predicate, _Not):
            negated = predicate.predicate
        else:
            negated = _Not(predicate)
        return Select(inner.keys, inner.queries, negated)
    return SelectorNot(inner)


def selector_and(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    """`fst & snd`: one Select when both are Selects over the same keys and queries (a
    Full side matches any) and `simplify`, else SelectorAnd(fst, snd)."""
    _check_selector("selector_and", "its first input", fst)
    _check_selector("selector_and", "its second input", snd)
    folded = _fold(fst, snd, conjunction=True) if simplify else None
    return folded if folded is not None else SelectorAnd(fst, snd)


def selector_or(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    """`fst | snd`: one Select when both are Selects over the same keys and queries (a
    Full side matches any) and `simplify`, else SelectorOr(fst, snd)."""
    _check_selector("selector_or", "its first input", fst)
    _check_selector("selector_or", "its second input", snd)
    folded = _fold(fst, snd, conjunction=False) if simplify else None
    return folded if folded is not None else SelectorOr(fst, snd)


def _shared(fst: SOp, snd: SOp) -> tuple[SOp | None, Value, Value]:
    """The SOp two Selects can both read on one side, and the fill each must fix in its
    predicate (`_NO_FILL` when it reads the shared SOp itself)."""
    if fst is snd:
        return fst, _NO_FILL, _NO_FILL
    if isinstance(fst, Full):
        return snd, fst.fill, _NO_FILL
    if isinstance(snd, Full):
        return fst, _NO_FILL, snd.fill
    return None, _NO_FILL, _NO_FILL


_NO_FILL = object()


def _fold(fst: Selector, snd: Selector, conjunction: bool) -> Select | None:
    if not (isinstance(fst, Select) and isinstance(snd, Select)):
        return None
    keys, fst_key, snd_key = _shared(fst.keys, snd.keys)
    queries, fst_query, snd_query = _shared(fst.queries, snd.queries)
    if keys is None or queries is None:
        return None
    predicates = []
    for select, key_fill, query_fill in ((fst, fst_key, fst_query), (snd, snd_key, snd_query)):
        predicate = select.predicate
        if key_fill is not _NO_FILL:
            predicate = _FixedKey(predicate, key_fill)
        if query_fill is not _NO_FILL:
            predicate = _FixedQuery(predicate, query_fill)
        predicates.append(predicate)
    return Select(keys, queries, _combine(conjunction, *predicates))


def _combine(conjunction: bool, fst: Predicate, snd: Predicate) -> Predicate:
    """`fst and snd` (or `or`), a Comparison where that is exactly one."""
    if isinstance(fst, Comparison) and isinstance(snd, Comparison):
        neutral = Comparison.TRUE if conjunction else Comparison.FALSE
        if fst is snd or snd is neutral:
            return fst
        if fst is neutral:
            return snd
    return _Both(conjunction, fst, snd)


# --------------------------------------------------------------------------- encodings


def numerical(sop: SOpT) -> SOpT:
    """A copy of `sop` marked numerically encoded (one residual dimension holding the number)."""
    _check_sop("numerical()", "the argument", sop)
    return annotate(sop, encoding=Encoding.NUMERICAL)


def categorical(sop: SOpT) -> SOpT:
    """A copy of `sop` marked categorically encoded (one residual dimension per value)."""
    _check_sop("categorical()", "the argument", sop)
    return annotate(sop, encoding=Encoding.CATEGORICAL)


def get_encoding(sop: SOp) -> Encoding:
    _check_sop("get_encoding()", "the argument", sop)
    return sop.annotations[_ENCODING_KEY]


def is_numerical(sop: SOp) -> bool:
    return get_encoding(sop) is Encoding.NUMERICAL


def is_categorical(sop: SOp) -> bool:
    return get_encoding(sop) is Encoding.CATEGORICAL


def default_encoding(expr: RASPExpr) -> Encoding:
    """The default `encoding` annotation: categorical, for SOps only."""
    if not isinstance(expr, SOp):
        raise InvalidProgramError(
            f"{describe(expr)}: only SOps have an encoding; {type(expr).__name__} is a selector"
        )
    return Encoding.CATEGORICAL


DEFAULT_ANNOTATORS[_ENCODING_KEY] = default_encoding


# --------------------------------------------------------------------------- names

# Most specific class first: the first match names the expression.
_DEFAULT_NAMES: dict[type, str] = {
    TokensType: "tokens",
    IndicesType: "indices",
    LengthType: "length",
    LinearSequenceMap: "linear_sequence_map",
    SequenceMap: "sequence_map",
    Map: "map",
    Full: "full",
    ConstantSOp: "constant_sop",
    SelectorWidth: "selector_width",
    Aggregate: "aggregate",
    SOp: "sop",
    Select: "select",
    SelectorAnd: "selector_and",
    SelectorOr: "selector_or",
    SelectorNot: "selector_not",
    ConstantSelector: "constant_selector",
    Selector: "selector",
}


def default_name(expr: RASPExpr) -> str:
    """The default `name` annotation: tracr's name for the expression's kind (`map`,
    `aggregate`, `select`, ...); an unnamed expression's label appends its id."""
    for cls, name in _DEFAULT_NAMES.items():
        if isinstance(expr, cls):
            return name
    raise InvalidProgramError(
        f"{type(expr).__name__} is neither an SOp nor a Selector, so it has no default name; "
        f"give it one with .named('...')"
    )


DEFAULT_ANNOTATORS[_NAME_KEY] = default_name


# --------------------------------------------------------------------------- helpers


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
    """Evaluates `expr` on the token list `xs` with the reference evaluator
    (rasp_compiler.lang.evaluator): the meaning every compiled model is checked against."""
    from rasp_compiler.lang.evaluator import evaluate as _evaluate

    return _evaluate(expr, xs)


class RASPEvaluator(abc.ABC):
    """An evaluator of RASP expressions (tracr's interface)."""

    @abc.abstractmethod
    def evaluate(self, expr: RASPExpr, xs: Sequence[Value]):
        """The value of `expr` on the input `xs`."""


class DefaultRASPEvaluator(RASPEvaluator):
    """tracr's evaluator structure with the reference evaluator's meaning.

    `evaluate(expr, xs)` dispatches on the expression's type to `eval_tokens`,
    `eval_map`, `eval_select`, ..., which evaluate the children through
    `self.evaluate`; so a subclass that overrides `evaluate` (tracr's
    `causal_eval.CausalEvaluator` masks every selector it returns) changes every
    sub-expression. Each construct's value is computed by the same code as in
    rasp_compiler.lang.evaluator, so the values are the reference ones. Like tracr's, it
    evaluates a shared sub-expression once per use; `rasp.evaluate` walks the
    program's graph once.
    """

    def __init__(self) -> None:
        self._eval_fn_by_expr_type: dict[type, Callable[[Any, Sequence[Value]], Any]] = {
            TokensType: self.eval_tokens,
            IndicesType: self.eval_indices,
            LengthType: self.eval_length,
            LinearSequenceMap: self.eval_sequence_map,
            SequenceMap: self.eval_sequence_map,
            Map: self.eval_map,
            Full: self.eval_full,
            ConstantSOp: self.eval_constant_sop,
            SelectorWidth: self.eval_selector_width,
            Aggregate: self.eval_aggregate,
            Select: self.eval_select,
            SelectorAnd: self.eval_selector_and,
            SelectorOr: self.eval_selector_or,
            SelectorNot: self.eval_selector_not,
            ConstantSelector: self.eval_constant_selector,
        }

    def evaluate(self, expr: RASPExpr, xs: Sequence[Value]):
        """The value of `expr` on `xs`: a list for an SOp, a matrix for a selector."""
        rules = _evaluator()
        handler = rule_for(self._eval_fn_by_expr_type, expr)
        if handler is None:
            raise EvaluationError(
                f"{describe(expr)}: {type(expr).__name__} has no evaluation rule; build the "
                f"program from rasp's SOps and selectors"
            )
        return rules.finish(expr, handler(expr, rules.check_input(xs)))

    def eval_tokens(self, sop: TokensType, xs: Sequence[Value]):
        return _evaluator().RULES[TokensType](sop, xs)

    def eval_indices(self, sop: IndicesType, xs: Sequence[Value]):
        return _evaluator().RULES[IndicesType](sop, xs)

    def eval_length(self, sop: LengthType, xs: Sequence[Value]):
        return _evaluator().RULES[LengthType](sop, xs)

    def eval_sequence_map(self, sop: SequenceMap, xs: Sequence[Value]):
        return _evaluator().RULES[SequenceMap](
            sop, xs, self.evaluate(sop.fst, xs), self.evaluate(sop.snd, xs))

    def eval_map(self, sop: Map, xs: Sequence[Value]):
        return _evaluator().RULES[Map](sop, xs, self.evaluate(sop.inner, xs))

    def eval_full(self, sop: Full, xs: Sequence[Value]):
        return _evaluator().RULES[Full](sop, xs)

    def eval_constant_sop(self, sop: ConstantSOp, xs: Sequence[Value]):
        return _evaluator().RULES[ConstantSOp](sop, xs)

    def eval_selector_width(self, sop: SelectorWidth, xs: Sequence[Value]):
        return _evaluator().RULES[SelectorWidth](sop, xs, self.evaluate(sop.selector, xs))

    def eval_aggregate(self, sop: Aggregate, xs: Sequence[Value]):
        return _evaluator().RULES[Aggregate](
            sop, xs, self.evaluate(sop.selector, xs), self.evaluate(sop.sop, xs))

    def eval_select(self, sel: Select, xs: Sequence[Value]):
        return _evaluator().RULES[Select](
            sel, xs, self.evaluate(sel.keys, xs), self.evaluate(sel.queries, xs))

    def eval_constant_selector(self, sel: ConstantSelector, xs: Sequence[Value]):
        return _evaluator().RULES[ConstantSelector](sel, xs)

    def eval_selector_and(self, sel: SelectorAnd, xs: Sequence[Value]):
        return _evaluator().RULES[SelectorAnd](
            sel, xs, self.evaluate(sel.fst, xs), self.evaluate(sel.snd, xs))

    def eval_selector_or(self, sel: SelectorOr, xs: Sequence[Value]):
        return _evaluator().RULES[SelectorOr](
            sel, xs, self.evaluate(sel.fst, xs), self.evaluate(sel.snd, xs))

    def eval_selector_not(self, sel: SelectorNot, xs: Sequence[Value]):
        return _evaluator().RULES[SelectorNot](sel, xs, self.evaluate(sel.inner, xs))


def _evaluator():
    """rasp_compiler.lang.evaluator, imported on first use (it imports this module)."""
    from rasp_compiler.lang import evaluator

    return evaluator


__all__ = [
    "Aggregate",
    "Annotator",
    "Comparison",
    "ConstantSOp",
    "ConstantSelector",
    "DEFAULT_ANNOTATORS",
    "DefaultRASPEvaluator",
    "Encoding",
    "Full",
    "IndicesType",
    "LengthType",
    "LinearSequenceMap",
    "Map",
    "Predicate",
    "RASPEvaluator",
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
    "default_encoding",
    "default_name",
    "evaluate",
    "get_encoding",
    "indices",
    "is_categorical",
    "is_numerical",
    "length",
    "numerical",
    "predicate_name",
    "selector_and",
    "selector_not",
    "selector_or",
    "sop_not",
    "tokens",
]
