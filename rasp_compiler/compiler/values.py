"""Value sets: every value each SOp can take, for a given vocab and max_seq_len.

Over 600 lines on purpose for now: one value-set rule per construct, and the bounds
checked before any set is built; it is split by job in issue 24's layered package, which
moves every module in one step with the weights unchanged.

The compiler gives each categorical value a residual dimension and builds each
MLP as a lookup over its input values, so a value missing here is a silently
wrong model. The sets are therefore sound supersets: every value the evaluator
can produce on an input of length 1..max_seq_len over the vocab is included
(a property test checks this on random programs).

Values are told apart as identity.py says: a categorical SOp that can be `0` and
`0.0` (or `1` and `True`, `-0.0` and `0.0`) holds both, each once, where a Python
set would keep one (`identity.distinct_values`), and later stages give each its
own dimension. Numerical SOps hold numbers, stored as floats (`as_numbers`).

Numerical Aggregates take every exact mean of 1..max_seq_len selected values,
not only fractions of 0/1 inputs: a mean of {0, 2, 5} can be 7/3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from rasp_compiler.compiler.linear_forms import possible_pairs
from rasp_compiler.errors import InvalidProgramError, ValueSetTooLargeError, describe_values
from rasp_compiler.lang import rasp
from rasp_compiler.lang.graph import ProgramGraph, build_graph
from rasp_compiler.lang.identity import as_number, distinct_values

DEFAULT_MAX_VALUE_SET_SIZE = 10_000  # categorical: one residual dimension per value
DEFAULT_MAX_NUMERICAL_VALUE_SET_SIZE = 2_000_000  # numerical: one dimension, any count
DEFAULT_MAX_SEQUENCE_MAP_PAIRS = 1_000_000
MAX_LINEAR_PAIRS = 20_000_000  # LinearSequenceMap pairs, combined with numpy
# ... and all of a program's LinearSequenceMaps together (about 2 seconds): a chain of k sums
# grows its value set at every step, so listing them all costs about k^3.
MAX_LINEAR_PAIRS_TOTAL = 100_000_000
# Listing every mean: additions of Python ints (about a second per 5 million), and the
# size of the bitmaps (and of the work on them) when the scaled values are close integers.
MAX_MEAN_SUM_ADDITIONS = 10_000_000
MAX_DENSE_SUMS = 8_000_000
MAX_DENSE_WORK = 1_000_000_000


def value_sort_key(value: Any) -> tuple:
    """A total order over mixed values: None, bools, numbers, strings, then the rest by repr."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, Real):
        return (2, value, "")
    if isinstance(value, str):
        return (3, 0, value)
    return (4, 0, repr(value))


def sorted_values(values: Iterable[Any]) -> tuple:
    """Distinct values in a deterministic order (natural order where Python has one).

    Values are distinct under identity.py: a list or tuple holding `0` and `0.0` (or
    `1` and `True`, `-0.0` and `0.0`) keeps both, next to each other, in the order of
    `_same_equal_order` (a set cannot hold both, so it is sorted as it is).
    """
    if not isinstance(values, (list, tuple)):
        return _sorted_distinct(set(values))
    distinct = distinct_values(values)
    if isinstance(distinct, set):
        return _sorted_distinct(distinct)
    classes: dict[Any, list] = {}  # the values Python counts as equal, together
    for value in distinct:
        classes.setdefault(value, []).append(value)
    ordered = [sorted(members, key=_same_equal_order) for members in classes.values()]
    by_first = {members[0]: members for members in ordered}  # each class under its first
    return tuple(value for first in _sorted_distinct(set(by_first)) for value in by_first[first])


def _sorted_distinct(distinct: set) -> tuple:
    if len(distinct) > 10_000 and set(map(type, distinct)) == {float}:
        ordered = np.fromiter(distinct, dtype=np.float64, count=len(distinct))
        ordered.sort()  # numpy's order of distinct floats is Python's, but 10x faster
        if not np.isnan(ordered[-1]):  # NaN sorts last; refused before any set is sorted
            return tuple(ordered.tolist())
    if None not in distinct:
        try:
            return tuple(sorted(distinct))  # numbers or strings: fast, natural order
        except TypeError:
            pass
    return tuple(sorted(distinct, key=value_sort_key))


_TYPE_RANK = {bool: 0, int: 1, float: 2, complex: 3}


