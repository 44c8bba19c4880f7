from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rasp_compiler import rasp
from rasp_compiler.errors import EvaluationError, InvalidInputError
from rasp_compiler.lang.evaluator import evaluate, evaluate_all, exact_mean

tokens_lists = st.lists(st.integers(0, 4), min_size=1, max_size=7)
comparisons = st.sampled_from(list(rasp.Comparison))


def select(predicate, keys=rasp.tokens, queries=rasp.tokens):
    return rasp.Select(keys, queries, predicate)


def test_select_matrix_is_indexed_query_then_key_and_calls_predicate_key_first():
    matrix = evaluate(select(rasp.Comparison.LT), [1, 2, 3])
    # M[q][k] = keys[k] < queries[q]
    assert matrix == [[False, False, False], [True, False, False], [True, True, False]]


@given(xs=tokens_lists)
def test_selector_width_of_true_is_the_length(xs):
    width = rasp.SelectorWidth(select(rasp.Comparison.TRUE))
    assert evaluate(width, xs) == [len(xs)] * len(xs)
    assert evaluate(rasp.length, xs) == [len(xs)] * len(xs)


@given(xs=tokens_lists, p=comparisons, q=comparisons)
def test_boolean_selectors_combine_elementwise(xs, p, q):
    a = select(p)
    b = select(q, rasp.indices, rasp.indices)
    ma, mb = evaluate(a, xs), evaluate(b, xs)
    n = len(xs)
    assert evaluate(a & b, xs) == [[ma[i][j] and mb[i][j] for j in range(n)] for i in range(n)]
    assert evaluate(a | b, xs) == [[ma[i][j] or mb[i][j] for j in range(n)] for i in range(n)]
    assert evaluate(~a, xs) == [[not ma[i][j] for j in range(n)] for i in range(n)]
    assert evaluate(~(a & b), xs) == evaluate(~a | ~b, xs)  # De Morgan


@given(xs=tokens_lists)
def test_numerical_aggregate_over_true_is_the_exact_mean(xs):
    mean = rasp.numerical(rasp.Aggregate(select(rasp.Comparison.TRUE), rasp.numerical(
        rasp.Map(lambda x: x, rasp.tokens)), default=0))
    assert evaluate(mean, xs) == [float(Fraction(sum(xs), len(xs)))] * len(xs)


@given(xs=tokens_lists, p=comparisons)
def test_selector_width_counts_selected_keys(xs, p):
    matrix = evaluate(select(p), xs)
    assert evaluate(rasp.SelectorWidth(select(p)), xs) == [sum(row) for row in matrix]


def test_numerical_aggregate_default_is_zero_unless_given():
    nothing = select(rasp.Comparison.FALSE)
    values = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    assert evaluate(rasp.numerical(rasp.Aggregate(nothing, values)), [1, 2]) == [0, 0]
    assert evaluate(rasp.numerical(rasp.Aggregate(nothing, values, default=-3)), [1]) == [-3]


def test_exact_mean_is_order_independent():
    values = [0.1, 0.2, 0.3, 1e16, -1e16]
    assert exact_mean(values) == exact_mean(list(reversed(values)))
    assert exact_mean([1, 2]) == 1.5


def test_categorical_aggregate_copies_one_value_and_none_when_nothing_selected():
    # Each query selects the key holding the same index: a copy.
    copy = rasp.Aggregate(select(rasp.Comparison.EQ, rasp.indices, rasp.indices), rasp.tokens)
    assert evaluate(copy, [3, 1, 2]) == [3, 1, 2]
    # Selecting every position holding the same token value is fine: one value.
    same = rasp.Aggregate(select(rasp.Comparison.EQ), rasp.tokens)
    assert evaluate(same, [3, 1, 3]) == [3, 1, 3]
    nothing = rasp.Aggregate(select(rasp.Comparison.FALSE), rasp.tokens)
    assert evaluate(nothing, [1, 2]) == [None, None]
    with_default = rasp.Aggregate(select(rasp.Comparison.FALSE), rasp.tokens, default=9)
    assert evaluate(with_default, [1, 2]) == [9, 9]


def test_categorical_aggregate_of_different_values_is_an_error_naming_it():
    mixed = rasp.Aggregate(select(rasp.Comparison.TRUE), rasp.tokens).named("mixer")
    with pytest.raises(EvaluationError, match=r"mixer.*positions \[0, 1\].*query position 0"):
        evaluate(mixed, [1, 2])


def test_numerical_aggregate_of_non_numbers_is_an_error():
    letters = rasp.numerical(rasp.Aggregate(select(rasp.Comparison.TRUE), rasp.tokens))
    with pytest.raises(EvaluationError, match="averages numbers"):
        evaluate(letters, ["a", "b"])


def test_none_propagates_through_maps_and_never_matches_in_selects():
    shifted = rasp.Aggregate(
        select(lambda k, q: q == k + 1, rasp.indices, rasp.indices), rasp.tokens
    ).named("shifted")
    plus = rasp.Map(lambda x: x + 1, shifted)
    both = rasp.SequenceMap(lambda x, y: x + y, shifted, rasp.tokens)
    assert evaluate(plus, [1, 2, 3]) == [None, 2, 3]
    assert evaluate(both, [1, 2, 3]) == [None, 3, 5]
    width = rasp.SelectorWidth(rasp.Select(shifted, shifted, rasp.Comparison.TRUE))
    assert evaluate(width, [1, 2, 3]) == [0, 2, 2]


