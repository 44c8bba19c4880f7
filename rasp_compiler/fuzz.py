"""Random well-formed RASP programs, for property tests and differential fuzzing.

`random_program(rng, ...)` draws a DAG of Maps (some returning bools, floats or
mixed types: values Python counts as equal but that are different values, such as
0, 0.0, -0.0 and False, which the compiler must keep apart), SequenceMaps, numerical Maps,
LinearSequenceMaps, Selects with every comparison, Boolean selector
combinations, Aggregates (categorical and numerical) and SelectorWidths over
integer tokens. Functions are drawn from fixed tables (no eval), and keep values
small (modular arithmetic) so value sets stay finite and modest.

With `extreme_numbers`, a few draws (`extreme_rate`) are numbers the compiler
must refuse or get exactly right: Maps returning inf or NaN on some value, and
large offsets (1e4 to 1e9) added, averaged or combined, then subtracted again;
and oversized value sets (pair codes of pair codes, means of many distinct
numbers), which must be refused quickly, naming the SOp and the limit.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Callable

from rasp_compiler import rasp

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
LARGE_OFFSETS: tuple[float, ...] = (1e4, 1e5, 1e6, 2.0 ** 25, 1e7, 1e8, 1e9)
PREDICATES: tuple[Callable, ...] = tuple(rasp.Comparison) + (
    lambda key, query: (key + query) % 2 == 0,
    lambda key, query: abs(key - query) == 1,
)


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
    mixed_types: bool = True  # draw MIXED_TYPE_MAPS too


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

    def selector(self) -> rasp.Selector:
        return random_selector(self.rng, self.categorical, self.config.composite_selectors)

    def add(self, sop: rasp.SOp, numerical: bool) -> rasp.SOp:
        (self.numerical if numerical else self.categorical).append(sop)
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
}
_EXTREME = ("non_finite_map", "offset_round_trip", "oversized")


def _choices(pools: _Pools) -> list[str]:
    config = pools.config
    choices = ["map", "sequence_map", "aggregate_numerical"]
    if config.categorical_aggregates:
        choices.append("aggregate_categorical")
    if config.selector_width:
        choices.append("selector_width")
    if config.mixed_types:
        choices.append("mixed_type_map")
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


def refusal_reason(detail: str) -> str:
    """A refusal message with what varies between programs blanked out (labels, the
    SOp's values and inputs, numbers), so refusals group by kind."""
    text = re.sub(r"\b[a-z_]+_\d+\b", "X", detail)
    text = re.sub(r"\b(tokens|indices)\b", "X", text)
    text = re.sub(r"\([^()]*\)", "(..)", text)
    text = re.sub(r"-?\b\d[\d,.]*(e[+-]?\d+)?\b|\binf\b|\bnan\b|\bTrue\b|-?\d+\.\d+", "N", text)
    return text[:110]


@dataclass
class FuzzOutcome:
    seed: int
    status: str  # "matched", "refused", "mismatch" or "crash"
    detail: str = ""


@dataclass
class FuzzReport:
    outcomes: list

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def problems(self) -> list:
        """Silent mismatches and crashes: the only outcomes that are bugs."""
        return [o for o in self.outcomes if o.status in ("mismatch", "crash")]

    def summary(self) -> str:
        lines = [f"{len(self.outcomes)} programs: {self.count('matched')} matched the evaluator, "
                 f"{self.count('refused')} refused with a compile error, "
                 f"{self.count('mismatch')} mismatched, {self.count('crash')} crashed"]
        reasons: dict[str, int] = {}
        for o in self.outcomes:
            if o.status == "refused":
                reasons[refusal_reason(o.detail)] = reasons.get(refusal_reason(o.detail), 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  refused x{n}: {reason}")
        for o in self.problems:
            lines.append(f"  {o.status.upper()} seed {o.seed}: {o.detail}")
        return "\n".join(lines)


def campaign(count: int, seed: int = 0, *, vocab=(0, 1, 2, 3), max_seq_len: int = 4,
             config: FuzzConfig | None = None, samples: int = 30,
             causal: bool = False) -> FuzzReport:
    """Compile `count` random programs; each must match the evaluator or be refused clearly.

    With `causal=True` the models are decoder-only and checked against the
    evaluator's causal meaning.

    Checks every input of up to 3 tokens plus `samples` random ones, with the
    numpy forward (no XLA compilation per program).
    """
    import traceback
    import warnings

    from rasp_compiler.compiler import compile_program
    from rasp_compiler.errors import RaspCompilerError
    from rasp_compiler.verify import verify

    outcomes = []
    for program_seed in range(seed, seed + count):
        rng = random.Random(program_seed)
        cfg = config or FuzzConfig(size=rng.randint(2, 7))
        program = random_program(rng, cfg)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = compile_program(program, vocab, max_seq_len, allow_unsafe_aggregates=True,
                                        causal=causal)
            report = verify(program, model, exhaustive_up_to=min(3, max_seq_len),
                            samples=samples, seed=program_seed, backend="numpy")
        except RaspCompilerError as error:
            outcomes.append(FuzzOutcome(program_seed, "refused", f"{type(error).__name__}: {error}"))
            continue
        except Exception:  # anything else is a compiler bug: keep the traceback
            outcomes.append(FuzzOutcome(program_seed, "crash", traceback.format_exc(limit=3)))
            continue
        if report.mismatch_count:
            outcomes.append(FuzzOutcome(program_seed, "mismatch", str(report)))
        else:
            outcomes.append(FuzzOutcome(program_seed, "matched"))
    return FuzzReport(outcomes)