def _same_equal_order(value: Any) -> tuple:
    """The order of values Python counts as equal: bool, int, float (-0.0 first), complex,
    then other types by name; within one type by repr (tuples: `(0, 'a')` before `(0.0, 'a')`)."""
    kind = type(value)
    return (_TYPE_RANK.get(kind, len(_TYPE_RANK)), kind.__name__, repr(value))


@dataclass(frozen=True)
class ValueSets:
    """The value set of every SOp of a program, each a sorted tuple, keyed by label."""

    vocab: tuple
    max_seq_len: int
    sets: Mapping[str, tuple]

    def __getitem__(self, label: str) -> tuple:
        return self.sets[label]

    def __contains__(self, label: str) -> bool:
        return label in self.sets

    def size(self, label: str) -> int:
        return len(self.sets[label])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{label}: {len(values)}" for label, values in self.sets.items())
        return f"ValueSets(max_seq_len={self.max_seq_len}, sizes={{{sizes}}})"


def check_vocab(vocab: Iterable[Any], max_seq_len: int) -> tuple:
    """The vocab as a sorted tuple, after checking it and max_seq_len make sense."""
    if isinstance(vocab, (str, bytes)):
        raise InvalidProgramError(
            f"vocab must be a collection of tokens, got the string {vocab!r}; "
            f"write set({vocab!r}) for its characters"
        )
    try:
        listed = list(vocab)
        tokens = set(listed)
    except TypeError as exc:
        raise InvalidProgramError(
            f"vocab must be an iterable of hashable tokens, got {vocab!r}"
        ) from exc
    if not tokens:
        raise InvalidProgramError("vocab is empty; give at least one token")
    if None in tokens:
        raise InvalidProgramError("vocab contains None, which RASP reserves for 'no value'")
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise InvalidProgramError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    return sorted_values(listed)


def infer_values(
    program: ProgramGraph | rasp.RASPExpr,
    vocab: Iterable[Any],
    max_seq_len: int,
    *,
    max_value_set_size: int = DEFAULT_MAX_VALUE_SET_SIZE,
    max_numerical_value_set_size: int = DEFAULT_MAX_NUMERICAL_VALUE_SET_SIZE,
    max_sequence_map_pairs: int = DEFAULT_MAX_SEQUENCE_MAP_PAIRS,
) -> ValueSets:
    """Every SOp's value set for inputs of length 1..max_seq_len over `vocab`.

    Categorical SOps get a residual dimension per value, so their sets are capped
    at `max_value_set_size`; numerical SOps use one dimension whatever their set,
    so theirs may grow to `max_numerical_value_set_size`.
    """
    graph = program if isinstance(program, ProgramGraph) else build_graph(program)
    context = _Context(
        vocab=check_vocab(vocab, max_seq_len),
        max_seq_len=max_seq_len,
        max_size=max_value_set_size,
        max_numerical_size=max_numerical_value_set_size,
        max_pairs=max_sequence_map_pairs,
        sets={},
    )
    check_length_bound(graph, context)
    for expr in graph.exprs():
        if isinstance(expr, rasp.SOp):
            refuse_non_finite_parameters(expr)
            rule = rasp.rule_for(_RULES, expr)
            if rule is None:
                raise InvalidProgramError(f"{expr.label}: no value-set rule for {type(expr).__name__}")
            values = rule(expr, context)
            limit = context.limit_for(expr)
            if len(values) > limit:
                raise _too_large(expr, len(values), limit)
            refuse_non_finite(expr, values, context.sets)
            if isinstance(values, _SortedNumbers):  # numbers as_numbers gives, sorted
                context.sets[expr.label] = tuple(values)
                continue
            if rasp.is_numerical(expr):
                values = as_numbers(values)
            context.sets[expr.label] = sorted_values(values)
    return ValueSets(vocab=context.vocab, max_seq_len=max_seq_len, sets=context.sets)


@dataclass
class _Context:
    vocab: tuple
    max_seq_len: int
    max_size: int
    max_numerical_size: int
    max_pairs: int
    sets: dict[str, tuple]
    linear_pairs: int = 0  # sums x + y listed so far by numerical LinearSequenceMaps

    def limit_for(self, expr: rasp.SOp) -> int:
        return self.max_numerical_size if rasp.is_numerical(expr) else self.max_size

    def refuse_too_large(self, expr: rasp.SOp, values: set) -> None:
        """The size check infer_values makes, made early by rules that go on to scan
        every value (the identity check on 10^6 outputs takes seconds; a refusal should not)."""
        limit = self.limit_for(expr)
        if len(values) > limit:
            raise _too_large(expr, len(values), limit)