def test_a_raising_function_is_reported_with_its_label_and_input():
    broken = rasp.Map(lambda x: 1 // x, rasp.tokens).named("inverse")
    with pytest.raises(EvaluationError, match=r"inverse.*ZeroDivisionError.*input 0"):
        evaluate(broken, [1, 0])
    bad_predicate = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k < q).named("cmp")
    with pytest.raises(EvaluationError, match=r"cmp.*TypeError.*key=1, query='a'"):
        evaluate(bad_predicate, ["a", 1])


def test_constants_check_their_length():
    constant = rasp.ConstantSOp([1, 2, 3]).named("three")
    with pytest.raises(EvaluationError, match="three.*3 values.*2 tokens"):
        evaluate(constant, [1, 2])
    loose = rasp.ConstantSOp([1, 2, 3], check_length=False)
    assert evaluate(loose, [5]) == [1]
    assert evaluate(loose, [5, 5, 5, 5]) == [1, 2, 3, None]
    matrix = rasp.ConstantSelector([[True, False], [False, True]])
    assert evaluate(matrix, [0, 0]) == [[True, False], [False, True]]
    with pytest.raises(EvaluationError, match="2 x 2"):
        evaluate(rasp.ConstantSelector([[True]]), [0, 0])
    loose = rasp.ConstantSelector([[True, True], [False, True]], check_length=False)
    assert evaluate(loose, [0]) == [[True]]
    assert evaluate(loose, [0, 0, 0]) == [[True, True, False], [False, True, False], [False] * 3]


def test_evaluate_all_exposes_every_intermediate_value():
    doubled = rasp.Map(lambda x: 2 * x, rasp.tokens).named("doubled")
    total = rasp.SequenceMap(lambda x, y: x + y, doubled, rasp.indices).named("total")
    result = evaluate_all(total, [5, 6])
    assert result["doubled"] == [10, 12]
    assert result["indices"] == [0, 1]
    assert result.output_values == [10, 13]


def test_inputs_must_be_sequences():
    with pytest.raises(InvalidInputError, match="sequence of tokens"):
        evaluate(rasp.tokens, 5)
    assert evaluate(rasp.tokens, "ab") == ["a", "b"]
    assert evaluate(rasp.tokens, []) == []


def test_a_categorical_aggregate_selecting_true_and_1_is_a_mix():
    # Equal in Python, but a head copying one-hot categories cannot output both.
    flags = rasp.SequenceMap(lambda x, i: x == 1 if i == 0 else 1, rasp.tokens, rasp.indices)
    everything = rasp.Aggregate(select(rasp.Comparison.TRUE), flags).named("everything")
    with pytest.raises(EvaluationError, match=r"everything: .*different values \[True, 1\]"):
        evaluate(everything, [1, 1])
    assert evaluate(everything, [1]) == [True]
    same = rasp.Aggregate(select(rasp.Comparison.TRUE), rasp.Map(lambda x: 1, rasp.tokens))
    assert evaluate(same, [3, 4]) == [1, 1]


def test_numerical_sops_evaluate_to_floats():
    # A numerical dimension holds the number, not its type: what the model decodes.
    flag = rasp.numerical(rasp.Map(lambda x: x == 1, rasp.tokens))
    assert [type(v) for v in evaluate(flag, [1, 2])] == [float, float]
    assert evaluate(rasp.Map(str, flag, simplify=False), [1, 2]) == ["1.0", "0.0"]
    mean = rasp.numerical(rasp.Aggregate(select(rasp.Comparison.LT), rasp.numerical(
        rasp.Map(lambda x: x, rasp.tokens)), default=0))
    assert evaluate(mean, [1, 3]) == [0.0, 1.0] and type(evaluate(mean, [1])[0]) is float


def test_a_map_merged_into_its_reader_keeps_its_functions_result_not_a_float():
    """Issue 22, item 8. Map(f, Map(g, x)) is one Map of f(g(x)) over x (simplify=True, as in
    tracr, whose Map composes the functions and drops the inner Map): an inner numerical
    annotation goes with it, so f receives g's result (True), not the float a numerical SOp
    holds (1.0, what simplify=False gives). Model and evaluator agree on both; language.md
    says so."""
    from rasp_compiler.compiler.pipeline import compile_program

    flag = rasp.numerical(rasp.Map(lambda x: x > 1, rasp.tokens))
    merged = rasp.Map(str, flag)
    kept = rasp.Map(str, flag, simplify=False)
    assert merged.inner is rasp.tokens and rasp.is_categorical(merged)
    assert evaluate(merged, [1, 2]) == ["False", "True"]
    assert evaluate(kept, [1, 2]) == ["0.0", "1.0"]
    for program, expected in ((merged, ["False", "True"]), (kept, ["0.0", "1.0"])):
        model = compile_program(program, [1, 2], 2)
        assert model.run([[1, 2]]) == [expected]
    # The outer Map's annotations are the merged Map's: a numerical outer stays numerical.
    doubled = rasp.numerical(rasp.Map(lambda v: 2 * v, rasp.Map(lambda x: x > 1, rasp.tokens)))
    assert doubled.inner is rasp.tokens and evaluate(doubled, [1, 2]) == [0.0, 2.0]
