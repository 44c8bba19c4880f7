"""The shared table of compile cases: every construct alone and in combination.

Each case names a factory (called fresh for every max_seq_len, since some
programs depend on it), a vocab, the length it is checked exhaustively up to,
and options. Bundled programs are included with their own settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from rasp_compiler import lib, rasp
from rasp_compiler.program_files import load_program, program_names
from rasp_compiler.model.compiled import CompiledModel


@dataclass(frozen=True)
class Case:
    name: str
    factory: Callable[[int], rasp.SOp]  # max_seq_len -> program
    vocab: tuple
    max_seq_len: int
    exhaustive_up_to: int
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _bundled(name: str) -> Case:
    spec = load_program(name)
    length = spec.max_seq_len
    exhaustive = max(n for n in range(1, length + 1) if len(spec.vocab) ** n <= 1500)
    return Case(f"program:{name}", lambda n, spec=spec: spec.make(n), spec.vocab, length,
                exhaustive, spec.options)


def _select(keys, queries, predicate):
    return rasp.Select(keys, queries, predicate)


def _numeric_tokens():
    return rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))


NUMBERS = (0, 1, 2, 3)
LETTERS = ("a", "b", "c")

CONSTRUCT_CASES = [
    Case("map_categorical", lambda n: rasp.Map(lambda x: (3 * x + 1) % 5, rasp.tokens),
         NUMBERS, 6, 4),
    Case("map_to_numerical_negative",
         lambda n: rasp.numerical(rasp.Map(lambda x: -2.5 * x + 1, rasp.tokens)), NUMBERS, 6, 4),
    Case("map_numerical_nonlinear", lambda n: rasp.numerical(rasp.Map(
        lambda x: x * x - 3, rasp.numerical(rasp.Aggregate(
            _select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), _numeric_tokens(),
            default=0)))), NUMBERS, 5, 4),
    Case("map_numerical_to_categorical", lambda n: rasp.Map(
        lambda x: "high" if x > 1.5 else ("mid" if x > 0.5 else "low"),
        rasp.numerical(rasp.Aggregate(_select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
                                      _numeric_tokens(), default=0))), NUMBERS, 5, 4),
    Case("sequence_map_categorical", lambda n: rasp.SequenceMap(
        lambda x, i: f"{x}{i % 2}", rasp.tokens, rasp.indices), LETTERS, 5, 4),
    Case("sequence_map_to_numerical", lambda n: rasp.numerical(rasp.SequenceMap(
        lambda x, i: x * i - 1.5, rasp.tokens, rasp.indices)), NUMBERS, 5, 4),
    Case("linear_sequence_map_numerical", lambda n: rasp.numerical(rasp.LinearSequenceMap(
        _numeric_tokens(), rasp.numerical(rasp.Map(lambda i: i, rasp.indices)), 0.5, -2)),
         NUMBERS, 5, 4),
    Case("linear_sequence_map_categorical", lambda n: rasp.LinearSequenceMap(
        rasp.tokens, rasp.indices, 2, 1), NUMBERS, 5, 4),
    Case("full_and_constant", lambda n: rasp.SequenceMap(
        lambda x, y: x + y, rasp.Full(10), rasp.ConstantSOp(list(range(n)), check_length=False)),
         LETTERS, 5, 4),
    Case("numerical_full_in_sum", lambda n: rasp.numerical(rasp.LinearSequenceMap(
        rasp.numerical(rasp.Full(2.5)), _numeric_tokens(), 1, 1)), NUMBERS, 5, 4),
    Case("constant_selector", lambda n: rasp.Aggregate(rasp.ConstantSelector(
        [[k == (q + 1) % n for k in range(n)] for q in range(n)], check_length=False),
        rasp.tokens), LETTERS, 4, 4),
    Case("aggregate_categorical_default", lambda n: rasp.Aggregate(
        _select(rasp.indices, rasp.indices, lambda k, q: k == q + 1), rasp.tokens, default="z"),
         LETTERS, 5, 4),
    Case("aggregate_numerical_any_values_default", lambda n: rasp.numerical(rasp.Aggregate(
        _select(rasp.tokens, rasp.tokens, rasp.Comparison.LT),
        rasp.numerical(rasp.Map(lambda x: 2 * x - 3, rasp.tokens)), default=-1)),
         NUMBERS, 5, 4),
    Case("aggregate_numerical_of_categorical", lambda n: rasp.numerical(rasp.Aggregate(
        _select(rasp.indices, rasp.indices, rasp.Comparison.GEQ), rasp.tokens, default=0)),
         NUMBERS, 5, 4),
    Case("aggregate_of_folded_map", lambda n: rasp.Aggregate(
        _select(rasp.Map(lambda i: i // 2, rasp.indices), rasp.Map(lambda i: i // 2, rasp.indices),
                lambda k, q: k == q), rasp.Map(lambda x: x.upper(), rasp.tokens)), ("a", "b"), 6, 4,
         {"allow_unsafe_aggregates": True}),
    Case("selector_width_numerical", lambda n: rasp.numerical(rasp.SelectorWidth(
        _select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ))), NUMBERS, 6, 4),
    Case("selector_width_then_maps", lambda n: rasp.Map(lambda w: w % 3, rasp.SequenceMap(
        lambda w, i: w + i, rasp.SelectorWidth(_select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)),
        rasp.indices)), LETTERS, 6, 4),
    Case("length_primitive", lambda n: rasp.SequenceMap(lambda l, i: l - i, rasp.length,
                                                        rasp.indices), LETTERS, 6, 4),
    # linear_forms.py: a function of x - i (steps along it), and an affine numerical map
    Case("linear_lookup_difference", lambda n: rasp.SequenceMap(
        lambda x, i: (x - i) % 4 if x > i else None, rasp.tokens, rasp.indices),
        tuple(range(10)), 8, 3),
    Case("affine_sequence_map", lambda n: rasp.numerical(rasp.SequenceMap(
        lambda x, i: 2 * x - i + 0.5, rasp.tokens, rasp.indices)), NUMBERS, 6, 4),
    Case("select_lambda_and_none", lambda n: rasp.SelectorWidth(_select(
        lib.shift_by(1, rasp.tokens), rasp.tokens, lambda k, q: k != q)), LETTERS, 5, 4),
    Case("deep_chain", lambda n: _deep_chain(), NUMBERS, 5, 3),
    Case("mixed_zero_types", lambda n: rasp.SequenceMap(
        lambda a, b: 0 if a == b else (0.0 if a < b else 1), rasp.tokens, rasp.indices
    ).named("zero_types"), (0, 1, 2), 5, 5),
    Case("mixed_values_through_heads", lambda n: _mixed_through_heads(), tuple(range(7)), 4, 3),
    Case("mixed_tuples", lambda n: _mixed_tuples(), NUMBERS, 5, 4),
]


def _sel(keys, queries, predicate, name):
    return rasp.Select(keys, queries, predicate).named(name)


T, I = rasp.tokens, rasp.indices
C = rasp.Comparison
SELECTOR_CASES = [
    Case("and_of_2_width", lambda n: rasp.SelectorWidth(
        _sel(T, T, C.EQ, "same") & _sel(I, I, C.LT, "earlier")), NUMBERS, 6, 4),
    Case("and_of_3_numerical", lambda n: rasp.numerical(rasp.Aggregate(
        _sel(T, T, C.LEQ, "le") & _sel(I, I, C.NEQ, "other")
        & _sel(rasp.Map(lambda i: i % 2, I), I, lambda k, q: k == q % 2, "parity"),
        _numeric_tokens(), default=-1)), NUMBERS, 6, 4),
    Case("and_of_4_categorical_default", lambda n: rasp.Aggregate(
        _sel(I, I, lambda k, q: k == q - 1, "prev") & _sel(T, T, C.NEQ, "differs")
        & _sel(rasp.Map(lambda t: t > 0, T), T, lambda k, q: k, "positive_key")
        & _sel(I, T, lambda k, q: k != q, "index_not_token"), T, default=9),
         NUMBERS, 6, 4),
    Case("or_shared_key_width", lambda n: rasp.SelectorWidth(
        _sel(T, T, C.EQ, "same") | _sel(T, I, lambda k, q: k == q % 4, "token_is_index")),
         NUMBERS, 6, 4),
    Case("or_shared_query_numerical", lambda n: rasp.numerical(rasp.Aggregate(
        _sel(T, I, C.LT, "token_below_index") | _sel(I, I, C.EQ, "self"),
        _numeric_tokens(), default=0)), NUMBERS, 6, 4),
    Case("or_no_shared_side_width", lambda n: rasp.SelectorWidth(
        _sel(T, T, C.LT, "smaller") | _sel(I, I, C.GT, "later")), NUMBERS, 6, 4),
    Case("or_no_shared_side_categorical", lambda n: rasp.Aggregate(
        (_sel(I, I, lambda k, q: k == q + 1, "next") & _sel(T, T, C.GT, "bigger"))
        | (_sel(I, I, lambda k, q: k == q - 1, "prev") & ~_sel(T, T, C.GT, "bigger2")),
        rasp.Map(lambda t: t * 10, T), default=-1), NUMBERS, 6, 4,
         {"allow_unsafe_aggregates": True}),
    Case("not_of_atom_and_compound", lambda n: rasp.SelectorWidth(
        ~_sel(T, T, C.EQ, "same") & ~(_sel(I, I, C.LT, "before") | _sel(T, I, C.GT, "big"))),
         NUMBERS, 6, 4),
    Case("nested_mix_numerical", lambda n: rasp.numerical(rasp.Aggregate(
        ~(~_sel(T, T, C.GEQ, "ge") | (_sel(I, I, C.EQ, "self") & ~_sel(T, I, C.LT, "lt"))),
        _numeric_tokens(), default=0.5)), NUMBERS, 6, 4),
    Case("selects_nothing_sometimes", lambda n: rasp.Aggregate(
        _sel(T, T, C.GT, "greater") & _sel(I, I, lambda k, q: k == 0, "first"), T, default=-1),
         NUMBERS, 6, 4),
]


# Values Python counts as equal but that are different values (identity.py): 0, 0.0,
# -0.0, False, 1, 1.0, True, and tuples holding them, each its own value of its SOp.
EQUAL_BUT_DIFFERENT = (0, 0.0, -0.0, False, 1, 1.0, True)


def _mixed_through_heads() -> rasp.SOp:
    """A Map giving every value of EQUAL_BUT_DIFFERENT, copied from the previous position
    with the default 0 (a value beside 0.0), compared by a Select (0 == 0.0 selects), and
    read by a SequenceMap that tells the values apart (repr)."""
    mixed = rasp.Map(lambda x: EQUAL_BUT_DIFFERENT[x], rasp.tokens).named("mixed")
    previous = rasp.Aggregate(
        _select(rasp.indices, rasp.indices, lambda k, q: k == q - 1), mixed, default=0
    ).named("previous")
    equal = rasp.SelectorWidth(_select(mixed, previous, rasp.Comparison.EQ)).named("equal")
    return rasp.SequenceMap(lambda w, v: (w, repr(v)), equal, previous).named("seen")


def _mixed_tuples() -> rasp.SOp:
    """Tuples holding equal-but-different values, compared whole (Python's tuple ==) and
    output as they are, beside a numerical Map that reads their types."""
    pairs = rasp.SequenceMap(lambda x, i: (0 if x == i else 0.0, x > 1 if i == 0 else int(x > 1)),
                             rasp.tokens, rasp.indices).named("pairs")
    matches = rasp.SelectorWidth(_select(pairs, pairs, rasp.Comparison.EQ)).named("matches")
    floats = rasp.numerical(rasp.Map(lambda p: float(type(p[0]) is float), pairs)).named("floats")
    share = rasp.numerical(rasp.Aggregate(
        _select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), floats, default=0)).named("share")
    level = rasp.Map(lambda z: 0 if z < 0.3 else (0.0 if z < 0.6 else -0.0), share).named("level")
    return rasp.SequenceMap(lambda w, p: (w, p), matches, rasp.SequenceMap(
        lambda p, v: (p, v), pairs, level).named("with_level")).named("out")


def _deep_chain() -> rasp.SOp:
    """Aggregates feeding maps feeding aggregates, three levels deep."""
    x = rasp.tokens
    for level in range(3):
        shifted = rasp.Aggregate(
            _select(rasp.indices, rasp.indices, lambda k, q, d=level + 1: k == q - d), x,
            default=0)
        x = rasp.SequenceMap(lambda a, b: (a + b) % 4, shifted, x)
    return x


BUNDLED_CASES = [_bundled(name) for name in program_names()]
CASES = CONSTRUCT_CASES + SELECTOR_CASES + BUNDLED_CASES


def causal_twin(model: CompiledModel) -> CompiledModel:
    """The same weights behind a causal mask: what compile(causal=True) builds
    (test_causal pins that), without compiling again."""
    return CompiledModel(
        params=model.params, shape=dataclasses.replace(model.shape, causal=True),
        vocab=model.vocab, max_seq_len=model.max_seq_len, bos=model.bos, pad=model.pad,
        layout=model.layout, readouts=model.readouts,
        info=dataclasses.replace(model.info, causal=True), compilation=model.compilation,
    )