def check_length_bound(graph: ProgramGraph, ctx: "_Context") -> None:
    """Refuse, from the arguments alone, an SOp whose value count grows with max_seq_len
    past its limit, before any set is built: `indices` and `length` take max_seq_len values
    and a SelectorWidth max_seq_len + 1, and a ConstantSelector reads the max_seq_len
    indices (with max_seq_len 10^14, `set(range(max_seq_len))` alone exhausts memory)."""
    n = ctx.max_seq_len
    for expr in graph.exprs():
        if isinstance(expr, rasp.IndicesType):
            count, which, kind = n, f"0..{n - 1:,}", ""
        elif isinstance(expr, rasp.LengthType):
            count, which, kind = n, f"1..{n:,}", ""
        elif isinstance(expr, rasp.SelectorWidth):
            count, which, kind = n + 1, f"0..{n:,}", " (a SelectorWidth)"
        elif isinstance(expr, rasp.ConstantSelector):
            count, which, kind = n, f"the indices 0..{n - 1:,}", " (a ConstantSelector, read as indices)"
        else:
            continue
        numerical = isinstance(expr, rasp.SOp) and rasp.is_numerical(expr)
        limit = ctx.max_numerical_size if numerical else ctx.max_size
        if count > limit:
            option = "max_numerical_value_set_size" if numerical else "max_value_set_size"
            raise ValueSetTooLargeError(
                f"{expr.label}{kind}: at max_seq_len={n:,} it takes {count:,} values ({which}), "
                f"over the limit of {limit:,} ({option}); lower max_seq_len (--max-seq-len on "
                f"the command line) or raise compile_program's {option}"
            )


def _too_large(expr: rasp.RASPExpr, size: int, limit: int) -> ValueSetTooLargeError:
    option = "max_numerical_value_set_size" if rasp.is_numerical(expr) else "max_value_set_size"
    return ValueSetTooLargeError(
        f"{expr.label}: this {type(expr).__name__} can take {size:,} or more distinct values, "
        f"over the limit of {limit:,}; reduce the vocab or max_seq_len, round the values "
        f"with a Map, or raise {option}"
    )


def _call_on_values(expr: rasp.RASPExpr, f: Callable, args: tuple, source: str) -> Any:
    try:
        result = f(*args)
        hash(result)
    except Exception as exc:
        shown = args[0] if len(args) == 1 else args
        raise InvalidProgramError(
            f"{expr.label}: its function raised {type(exc).__name__}({exc}) on {shown!r}, a "
            f"value {source} can take for some input; the compiler needs the function defined "
            f"(and returning a hashable value) on every possible input value"
        ) from exc
    return result


def _tokens(expr, ctx: _Context) -> list:
    return list(ctx.vocab)  # distinct already, 1 and True both when the vocab holds both


def _indices(expr, ctx: _Context) -> set:
    return set(range(ctx.max_seq_len))


def _length(expr, ctx: _Context) -> set:
    return set(range(1, ctx.max_seq_len + 1))


def _full(expr: rasp.Full, ctx: _Context) -> set:
    return {expr.fill}


def _constant_sop(expr: rasp.ConstantSOp, ctx: _Context) -> set | list:
    return _distinct(expr, list(expr.value))


def _map(expr: rasp.Map, ctx: _Context) -> set | list:
    inputs = ctx.sets[expr.inner.label]
    present = [x for x in inputs if x is not None]
    f = expr.f
    try:  # fast path: numerical sets can hold 10^5-10^6 values
        outputs = list(map(f, present))
        out = set(outputs)
    except Exception:
        outputs = [_call_on_values(expr, f, (x,), expr.inner.label) for x in present]
        out = set(outputs)
    ctx.refuse_too_large(expr, out)
    out = _distinct(expr, outputs, out)
    if len(present) < len(inputs):
        out = _with_none(out)  # None in gives None out
    return out


