"""Random well-formed RASP programs, for property tests and differential fuzzing.

`random_program(rng, ...)` draws a DAG of Maps, SequenceMaps, numerical Maps,
LinearSequenceMaps, Selects with every comparison, Boolean selector
combinations, Aggregates (categorical and numerical) and SelectorWidths over
integer tokens. Functions are drawn from fixed tables (no eval), and keep values
small (modular arithmetic) so value sets stay finite and modest.
"""

from __future__ import annotations

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
NUMERICAL_FROM_CATEGORICAL: tuple[tuple[str, Callable], ...] = (
    ("x/2", lambda x: x / 2),
    ("x-1", lambda x: x - 1),
    ("[x>1]", lambda x: float(x > 1)),
    ("[x==0]", lambda x: float(x == 0)),
)
CATEGORICAL_FROM_NUMERICAL: tuple[tuple[str, Callable], ...] = (
    ("[x>0.5]", lambda x: int(x > 0.5)),
    ("round(x)", lambda x: int(round(x))),
    ("[x<0]", lambda x: int(x < 0)),
)
NUMERICAL_FROM_NUMERICAL: tuple[tuple[str, Callable], ...] = (
    ("2x", lambda x: 2 * x),
    ("x-0.5", lambda x: x - 0.5),
    ("x^2", lambda x: x * x),
)
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


def random_program(rng: random.Random, config: FuzzConfig = FuzzConfig()) -> rasp.SOp:
    """A random program over integer tokens; its output is the last SOp drawn."""
    categorical: list[rasp.SOp] = [rasp.tokens, rasp.indices]
    numerical: list[rasp.SOp] = []
    last: rasp.SOp = rasp.tokens
    for _ in range(config.size):
        choices = ["map", "sequence_map", "aggregate_numerical"]
        if config.categorical_aggregates:
            choices.append("aggregate_categorical")
        if config.selector_width:
            choices.append("selector_width")
        if config.numerical:
            choices += ["to_numerical", "numerical_aggregate_of_numerical"] if numerical else []
            choices += ["to_numerical"]
            if numerical:
                choices += ["from_numerical", "numerical_map", "linear_sequence_map"]
        kind = rng.choice(choices)
        if kind == "map":
            _, f = rng.choice(CATEGORICAL_MAPS)
            last = rasp.Map(f, rng.choice(categorical), simplify=False)
            categorical.append(last)
        elif kind == "sequence_map":
            _, f = rng.choice(CATEGORICAL_PAIRS)
            fst, snd = rng.choice(categorical), rng.choice(categorical)
            last = rasp.SequenceMap(f, fst, snd)
            categorical.append(last)
        elif kind == "aggregate_categorical":
            selector = random_selector(rng, categorical, config.composite_selectors)
            last = rasp.Aggregate(selector, rng.choice(categorical))
            categorical.append(last)
        elif kind == "aggregate_numerical":
            selector = random_selector(rng, categorical, config.composite_selectors)
            source = rasp.numerical(rasp.Map(rng.choice(NUMERICAL_FROM_CATEGORICAL)[1],
                                             rng.choice(categorical)))
            last = rasp.numerical(rasp.Aggregate(selector, source, default=0))
            if config.numerical:
                numerical.append(last)
            else:
                last = rasp.Map(CATEGORICAL_FROM_NUMERICAL[0][1], last)
                categorical.append(last)
        elif kind == "numerical_aggregate_of_numerical":
            selector = random_selector(rng, categorical, config.composite_selectors)
            last = rasp.numerical(rasp.Aggregate(selector, rng.choice(numerical), default=0))
            numerical.append(last)
        elif kind == "selector_width":
            selector = random_selector(rng, categorical, config.composite_selectors)
            last = rasp.SelectorWidth(selector)
            categorical.append(last)
        elif kind == "to_numerical":
            _, f = rng.choice(NUMERICAL_FROM_CATEGORICAL)
            last = rasp.numerical(rasp.Map(f, rng.choice(categorical), simplify=False))
            numerical.append(last)
        elif kind == "from_numerical":
            _, f = rng.choice(CATEGORICAL_FROM_NUMERICAL)
            last = rasp.Map(f, rng.choice(numerical), simplify=False)
            categorical.append(last)
        elif kind == "numerical_map":
            _, f = rng.choice(NUMERICAL_FROM_NUMERICAL)
            last = rasp.numerical(rasp.Map(f, rng.choice(numerical), simplify=False))
            numerical.append(last)
        elif kind == "linear_sequence_map":
            fst, snd = rng.choice(numerical), rng.choice(numerical)
            a, b = rng.choice((1, -1, 0.5, 2)), rng.choice((1, -1, 0.5))
            last = rasp.numerical(rasp.LinearSequenceMap(fst, snd, a, b))
            numerical.append(last)
    return last


def random_input(rng: random.Random, vocab, max_seq_len: int) -> list:
    return [rng.choice(tuple(vocab)) for _ in range(rng.randint(1, max_seq_len))]


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
            if o.status == "refused":  # group by message, labels blanked out
                key = re.sub(r"\b[a-z_]+_\d+\b", "X", o.detail)[:110]
                reasons[key] = reasons.get(key, 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:10]:
            lines.append(f"  refused x{n}: {reason}")
        for o in self.problems:
            lines.append(f"  {o.status.upper()} seed {o.seed}: {o.detail}")
        return "\n".join(lines)


def campaign(count: int, seed: int = 0, *, vocab=(0, 1, 2, 3), max_seq_len: int = 4,
             config: FuzzConfig | None = None, samples: int = 30) -> FuzzReport:
    """Compile `count` random programs; each must match the evaluator or be refused clearly.

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
                model = compile_program(program, vocab, max_seq_len, allow_unsafe_aggregates=True)
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
