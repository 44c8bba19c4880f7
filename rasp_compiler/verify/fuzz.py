"""Random well-formed RASP programs, for property tests and differential fuzzing.

`random_program(rng, ...)` draws a DAG of Maps (some returning bools, floats or
mixed types: values Python counts as equal but that are different values, such as
0, 0.0, -0.0 and False, which the compiler must keep apart), SequenceMaps, numerical Maps,
LinearSequenceMaps, Selects with every comparison, Boolean selector
combinations, Aggregates (categorical and numerical) and SelectorWidths over
integer tokens. Functions are drawn from fixed tables (no eval), and keep values
small (modular arithmetic) so value sets stay finite and modest.

Selects also use predicates that are constant or negated on every pair of values
(always true, always false, `not k < q`, ...), which the compiler recognises from
their tables, over SOps that can be None (a copy shifted right by one or two
positions): an entry whose key or query is None stays unselected even where the
predicate holds everywhere else (`none_guard` builds exactly that shape). Maps also
give values of mixed types (strings, ints, tuples, frozensets, bools side by side),
read back by Maps, copies and Selects that accept any value.

With `extreme_numbers`, a few draws (`extreme_rate`) are numbers the compiler
must refuse or get exactly right: Maps returning inf or NaN on some value, NaN
inside a tuple or frozenset, and large offsets (1e4 to 1e9) added, averaged or
combined, then subtracted again; and oversized value sets (pair codes of pair
codes, means of many distinct numbers), which must be refused quickly, naming the
SOp and the limit. The campaign also compiles a few programs (`huge_length_rate`)
at a huge max_seq_len (20,000 to 10^14), which must be refused (or compiled) within
seconds, in bounded memory.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from rasp_compiler.lang import rasp

CATEGORICAL_MAPS: tuple[tuple[str, Callable], ...] = (
    ("x+1 mod 5", lambda x: (x + 1) % 5),
    ("x mod 3", lambda x: x % 3),
    ("2x mod 7", lambda x: (2 * x) % 7),
    ("x>1", lambda x: int(x > 1)),
    ("|x-2|", lambda x: abs(x - 2)),
    ("min(x,3)", lambda x: min(x, 3)),
)
CATEGORICAL_PAIRS: tuple[tuple[str, Callable], ...] = (
    ("x+y mod 5", lambda x, y: (x + y) % 5),
    ("x-y mod 4", lambda x, y: (x - y) % 4),
    ("max", max),
    ("x*y mod 5", lambda x, y: (x * y) % 5),
    ("x==y", lambda x, y: int(x == y)),
)
# Categorical maps returning bools, floats and mixes of types: some values are equal but
# not the same (True and 1, 0 and 0.0, -0.0 and 0.0), which the compiler must keep apart
# (identity.py: a dimension each), never merge; "kind of x" reads which one it was given.
MIXED_TYPE_MAPS: tuple[tuple[str, Callable], ...] = (
    ("x>1 (bool)", lambda x: x > 1),
    ("x/2 (float)", lambda x: x / 2),
    ("True if x==0 else 1", lambda x: True if x == 0 else 1),
    ("-0.0 if x==0 else 0.0", lambda x: -0.0 if x == 0 else 0.0),
    ("float(x) if x else 0", lambda x: float(x) if x else 0),
    ("0, 0.0, -0.0 or False", lambda x: (0, 0.0, -0.0, False)[int(x) % 4]),
    ("kind of x", lambda x: 4 * (type(x) is bool) + 2 * (type(x) is float)
     + (math.copysign(1, x) < 0)),
)
NUMERICAL_FROM_CATEGORICAL: tuple[tuple[str, Callable], ...] = (
    ("x/2", lambda x: x / 2),
    ("x-1", lambda x: x - 1),
    ("[x>1]", lambda x: float(x > 1)),
    ("[x==0]", lambda x: float(x == 0)),
    ("(x-1)/2, -0.0 at 0", lambda x: -0.0 if x == 0 else (x - 1) / 2),  # 0.0 at 1: two zeros
)
CATEGORICAL_FROM_NUMERICAL: tuple[tuple[str, Callable], ...] = (
    ("[x>0.5]", lambda x: int(x > 0.5)),
    ("round(x)", lambda x: int(round(x))),
    ("[x<0]", lambda x: int(x < 0)),
    ("sign(x), -0.0 < 0", lambda x: int(math.copysign(1, x))),  # tells -0.0 from 0.0
)
NUMERICAL_FROM_NUMERICAL: tuple[tuple[str, Callable], ...] = (
    ("2x", lambda x: 2 * x),
    ("x-0.5", lambda x: x - 0.5),
    ("x^2", lambda x: x * x),
    ("-x", lambda x: -x),  # -0.0 from 0.0: a numerical zero has no sign (identity.as_number)
)
NON_FINITE_MAPS: tuple[tuple[str, Callable], ...] = (
    ("inf at 3", lambda x: math.inf if x == 3 else float(x)),
    ("-inf at 0", lambda x: -math.inf if x == 0 else x / 2),
    ("nan at 1", lambda x: math.nan if x == 1 else float(x)),
)
# NaN inside a value, on one input value: refused by name ("it holds NaN"), since such a
# value is not equal to itself; compiled only when the input never takes that value.
NAN_INSIDE_MAPS: tuple[tuple[str, Callable], ...] = (
    ("(x, nan) at 2", lambda x: (x, float("nan")) if x == 2 else (x,)),
    ("{x, nan} at 1", lambda x: frozenset({x, float("nan")}) if x == 1 else frozenset({x})),
    ("((nan,),) at 0", lambda x: ((float("nan"),),) if x == 0 else ((x,),)),
    ("(x, nan+1j) at 3", lambda x: (x, complex(float("nan"), 1)) if x == 3 else (x, 1j)),
)
NAN_INSIDE_PAIRS: tuple[tuple[str, Callable], ...] = (
    ("(x, nan) where x == y", lambda x, y: (x, float("nan")) if x == y else (x, y)),
)
# Categorical values of several types in one SOp (str, int, tuple, frozenset, bool, float),
# some equal but different ((1,) and (True,), 1 and 1.0): each its own dimension, decoded
# to itself. Kept in their own pool: arithmetic Maps and order comparisons cannot read them.
MIXED_VALUE_MAPS: tuple[tuple[str, Callable], ...] = (
    ("x or 'zero'", lambda x: x if x else "zero"),
    ("(x,) if odd else x", lambda x: (x,) if x % 2 else x),
    ("{x mod 2} or str(x)", lambda x: frozenset({x % 2}) if x > 1 else str(x)),
    ("(x mod 2, 'a' or True, 1.0)", lambda x: (x % 2, "a" if x else True, 1.0)),
    ("True, 1, (1,), '1', 1.0, (True,)", lambda x: (True, 1, (1,), "1", 1.0, (True,))[int(x) % 6]),
    ("(x, inf) or x", lambda x: (x, math.inf) if x > 1 else x),  # inf inside: a category
)
# Maps from any value back to a small int, so mixed values flow on into the program.
_TYPES = (int, str, tuple, frozenset, bool, float)
MIXED_READERS: tuple[tuple[str, Callable], ...] = (
    ("len(repr(x)) mod 4", lambda x: len(repr(x)) % 4),
    ("type code", lambda x: _TYPES.index(type(x)) if type(x) in _TYPES else len(_TYPES)),
    ("x == 1", lambda x: int(x == 1)),  # True, 1 and 1.0 all count
)
LARGE_OFFSETS: tuple[float, ...] = (1e4, 1e5, 1e6, 2.0 ** 25, 1e7, 1e8, 1e9)
# Predicates that are constant or negated on every pair of values: the compiler reads
# them from their tables (an always-true one folds to TRUE, unless its key or query can
# be None: those entries are False, and must stay unselected).
SPECIAL_PREDICATES: tuple[tuple[str, Callable], ...] = (
    ("always true", lambda key, query: True),
    ("always false", lambda key, query: False),
    ("not <", lambda key, query: not key < query),
    ("not ==", lambda key, query: not key == query),
    ("not (x+y even)", lambda key, query: not (key + query) % 2 == 0),
)
PREDICATES: tuple[Callable, ...] = tuple(rasp.Comparison) + (
    lambda key, query: (key + query) % 2 == 0,
    lambda key, query: abs(key - query) == 1,
) + tuple(f for _, f in SPECIAL_PREDICATES)
# Predicates that read any value (mixed types): equality and constants only.
ANY_VALUE_PREDICATES: tuple[Callable, ...] = (
    rasp.Comparison.EQ, rasp.Comparison.NEQ, rasp.Comparison.TRUE, rasp.Comparison.FALSE,
    SPECIAL_PREDICATES[0][1], SPECIAL_PREDICATES[1][1], SPECIAL_PREDICATES[3][1],
)
# max_seq_len for a few programs of a campaign: past every value-set limit (indices,
# SelectorWidth) and, from 10^9, past max_parameters by the position embedding alone.
HUGE_LENGTHS: tuple[int, ...] = (20_000, 10**9, 10**14)
HUGE_LENGTH_SECONDS = 15.0  # a compile at a huge length that takes longer is a problem


@dataclass(frozen=True)
class FuzzConfig:
    """What the generator may use; each flag turns one family of constructs on."""

    size: int = 6
    composite_selectors: bool = True
    numerical: bool = True
    selector_width: bool = True
    categorical_aggregates: bool = True
    extreme_numbers: bool = True  # inf/NaN Maps, large offsets round-tripped, oversized sets
    extreme_rate: float = 0.015  # chance that a draw is one of those
    mixed_types: bool = True  # draw MIXED_TYPE_MAPS and MIXED_VALUE_MAPS too
    none_guard: bool = True  # SOps that can be None, read by constant and negated predicates
    huge_length_rate: float = 0.01  # campaign: chance of a huge max_seq_len (extreme_numbers)


def random_selector(rng: random.Random, pool: list[rasp.SOp], composite: bool) -> rasp.Selector:
    def atom() -> rasp.Selector:
        return rasp.Select(rng.choice(pool), rng.choice(pool), rng.choice(PREDICATES))

    selector = atom()
    if composite:
        for _ in range(rng.randint(0, 2)):
            kind = rng.random()
            if kind < 0.4:
                selector = selector & atom()
            elif kind < 0.8:
                selector = selector | atom()
            else:
                selector = ~selector
    return selector


class _Pools:
    """The SOps drawn so far, by encoding; each builder adds one and returns it."""

    def __init__(self, rng: random.Random, config: "FuzzConfig"):
        self.rng = rng
        self.config = config
        self.categorical: list[rasp.SOp] = [rasp.tokens, rasp.indices]
        self.numerical: list[rasp.SOp] = []
        self.nullable: list[rasp.SOp] = []  # categorical SOps that can be None (also above)
        self.mixed: list[rasp.SOp] = []  # categorical SOps of mixed types (only here)

    def selector(self) -> rasp.Selector:
        return random_selector(self.rng, self.categorical, self.config.composite_selectors)

    def add(self, sop: rasp.SOp, numerical: bool) -> rasp.SOp:
        (self.numerical if numerical else self.categorical).append(sop)
        return sop

    def add_mixed(self, sop: rasp.SOp) -> rasp.SOp:
        self.mixed.append(sop)
        return sop


def _map(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(CATEGORICAL_MAPS)[1]
    return p.add(rasp.Map(f, p.rng.choice(p.categorical), simplify=False), False)


def _mixed_type_map(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(MIXED_TYPE_MAPS)[1]
    return p.add(rasp.Map(f, p.rng.choice(p.categorical), simplify=False), False)


def _sequence_map(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(CATEGORICAL_PAIRS)[1]
    return p.add(rasp.SequenceMap(f, p.rng.choice(p.categorical), p.rng.choice(p.categorical)),
                 False)


def _aggregate_categorical(p: _Pools) -> rasp.SOp:
    return p.add(rasp.Aggregate(p.selector(), p.rng.choice(p.categorical)), False)


def _aggregate_numerical(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(NUMERICAL_FROM_CATEGORICAL)[1]
    source = rasp.numerical(rasp.Map(f, p.rng.choice(p.categorical)))
    mean = rasp.numerical(rasp.Aggregate(p.selector(), source, default=0))
    if p.config.numerical:
        return p.add(mean, True)
    return p.add(rasp.Map(CATEGORICAL_FROM_NUMERICAL[0][1], mean), False)


def _aggregate_of_numerical(p: _Pools) -> rasp.SOp:
    return p.add(rasp.numerical(rasp.Aggregate(p.selector(), p.rng.choice(p.numerical),
                                               default=0)), True)


def _selector_width(p: _Pools) -> rasp.SOp:
    return p.add(rasp.SelectorWidth(p.selector()), False)


def _to_numerical(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(NUMERICAL_FROM_CATEGORICAL)[1]
    return p.add(rasp.numerical(rasp.Map(f, p.rng.choice(p.categorical), simplify=False)), True)


def _from_numerical(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(CATEGORICAL_FROM_NUMERICAL)[1]
    return p.add(rasp.Map(f, p.rng.choice(p.numerical), simplify=False), False)


def _numerical_map(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(NUMERICAL_FROM_NUMERICAL)[1]
    return p.add(rasp.numerical(rasp.Map(f, p.rng.choice(p.numerical), simplify=False)), True)


def _linear_sequence_map(p: _Pools) -> rasp.SOp:
    fst, snd = p.rng.choice(p.numerical), p.rng.choice(p.numerical)
    a, b = p.rng.choice((1, -1, 0.5, 2)), p.rng.choice((1, -1, 0.5))
    return p.add(rasp.numerical(rasp.LinearSequenceMap(fst, snd, a, b)), True)


def _non_finite_map(p: _Pools) -> rasp.SOp:
    """A Map that returns inf or NaN on one value, if its input can take that value."""
    f = p.rng.choice(NON_FINITE_MAPS)[1]
    sop = rasp.Map(f, p.rng.choice(p.categorical), simplify=False)
    if p.rng.random() < 0.7:
        return p.add(rasp.numerical(sop), True)
    return p.add(sop, False)


def _offset_round_trip(p: _Pools) -> rasp.SOp:
    """x + offset, averaged (or two such averages combined), then - offset again."""
    offset = p.rng.choice(LARGE_OFFSETS)
    pool = p.numerical or [_to_numerical(p)]

    def shifted() -> rasp.SOp:
        return rasp.numerical(rasp.Map(lambda x: x + offset, p.rng.choice(pool), simplify=False))

    kind = p.rng.random()
    back = offset
    if kind < 0.5:
        big = rasp.numerical(rasp.Aggregate(p.selector(), shifted(), default=0))
    elif kind < 0.8:
        selector = p.selector()
        means = [rasp.numerical(rasp.Aggregate(selector, shifted(), default=0)) for _ in range(2)]
        big = rasp.numerical(rasp.LinearSequenceMap(means[0], means[1], 1, -1))
        back = 0.0  # the offsets cancel in the difference
    else:
        big = shifted()
    return p.add(rasp.numerical(rasp.Map(lambda v: v - back, big, simplify=False)), True)


def _oversized(p: _Pools) -> rasp.SOp:
    """Pair codes of pair codes: 16, 256 then 65,536 values (past max_value_set_size), or
    the mean of a 256-valued number (millions of means: past the numerical limit)."""

    def code(fst: rasp.SOp, snd: rasp.SOp) -> rasp.SOp:
        return rasp.SequenceMap(lambda x, y: x * 10**6 + y, fst, snd)

    def pick() -> rasp.SOp:
        return p.rng.choice(p.categorical)

    pairs = code(code(pick(), pick()), code(pick(), pick()))  # up to 256 values
    if p.rng.random() < 0.5:
        return p.add(code(pairs, code(pairs, pick())), False)
    number = rasp.numerical(rasp.Map(lambda v: math.sqrt(v % 9973 + 2), pairs, simplify=False))
    return p.add(rasp.numerical(rasp.Aggregate(p.selector(), number, default=0)), True)


def _shifted(p: _Pools) -> rasp.SOp:
    """An SOp moved right by one or two positions: None at the first ones."""
    offset = p.rng.choice((1, 2))
    select = rasp.Select(rasp.indices, rasp.indices, lambda key, query: query == key + offset)
    shifted = rasp.Aggregate(select, p.rng.choice(p.categorical))
    p.nullable.append(shifted)
    return p.add(shifted, False)


def _none_guard(p: _Pools) -> rasp.SOp:
    """A Select over an SOp that can be None, with a constant or negated predicate, alone or
    combined with another Select, read by a SelectorWidth or an Aggregate: the shape of
    SelectorWidth(Select(shift_by(1, tokens), tokens, always-true) & Select(indices, indices,
    LEQ)), which counts the None position if an always-true atom folds to TRUE."""
    nullable = p.rng.choice(p.nullable) if p.nullable else _shifted(p)
    other = p.rng.choice(p.categorical)
    keys, queries = (nullable, other) if p.rng.random() < 0.6 else (other, nullable)
    special = rasp.Select(keys, queries, p.rng.choice(SPECIAL_PREDICATES)[1])
    if p.rng.random() < 0.25:
        special = ~special  # folds into the negated predicate: None still unselected
    partner = rasp.Select(p.rng.choice(p.categorical), p.rng.choice(p.categorical),
                          p.rng.choice(PREDICATES))
    kind = p.rng.random()
    if kind < 0.6:
        selector = special & partner
    elif kind < 0.85:
        selector = special | partner
    else:
        selector = special
    reader = p.rng.random()
    if reader < 0.6 or not p.config.selector_width:
        return p.add(rasp.SelectorWidth(selector), False)
    if reader < 0.8 or not p.config.categorical_aggregates:
        number = rasp.numerical(rasp.Map(p.rng.choice(NUMERICAL_FROM_CATEGORICAL)[1],
                                         p.rng.choice(p.categorical), simplify=False))
        mean = rasp.numerical(rasp.Aggregate(selector, number, default=0))
        if p.config.numerical:
            return p.add(mean, True)
        return p.add(rasp.Map(CATEGORICAL_FROM_NUMERICAL[0][1], mean), False)
    copied = rasp.Aggregate(selector, p.rng.choice(p.categorical))
    p.nullable.append(copied)
    return p.add(copied, False)


def _mixed_values(p: _Pools) -> rasp.SOp:
    f = p.rng.choice(MIXED_VALUE_MAPS)[1]
    return p.add_mixed(rasp.Map(f, p.rng.choice(p.categorical), simplify=False))


def _mixed_read(p: _Pools) -> rasp.SOp:
    """Mixed values read back: by a Map to a small int, a copy, or a width of a Select that
    compares them only for equality (or not at all)."""
    mixed = p.rng.choice(p.mixed)
    kind = p.rng.random()
    if kind < 0.4:
        return p.add(rasp.Map(p.rng.choice(MIXED_READERS)[1], mixed, simplify=False), False)
    if kind < 0.7 and p.config.categorical_aggregates:
        return p.add_mixed(rasp.Aggregate(p.selector(), mixed))
    other = p.rng.choice(p.mixed)
    keys, queries = (mixed, other) if p.rng.random() < 0.5 else (other, mixed)
    select = rasp.Select(keys, queries, p.rng.choice(ANY_VALUE_PREDICATES))
    return p.add(rasp.SelectorWidth(select), False)


def _nan_inside(p: _Pools) -> rasp.SOp:
    """A Map (or SequenceMap) whose value holds NaN inside a tuple, frozenset or complex
    number on one input value: refused by name if the input can take it."""
    if p.rng.random() < 0.75:
        f = p.rng.choice(NAN_INSIDE_MAPS)[1]
        return p.add_mixed(rasp.Map(f, p.rng.choice(p.categorical), simplify=False))
    f = p.rng.choice(NAN_INSIDE_PAIRS)[1]
    return p.add_mixed(rasp.SequenceMap(f, p.rng.choice(p.categorical),
                                        p.rng.choice(p.categorical)))


_BUILDERS = {
    "map": _map,
    "mixed_type_map": _mixed_type_map,
    "sequence_map": _sequence_map,
    "aggregate_categorical": _aggregate_categorical,
    "aggregate_numerical": _aggregate_numerical,
    "numerical_aggregate_of_numerical": _aggregate_of_numerical,
    "selector_width": _selector_width,
    "to_numerical": _to_numerical,
    "from_numerical": _from_numerical,
    "numerical_map": _numerical_map,
    "linear_sequence_map": _linear_sequence_map,
    "non_finite_map": _non_finite_map,
    "offset_round_trip": _offset_round_trip,
    "oversized": _oversized,
    "shifted": _shifted,
    "none_guard": _none_guard,
    "mixed_values": _mixed_values,
    "mixed_read": _mixed_read,
    "nan_inside": _nan_inside,
}
_EXTREME = ("non_finite_map", "offset_round_trip", "oversized", "nan_inside")


def _choices(pools: _Pools) -> list[str]:
    config = pools.config
    choices = ["map", "sequence_map", "aggregate_numerical"]
    if config.categorical_aggregates:
        choices.append("aggregate_categorical")
    if config.selector_width:
        choices.append("selector_width")
    if config.mixed_types:
        choices += ["mixed_type_map", "mixed_values"]
        if pools.mixed:
            choices.append("mixed_read")
    if config.none_guard:
        choices += ["shifted", "none_guard"]
    if config.numerical:
        choices.append("to_numerical")
        if pools.numerical:
            choices += ["to_numerical", "numerical_aggregate_of_numerical", "from_numerical",
                        "numerical_map", "linear_sequence_map"]
    return choices


def random_program(rng: random.Random, config: FuzzConfig = FuzzConfig()) -> rasp.SOp:
    """A random program over integer tokens; its output is the last SOp drawn."""
    pools = _Pools(rng, config)
    last: rasp.SOp = rasp.tokens
    for _ in range(config.size):
        if config.extreme_numbers and rng.random() < config.extreme_rate:
            kind = rng.choice(_EXTREME)
        else:
            kind = rng.choice(_choices(pools))
        last = _BUILDERS[kind](pools)
    return last


def random_input(rng: random.Random, vocab, max_seq_len: int) -> list:
    return [rng.choice(tuple(vocab)) for _ in range(rng.randint(1, max_seq_len))]