def _linear_sequence_map(expr: rasp.LinearSequenceMap, ctx: _Context) -> set:
    """p * x + q * y: over co-occurring means when x and y average over the same
    selection, else over all pairs (vectorised: balances can have 10^6 pairs)."""
    if rasp.is_categorical(expr):
        return _sequence_map(expr, ctx)  # exact Python values (ints stay ints), checked
    if _same_selection_means(expr.fst, expr.snd):
        return _paired_means(expr, ctx)
    fst, snd = ctx.sets[expr.fst.label], ctx.sets[expr.snd.label]
    # Plain floats and ints (a numerical set holds floats): checked by type at C speed, as
    # a sum of k means grows its set to 10^5-10^6 values and is checked at every step.
    if (len(fst) * len(snd) > MAX_LINEAR_PAIRS
            or not set(map(type, fst)) | set(map(type, snd)) <= {float, int}):
        return _sequence_map(expr, ctx)
    ctx.linear_pairs += len(fst) * len(snd)
    if ctx.linear_pairs > MAX_LINEAR_PAIRS_TOTAL:
        raise ValueSetTooLargeError(
            f"{expr.label}: listing the values of this program's numerical LinearSequenceMaps "
            f"needs more than {MAX_LINEAR_PAIRS_TOTAL:,} sums (this one adds {len(fst):,} values "
            f"of {expr.fst.label} to {len(snd):,} of {expr.snd.label}); a chain of sums grows "
            f"its value set at every step, as float rounding makes the same sum reached in "
            f"different ways different numbers. Sum fewer terms (one numerical Aggregate "
            f"averages many positions at once), round a partial sum with a numerical Map, or "
            f"lower max_seq_len"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: refuse_non_finite reports it
        left = expr.fst_fac * np.asarray(fst, dtype=np.float64)
        right = expr.snd_fac * np.asarray(snd, dtype=np.float64)
        # Same IEEE operations as the evaluator's fst_fac * x + snd_fac * y, so equal floats
        # (IEEE addition is commutative: the sums may be formed in either order).
        return _SortedNumbers(_distinct_sums(left, right).tolist())


class _SortedNumbers(tuple):
    """A rule's result that is already a numerical value set as infer_values stores it:
    distinct floats, sorted, no -0.0 (a sum of k means lists 10^6 of them at each step)."""


def _distinct_sums(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Every x + y, each once, sorted. The larger side is sorted, so each row of the table
    (it plus one value of the smaller side) is a sorted run, and a stable sort merges the
    runs in a few passes: a sum of k means adds a few values to a set of 10^6, k times."""
    if len(left) < len(right):
        left, right = right, left
    table = np.add.outer(right, np.sort(left)).ravel()
    table.sort(kind="stable")  # timsort: merges the sorted runs
    if len(table) > 1:
        table = table[np.concatenate(([True], table[1:] != table[:-1]))]
    return table + 0.0  # -0.0 + 0.0 is 0.0: a numerical zero has no sign (as_number)


def _same_selection_means(a: rasp.SOp, b: rasp.SOp) -> bool:
    return (
        isinstance(a, rasp.Aggregate) and isinstance(b, rasp.Aggregate)
        and rasp.is_numerical(a) and rasp.is_numerical(b)
        and same_selector(a.selector, b.selector)
    )


def same_selector(a: rasp.Selector, b: rasp.Selector) -> bool:
    """True when a and b select the same keys on every input (structurally equal)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, rasp.Select):
        return a.keys is b.keys and a.queries is b.queries and a.predicate == b.predicate
    if isinstance(a, (rasp.SelectorAnd, rasp.SelectorOr)):
        return same_selector(a.fst, b.fst) and same_selector(a.snd, b.snd)
    if isinstance(a, rasp.SelectorNot):
        return same_selector(a.inner, b.inner)
    if isinstance(a, rasp.ConstantSelector):
        return a.value == b.value and a.check_length == b.check_length
    return False


def _map_chain(sop: rasp.SOp) -> tuple[rasp.SOp, Callable[[Any], Any]]:
    """The SOp under a chain of Maps, and the chain's composed function."""
    functions = []
    while isinstance(sop, rasp.Map):
        functions.append(sop.f)
        sop = sop.inner

    def composed(value, functions=tuple(reversed(functions))):
        for f in functions:
            value = f(value)
        return value

    return sop, composed


def _paired_means(expr: rasp.LinearSequenceMap, ctx: _Context) -> set:
    """p * mean(u) + q * mean(v) where u and v are read at the same selected positions.

    When both aggregated SOps are Maps of one SOp, a position's (u, v) pair comes
    from one value of it; otherwise any pair may occur. Means are rounded as the
    evaluator rounds them, so every result is exactly a value it can produce.
    """
    fst, snd = expr.fst, expr.snd
    base_u, f_u = _map_chain(fst.sop)
    base_v, f_v = _map_chain(snd.sop)
    if base_u is base_v:
        pairs = {(f_u(x), f_v(x)) for x in ctx.sets[base_u.label] if x is not None}
    else:
        pairs = {(u, v) for u in ctx.sets[fst.sop.label] for v in ctx.sets[snd.sop.label]
                 if u is not None and v is not None}
    bad = [p for p in pairs if not all(isinstance(x, Real) for x in p)]
    if bad:
        raise InvalidProgramError(
            f"{expr.label}: averages non-numbers {describe_values(bad)}; map them to numbers first"
        )
    out = set()
    defaults = tuple(0 if agg.default is None else agg.default for agg in (fst, snd))
    out.add(expr.fst_fac * defaults[0] + expr.snd_fac * defaults[1])
    if not pairs:
        return out
    if len(pairs) == 1:  # one pair: every mean is that pair (the loop would run max_seq_len times)
        ((u, v),) = pairs
        out.add(expr.fst_fac * float(Fraction(u)) + expr.snd_fac * float(Fraction(v)))
        return out
    fractions = [(Fraction(u), Fraction(v)) for u, v in pairs]
    scale_u = math.lcm(*(u.denominator for u, _ in fractions))
    scale_v = math.lcm(*(v.denominator for _, v in fractions))
    steps = sorted({(int(u * scale_u), int(v * scale_v)) for u, v in fractions})
    limit = ctx.limit_for(expr)
    p, q = expr.fst_fac, expr.snd_fac
    sums = {(0, 0)}
    additions = 0
    for count in range(1, ctx.max_seq_len + 1):
        additions = _count_additions(expr, additions, len(sums), len(steps), count)
        denominator_u, denominator_v = scale_u * count, scale_v * count
        sums = {(su + du, sv + dv) for su, sv in sums for du, dv in steps}
        # int / int is correctly rounded, as the evaluator's float(Fraction) is.
        out.update(p * (su / denominator_u) + q * (sv / denominator_v) for su, sv in sums)
        if len(out) > limit:
            raise _too_large(expr, len(out), limit)
    return out


def _sequence_map(expr: rasp.SequenceMap, ctx: _Context) -> set | list:
    fst, snd = ctx.sets[expr.fst.label], ctx.sets[expr.snd.label]
    # (length, indices): only pairs with index < length occur (linear_forms.possible_pairs)
    possible = possible_pairs(expr)
    count = len(fst) * len(snd) if possible is None else sum(
        possible(x, y) for x in fst for y in snd)
    if count > ctx.max_pairs:
        raise ValueSetTooLargeError(
            f"{expr.label}: this SequenceMap's inputs {expr.fst.label} ({len(fst):,} values) and "
            f"{expr.snd.label} ({len(snd):,} values) give {count:,} pairs, over the "
            f"limit of {ctx.max_pairs:,}; shrink one input with a Map or raise "
            f"max_sequence_map_pairs"
        )
    source = f"the pair ({expr.fst.label}, {expr.snd.label})"
    xs = [x for x in fst if x is not None]
    ys = [y for y in snd if y is not None]
    pairs = [(x, y) for x in xs for y in ys if possible is None or possible(x, y)]
    f = expr.f
    try:  # fast path: up to max_sequence_map_pairs (10^6) calls
        outputs = [f(x, y) for x, y in pairs]
        out = set(outputs)
    except Exception:  # say which pair failed, or gave an unhashable value
        outputs = [_call_on_values(expr, f, pair, source) for pair in pairs]
        out = set(outputs)
    ctx.refuse_too_large(expr, out)
    out = _distinct(expr, outputs, out)
    if (len(xs) < len(fst) and snd) or (len(ys) < len(snd) and fst):
        out = _with_none(out)  # None in gives None out
    return out


def as_numbers(values: set) -> set:
    """A numerical SOp's values as floats (see identity.as_number): a numerical
    dimension holds a number, not its type, and the evaluator converts the same way,
    so functions reading it see the float the model computes with (0.0 for -0.0)."""
    if set(map(type, values)) == {float}:  # at C speed: sums of k means hold 10^6 floats
        if 0.0 in values:  # -0.0 or 0.0, one of them (a set keeps one): make it 0.0
            values = set(values)
            values.discard(0.0)
            values.add(0.0)
        return values
    return set(map(as_number, values))


def _with_none(values: set | list) -> set | list:
    """`values` and None (a set, or a list of values each once)."""
    if isinstance(values, set):
        values.add(None)
        return values
    return values if any(v is None for v in values) else values + [None]


def _distinct(expr: rasp.SOp, values: Sequence, merged: set | None = None) -> set | list:
    """A categorical SOp's values, each once (identity.distinct_values): `0` and `0.0`,
    `1` and `True`, `-0.0` and `0.0` stay two values, where a set would keep one of each,
    and the SOp gets a residual dimension for each. A numerical SOp holds numbers, not
    their types (as_numbers), so its values are simply `set(values)`.
    """
    if rasp.is_numerical(expr):
        return set(values) if merged is None else merged
    return distinct_values(values, merged)


def _selector_width(expr: rasp.SelectorWidth, ctx: _Context) -> set:
    return set(range(ctx.max_seq_len + 1))


def _aggregate(expr: rasp.Aggregate, ctx: _Context) -> set:
    inputs = [v for v in ctx.sets[expr.sop.label] if v is not None]
    if rasp.is_categorical(expr):
        candidates = inputs + [expr.default]
        if rasp.is_numerical(expr.sop):
            return set(candidates)  # refused by the rewriter, with the reason
        return _distinct(expr, candidates)  # a default of 0 beside 0.0 is one more value
    if expr.default is not None and not isinstance(expr.default, Real):
        raise InvalidProgramError(
            f"{expr.label}: a numerical Aggregate's default is the number written where nothing "
            f"is selected, got {type(expr.default).__name__} {expr.default!r}; use a number "
            f"(default=0), or make the aggregate categorical (rasp.categorical)"
        )
    rasp.check_averaged(expr, inputs, "it can read")
    means = _all_means(expr, inputs, ctx)
    means.add(0 if expr.default is None else expr.default)
    return means


def _all_means(expr: rasp.Aggregate, inputs: Sequence[Real], ctx: _Context) -> set:
    """Every exact mean of a multiset of 1..max_seq_len values drawn from `inputs`.

    Values are scaled to integers by their common denominator, so the sums of
    `count` values are plain ints; each mean is rounded once, exactly as the
    evaluator rounds it (int / int is correctly rounded, like float(Fraction)).
    Close integers (a span of a few thousand) are summed as bitmaps with numpy;
    others as sets of Python ints, refused before a count whose additions would
    take the total past MAX_MEAN_SUM_ADDITIONS (50 float values at max_seq_len 64
    would otherwise build 3 million sums of 5 values and many more after).
    """
    if not inputs:
        return set()
    fractions = sorted({Fraction(v) for v in inputs})
    if len(fractions) == 1:  # every mean of copies of one number is that number, exactly
        return {float(fractions[0])}  # (the loops below would run max_seq_len times)
    _refuse_more_means_than_the_limit(expr, fractions[0], fractions[-1], ctx)
    scale = math.lcm(*(f.denominator for f in fractions))
    steps = [int(f * scale) for f in fractions]  # sorted, distinct
    span = steps[-1] - steps[0]
    n = ctx.max_seq_len
    dense_work = len(steps) * (span * n * (n + 1) // 2 + n)
    if span * n < MAX_DENSE_SUMS and dense_work < MAX_DENSE_WORK:
        return _dense_means(expr, steps, scale, ctx)
    limit = ctx.limit_for(expr)
    sums = {0}
    means: set[float] = set()
    additions = 0
    for count in range(1, n + 1):
        additions = _count_additions(expr, additions, len(sums), len(steps), count)
        denominator = scale * count
        grown: set[int] = set()
        for step in steps:
            grown.update(map(step.__add__, sums))
        sums = grown
        means.update(map(denominator.__rtruediv__, sums))  # s / denominator, at C speed
        if len(means) > limit:
            raise _too_large(expr, len(means), limit)
    return means


def _refuse_more_means_than_the_limit(expr: rasp.Aggregate, lowest: Fraction, highest: Fraction,
                                      ctx: _Context) -> None:
    """Refuse at once, from max_seq_len, a mean that can take more values than its limit.

    With c = limit + 1 <= max_seq_len selected positions, j of them holding `highest` and
    the rest `lowest`, the means lowest + (highest - lowest) * j / c (j = 0..c) are c + 1
    reals spaced (highest - lowest) / c apart; where that spacing exceeds the float
    spacing (ulp) at their largest magnitude, rounding keeps them apart, so the set
    holds more than `limit` floats. Listing them would take seconds at max_seq_len 10^7."""
    limit = ctx.limit_for(expr)
    count = limit + 1
    if ctx.max_seq_len < count:
        return
    try:
        ulp = math.ulp(float(max(abs(lowest), abs(highest))))
    except OverflowError:
        return
    if (highest - lowest) / count > Fraction(ulp):
        raise _too_large(expr, count + 1, limit)


def _dense_means(expr: rasp.Aggregate, steps: list[int], scale: int, ctx: _Context) -> set:
    """`_all_means` for integers within a small span: the sums of `count` values are a
    bitmap over [count * lowest, count * highest], grown by one shifted OR per value."""
    limit = ctx.limit_for(expr)
    lowest = steps[0]
    offsets = [step - lowest for step in steps]
    reachable = np.ones(1, dtype=bool)  # sums of 0 values, less 0 * lowest
    means: set[float] = set()
    for count in range(1, ctx.max_seq_len + 1):
        grown = np.zeros(len(reachable) + offsets[-1], dtype=bool)
        for offset in offsets:
            grown[offset: offset + len(reachable)] |= reachable
        reachable = grown
        indices = np.flatnonzero(reachable)
        base, denominator = count * lowest, scale * count
        if abs(base) + len(reachable) < 2**53 and denominator < 2**53:
            # Both exact in float64, so IEEE division rounds once, like int / int.
            means.update(((indices + base).astype(np.float64) / denominator).tolist())
        else:
            means.update((base + i) / denominator for i in indices.tolist())
        if len(means) > limit:
            raise _too_large(expr, len(means), limit)
    return means


def _count_additions(expr: rasp.SOp, done: int, sums: int, steps: int, count: int) -> int:
    """Refuse before listing the sums of `count` values would take too many additions."""
    total = done + sums * steps
    if total > MAX_MEAN_SUM_ADDITIONS:
        raise ValueSetTooLargeError(
            f"{expr.label}: listing the means this {type(expr).__name__} can take needs more "
            f"than {MAX_MEAN_SUM_ADDITIONS:,} additions ({sums:,} distinct sums of {count - 1} "
            f"values, each plus {steps:,} values); its value set is too large to list. Round "
            f"the averaged values with a Map to fewer distinct values, or lower max_seq_len"
        )
    return total


def _is_non_finite(value: Any, numerical: bool = True) -> bool:
    """inf, -inf, NaN, or (as a number) an int too large for a float: it would become inf."""
    if not isinstance(value, Real):
        return False
    try:
        return not math.isfinite(value)
    except OverflowError:
        return numerical


_NEVER_NAN = frozenset({str, int, bool, type(None)})


def _holds_nan(value: Any) -> bool:
    """A value not equal to itself: NaN, or a tuple, frozenset or complex number holding
    one at any depth. `(1, nan) == (1, nan)` is False unless both hold the same NaN
    object, so such a value cannot name a category (dicts keyed by it miss)."""
    kind = type(value)
    if kind in _NEVER_NAN:
        return False
    if kind is float:
        return value != value
    if isinstance(value, (tuple, frozenset)):
        return any(map(_holds_nan, value))
    try:
        return bool(value != value)
    except Exception:  # a value that cannot be compared is refused elsewhere, if at all
        return False


def _is_refused_number(value: Any, numerical: bool) -> bool:
    """inf, -inf or NaN (or an int too large for a float, as a number), or a value holding
    NaN inside a tuple, frozenset or complex number. inf inside a tuple is a category like
    any other (equal to itself, never summed); NaN is not even equal to itself."""
    return _is_non_finite(value, numerical) or _holds_nan(value)


def _refusal_reason(value: Any) -> str:
    """Why `value` is refused, and what to write instead."""
    if isinstance(value, Real):
        return f"{_NON_FINITE_WHY}. {_NON_FINITE_FIX}"
    return (
        "it holds NaN, which is not equal to itself, so neither is the value: no residual "
        "dimension can stand for it, and no output could match the evaluator's. Use a finite "
        "number or a marker such as the string 'nan' in its place"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


_NON_FINITE_WHY = (
    "the model computes in float32, where one inf turns every sum it enters (each attention "
    "average, each layer) into NaN at every position, and NaN is not equal to itself, so it "
    "cannot name a category either"
)
_NON_FINITE_FIX = (
    "Use a finite number instead (for a sentinel, a large finite value such as 1e6, or a "
    "categorical marker such as the string 'inf')"
)


def refuse_non_finite_parameters(expr: rasp.SOp) -> None:
    """Refuse inf or NaN written into the program (a fill, a constant, a default, a
    factor), and NaN inside a tuple, frozenset or complex number written there."""
    if isinstance(expr, rasp.Full):
        found = [("its fill", expr.fill)]
    elif isinstance(expr, rasp.ConstantSOp):
        found = [(f"its value at position {i}", v) for i, v in enumerate(expr.value)]
    elif isinstance(expr, rasp.Aggregate):
        found = [("its default", expr.default)]
    elif isinstance(expr, rasp.LinearSequenceMap):
        found = [("its factor fst_fac", expr.fst_fac), ("its factor snd_fac", expr.snd_fac)]
    else:
        return
    for where, value in found:
        if _is_refused_number(value, rasp.is_numerical(expr)):
            raise InvalidProgramError(
                f"{expr.label}: {where} is {_short(value)}; {_refusal_reason(value)}"
            )


def refuse_non_finite(expr: rasp.SOp, values: set, sets: Mapping[str, tuple]) -> None:
    """Refuse an SOp that can hold inf, -inf or NaN, or a value holding NaN inside a tuple,
    frozenset or complex number, naming the input value that gives it.

    Checked once per SOp (with `refuse_non_finite_parameters` before its rule runs),
    so every later stage may assume finite numbers.
    """
    try:  # fast path: a finite sum of numbers proves every one of them finite
        if math.isfinite(sum(values)):
            return
    except (TypeError, OverflowError):
        pass
    numerical = rasp.is_numerical(expr)
    bad = sorted((v for v in values if _is_refused_number(v, numerical)), key=_short)
    if bad:
        raise InvalidProgramError(
            f"{expr.label}: this {type(expr).__name__} can be {_short(bad[0])} "
            f"({_non_finite_source(expr, sets)}); {_refusal_reason(bad[0])}"
        )


def _non_finite_source(expr: rasp.SOp, sets: Mapping[str, tuple]) -> str:
    """The input value(s) on which a function returns inf or NaN (or a value holding NaN)."""
    numerical = rasp.is_numerical(expr)
    if isinstance(expr, rasp.TokensType):
        return "a token of the vocab"
    if isinstance(expr, rasp.Map):
        for x in sets[expr.inner.label]:
            if x is not None and _is_refused_number(_quiet_call(expr.f, x), numerical):
                return f"returned on the input value {x!r}, a value {expr.inner.label} can take"
    if isinstance(expr, rasp.SequenceMap):
        for x in sets[expr.fst.label]:
            for y in sets[expr.snd.label]:
                if x is None or y is None:
                    continue
                if _is_refused_number(_quiet_call(expr.f, x, y), numerical):
                    return (f"returned on the input values ({x!r}, {y!r}), values "
                            f"{expr.fst.label} and {expr.snd.label} can take")
    return "for some input"


def _quiet_call(f: Callable, *args) -> Any:
    try:
        return f(*args)
    except Exception:
        return None


_RULES: dict[type, Callable[[Any, _Context], set]] = {
    rasp.TokensType: _tokens,
    rasp.IndicesType: _indices,
    rasp.LengthType: _length,
    rasp.Full: _full,
    rasp.ConstantSOp: _constant_sop,
    rasp.Map: _map,
    rasp.LinearSequenceMap: _linear_sequence_map,
    rasp.SequenceMap: _sequence_map,
    rasp.SelectorWidth: _selector_width,
    rasp.Aggregate: _aggregate,
}
