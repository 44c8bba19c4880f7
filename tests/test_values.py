import itertools
import random
import time
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rasp_compiler import lib, rasp
from rasp_compiler.errors import EvaluationError, InvalidProgramError, ValueSetTooLargeError
from rasp_compiler.evaluator import evaluate_all
from rasp_compiler.fuzz import FuzzConfig, random_input, random_program
from rasp_compiler.graph import build_graph
from rasp_compiler.values import infer_values, sorted_values


def test_primitive_value_sets():
    program = rasp.SequenceMap(lambda x, y: (x, y), rasp.tokens, rasp.indices)
    values = infer_values(program, {"b", "a"}, 3)
    assert values["tokens"] == ("a", "b")
    assert values["indices"] == (0, 1, 2)
    assert values.size(program.label) == 6
    assert infer_values(rasp.length, {1}, 4)["length"] == (1, 2, 3, 4)


def test_maps_apply_their_function_to_each_value():
    values = infer_values(rasp.Map(lambda x: x % 2, rasp.tokens).named("parity"), range(5), 2)
    assert values["parity"] == (0, 1)


def test_selector_width_ranges_over_zero_to_max_seq_len():
    width = lib.make_hist()
    assert infer_values(width, "ab".split(), 5)["hist"] == (0, 1, 2, 3, 4, 5)


def test_numerical_aggregate_takes_every_mean_not_only_fractions():
    values = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    mean = rasp.numerical(
        rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE), values)
    ).named("mean")
    inferred = infer_values(mean, [0, 2, 5], 3)["mean"]
    assert 7 / 3 in inferred  # mean of 0, 2, 5
    assert float(Fraction(9, 3)) in inferred  # 2, 2, 5
    assert 0 in inferred
    expected = {float(Fraction(a + b + c, 3)) for a in (0, 2, 5) for b in (0, 2, 5) for c in (0, 2, 5)}
    assert expected <= set(inferred)


def test_categorical_aggregate_keeps_its_inputs_and_the_default():
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    copy = rasp.Aggregate(select, rasp.tokens).named("copy")
    assert infer_values(copy, ["a", "b"], 2)["copy"] == (None, "a", "b")


def test_value_sets_over_the_limit_name_the_sop():
    sop = rasp.numerical(rasp.Map(lambda x: x * 1.37, rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE), sop)).named("big_mean")
    with pytest.raises(ValueSetTooLargeError, match="big_mean.*max_numerical_value_set_size"):
        infer_values(mean, range(10), 12, max_numerical_value_set_size=500)
    many = rasp.SequenceMap(lambda x, y: 10 * x + y, rasp.indices, rasp.indices).named("many")
    with pytest.raises(ValueSetTooLargeError, match="many.*9 or more.*limit of 5;.*max_value_set_size"):
        infer_values(many, [0], 3, max_value_set_size=5)


def test_means_over_one_selection_are_paired_not_crossed():
    # opens - closes averages over the same prefix, so it is k/n with |k| <= n, not
    # any difference of two fractions (which would be ~600,000 values at length 64).
    balance = lib.make_pair_balance(rasp.tokens, "(", ")")
    values = infer_values(balance, ["(", ")", "a"], 64)[balance.label]
    assert len(values) < 10_000
    assert -1 / 64 in values and 63 / 64 in values
    small = infer_values(balance, ["(", ")", "a"], 5)[balance.label]
    reachable = {b for n in range(1, 6) for xs in itertools.product("()a", repeat=n)
                 for b in evaluate_all(balance, list(xs))[balance.label]}
    assert reachable <= set(small)
    assert len(small) <= 2 * len(reachable)  # tight, not merely sound


def test_means_of_close_integers_are_listed_exactly_and_fast():
    # 100 integer values at length 16: summed as bitmaps, equal to the exact fractions.
    values = rasp.numerical(rasp.Map(lambda x: x - 40, rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), values)).named("mean")
    inferred = set(infer_values(mean, range(100), 16)[mean.label])
    exact = {float(Fraction(s, n)) for n in range(1, 17) for s in range(-40 * n, 59 * n + 1)}
    assert inferred == exact | {0}


def test_a_mean_of_many_float_values_is_refused_quickly():
    # 50 distinct floats at length 64 took 72 s to refuse (3 million Fractions of 5 values).
    spread = rasp.numerical(rasp.Map(lambda x: x * 0.37 + x ** 2 / 7, rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), spread, default=0))
    start = time.perf_counter()
    with pytest.raises(ValueSetTooLargeError,
                       match=r"spread_mean: listing the means.*Round the averaged values"):
        infer_values(mean.named("spread_mean"), range(50), 64)
    assert time.perf_counter() - start < 10  # about a second; a safety net only


def test_a_numerical_aggregate_default_must_be_a_number():
    values = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    mean = rasp.numerical(rasp.Aggregate(select, values, default="zz")).named("mean")
    with pytest.raises(InvalidProgramError,
                       match=r"mean: a numerical Aggregate's default .* got str 'zz'; use a "
                             r"number \(default=0\)"):
        infer_values(mean, [1, 2], 3)
    counted = rasp.numerical(rasp.Aggregate(select, values, default=True)).named("counted")
    assert True in infer_values(counted, [1, 2], 3)["counted"]  # a bool is a number


def test_sequence_map_pairs_over_the_limit_are_refused():
    pairs = rasp.SequenceMap(lambda x, y: 0, rasp.tokens, rasp.indices).named("pairs")
    with pytest.raises(ValueSetTooLargeError, match="pairs.*max_sequence_map_pairs"):
        infer_values(pairs, range(50), 50, max_sequence_map_pairs=100)


def test_a_function_that_fails_on_a_possible_value_is_reported():
    inverse = rasp.Map(lambda x: 1 / x, rasp.indices).named("inverse")
    with pytest.raises(InvalidProgramError, match="inverse.*ZeroDivisionError.*0"):
        infer_values(inverse, ["a"], 3)


@pytest.mark.parametrize("vocab, length, message", [
    ("abc", 3, "string"),
    ([], 3, "empty"),
    ([None], 3, "None"),
    (["a"], 0, "positive int"),
])
def test_bad_vocab_or_length_is_refused(vocab, length, message):
    with pytest.raises(InvalidProgramError, match=message):
        infer_values(rasp.tokens, vocab, length)


def test_sorted_values_orders_mixed_types():
    assert sorted_values([3, None, "b", True, 1.5, "a"]) == (None, True, 1.5, 3, "a", "b")


@given(seed=st.integers(0, 10**6))
def test_inferred_sets_contain_every_evaluated_value(seed):
    rng = random.Random(seed)
    vocab, max_seq_len = (0, 1, 2, 3), 4
    program = random_program(rng, FuzzConfig(size=rng.randint(2, 7)))
    graph = build_graph(program)
    try:
        values = infer_values(graph, vocab, max_seq_len, max_value_set_size=20_000)
    except ValueSetTooLargeError:
        assume(False)
    for _ in range(15):
        xs = random_input(rng, vocab, max_seq_len)
        try:
            result = evaluate_all(graph, xs)
        except EvaluationError:
            continue  # a categorical aggregate mixing values has no meaning
        for label in graph.sops():
            for position, value in enumerate(result[label]):
                assert value in set(values[label]), (label, position, value, xs)
