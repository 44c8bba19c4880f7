"""The value-set rules: for each RASP construct, every value it can take from its inputs'.

One rule per construct (`RULES`, read by values.infer_values in graph order), each a
sound superset of what the evaluator can produce on inputs of length 1..max_seq_len.
Most are one line; the numerical ones list means and sums, which grow fast, so they
are built with care (exact integer sums or numpy bitmaps for means, sorted runs for
sums) and refused, with a cheaper formulation, before the work passes its limits
(MAX_MEAN_SUM_ADDITIONS, MAX_LINEAR_PAIRS_TOTAL). A categorical rule keeps every
value identity.py tells apart (`0` and `0.0` both); a numerical one holds floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real
from typing import Any, Callable, Sequence

import numpy as np

from rasp_compiler.compiler.linear_forms import possible_pairs
from rasp_compiler.errors import InvalidProgramError, ValueSetTooLargeError, describe_values
from rasp_compiler.lang import rasp
from rasp_compiler.lang.identity import as_number, distinct_values

MAX_LINEAR_PAIRS = 20_000_000  # LinearSequenceMap pairs, combined with numpy
# ... and all of a program's LinearSequenceMaps together (about 2 seconds): a chain of k sums
# grows its value set at every step, so listing them all costs about k^3.
MAX_LINEAR_PAIRS_TOTAL = 100_000_000
# Listing every mean: additions of Python ints (about a second per 5 million), and the
# size of the bitmaps (and of the work on them) when the scaled values are close integers.
MAX_MEAN_SUM_ADDITIONS = 10_000_000
MAX_DENSE_SUMS = 8_000_000
MAX_DENSE_WORK = 1_000_000_000


@dataclass
class RuleContext:
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
            raise too_large(expr, len(values), limit)



def too_large(expr: rasp.RASPExpr, size: int, limit: int) -> ValueSetTooLargeError:
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


def _tokens(expr, ctx: RuleContext) -> list:
    return list(ctx.vocab)  # distinct already, 1 and True both when the vocab holds both


def _indices(expr, ctx: RuleContext) -> set:
    return set(range(ctx.max_seq_len))


def _length(expr, ctx: RuleContext) -> set:
    return set(range(1, ctx.max_seq_len + 1))


def _full(expr: rasp.Full, ctx: RuleContext) -> set:
    return {expr.fill}


def _constant_sop(expr: rasp.ConstantSOp, ctx: RuleContext) -> set | list:
    return _distinct(expr, list(expr.value))


def _map(expr: rasp.Map, ctx: RuleContext) -> set | list:
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


def _linear_sequence_map(expr: rasp.LinearSequenceMap, ctx: RuleContext) -> set:
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
        return SortedNumbers(_distinct_sums(left, right).tolist())


class SortedNumbers(tuple):
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


def _paired_means(expr: rasp.LinearSequenceMap, ctx: RuleContext) -> set:
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
            raise too_large(expr, len(out), limit)
    return out


def _sequence_map(expr: rasp.SequenceMap, ctx: RuleContext) -> set | list:
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


def _selector_width(expr: rasp.SelectorWidth, ctx: RuleContext) -> set:
    return set(range(ctx.max_seq_len + 1))


def _aggregate(expr: rasp.Aggregate, ctx: RuleContext) -> set:
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


def _all_means(expr: rasp.Aggregate, inputs: Sequence[Real], ctx: RuleContext) -> set:
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
            raise too_large(expr, len(means), limit)
    return means


def _refuse_more_means_than_the_limit(expr: rasp.Aggregate, lowest: Fraction, highest: Fraction,
                                      ctx: RuleContext) -> None:
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
        raise too_large(expr, count + 1, limit)


def _dense_means(expr: rasp.Aggregate, steps: list[int], scale: int, ctx: RuleContext) -> set:
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
            raise too_large(expr, len(means), limit)
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


RULES: dict[type, Callable[[Any, RuleContext], set]] = {
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
