"""The batched evaluator equals the scalar one: every node, every case, fuzzed programs."""

import itertools
import math
import random

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.lang.batch_evaluator import DENSE_PAIR_LIMIT, evaluate_batch, evaluate_inputs
from rasp_compiler.lang.coded import Coded, Numbers, outputs_differ
from rasp_compiler.errors import EvaluationError, InvalidInputError
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.verify.fuzz import FuzzConfig, random_program
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.lang.identity import same_value

from cases import CASES


def _same(a, b) -> bool:
    """The same value (identity.py), NaN equal to NaN, also inside tuples, frozensets and
    complex numbers (the fuzzer draws them: the compiler refuses them, the evaluators agree
    on them), lists and tuples element by element."""
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is type(b) and isinstance(a, tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if type(a) is type(b) is complex:
        return _same(a.real, b.real) and _same(a.imag, b.imag)
    if type(a) is type(b) is frozenset:  # NaN items match NaN items, the rest by value
        def split(items):
            nan = [x for x in items if isinstance(x, float) and math.isnan(x)]
            return len(nan), frozenset(x for x in items if not (isinstance(x, float)
                                                                and math.isnan(x)))
        (count_a, rest_a), (count_b, rest_b) = split(a), split(b)
        return count_a == count_b and same_value(rest_a, rest_b)
    return same_value(a, b)


def assert_equal_to_scalar(program, vocab, inputs, causal=False):
    """Every node of the batched evaluation equals the scalar one on each input; an
    input the scalar evaluator raises EvaluationError on is undefined, naming the same
    label and position. Inputs are grouped by length."""
    graph = build_graph(program)
    by_length = {}
    for xs in inputs:
        by_length.setdefault(len(xs), []).append(list(xs))
    index = {token: i for i, token in enumerate(vocab)}
    for n, group in sorted(by_length.items()):
        ids = np.array([[index[t] for t in xs] for xs in group]).reshape(len(group), n)
        batch = evaluate_batch(graph, ids, vocab, causal=causal)
        for b, xs in enumerate(group):
            try:
                reference = evaluate_all(graph, xs, causal=causal)
            except EvaluationError as error:
                assert batch.undefined[b], (xs, "the scalar evaluator raised", error)
                assert batch.failure_label[b] == error.label, (xs, error)
                assert batch.failure_position[b] == (-1 if error.position is None
                                                     else error.position), (xs, error)
                continue
            assert not batch.undefined[b], (xs, "undefined only in the batched evaluator")
            row = batch.row(b)
            assert row.keys() == dict(reference.values).keys()
            for label, value in reference.values.items():
                assert _same(value, row[label]), (xs, label, value, row[label])


def _case_inputs(case, rng):
    """Every input of 1 and 2 tokens, and a dozen longer ones up to max_seq_len."""
    short = [list(xs) for n in (1, 2) for xs in itertools.product(case.vocab, repeat=n)]
    longer = [[rng.choice(case.vocab) for _ in range(rng.randint(3, case.max_seq_len))]
              for _ in range(12)]
    return short + longer


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_case_every_node_equals_the_scalar_evaluator(case):
    program = case.factory(case.max_seq_len)
    inputs = _case_inputs(case, random.Random(case.name))
    assert_equal_to_scalar(program, case.vocab, inputs)
    assert_equal_to_scalar(program, case.vocab, inputs, causal=True)


def test_fuzzed_programs_every_node_equal_the_scalar_evaluator():
    """A campaign of random programs (with extreme numbers: inf, NaN, large offsets),
    every node, both meanings, on inputs of 1..4 tokens."""
    vocab = (0, 1, 2, 3)
    for seed in range(120):
        rng = random.Random(seed)
        program = random_program(rng, FuzzConfig(size=rng.randint(2, 7), extreme_rate=0.05))
        inputs = [list(xs) for n in (1, 2) for xs in itertools.product(vocab, repeat=n)]
        inputs += [[rng.choice(vocab) for _ in range(rng.randint(3, 4))] for _ in range(10)]
        for causal in (False, True):
            try:
                assert_equal_to_scalar(program, vocab, inputs, causal=causal)
            except (OverflowError, ValueError) as error:
                # A mean of inf or NaN: the scalar evaluator's Fraction raises too.
                with pytest.raises(type(error)):
                    for xs in inputs:
                        evaluate_all(program, xs, causal=causal)


def test_none_defaults_and_composite_selectors():
    shifted = lib.shift_by(1, rasp.tokens)  # None at position 0
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    later = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.GT)
    composite = (same & ~later) | rasp.Select(shifted, rasp.tokens, rasp.Comparison.LT)
    width = rasp.SelectorWidth(composite)
    picked = rasp.Aggregate(same & later, shifted, default="none")
    mean = rasp.numerical(rasp.Aggregate(
        composite, rasp.numerical(rasp.Map(lambda x: x / 4, rasp.tokens)), default=-1))
    program = rasp.SequenceMap(lambda w, p: (w, p), width, picked)
    program = rasp.SequenceMap(lambda wp, m: (wp, m), program, mean)
    inputs = [list(xs) for n in range(1, 5) for xs in itertools.product((0, 1, 2), repeat=n)]
    assert_equal_to_scalar(program, (0, 1, 2), inputs)
    assert_equal_to_scalar(program, (0, 1, 2), inputs, causal=True)


def test_a_numerical_zero_computed_as_minus_zero_reads_as_zero():
    """-0.5 * 0.0 - 0.5 * 0.0 is -0.0 in numpy; a numerical SOp holds the number, so str of it is '0.0'
    in both evaluators and in the model (whose value set has one zero)."""
    x = rasp.numerical(rasp.Map(float, rasp.tokens, simplify=False))
    negated = rasp.numerical(rasp.LinearSequenceMap(x, x, -0.5, -0.5))
    as_text = rasp.Map(str, negated, simplify=False)
    assert evaluate_inputs(as_text, [[0, 1]]).lists(as_text.label) == [["0.0", "-1.0"]]
    assert_equal_to_scalar(as_text, (0, 1), [[0, 1], [1, 0]])


def test_identity_true_one_and_one_point_zero_are_different_values():
    """A categorical Aggregate selecting True and 1 mixes values (as in the scalar
    evaluator); a numerical one averages them as numbers."""
    mixed = rasp.Map(lambda x: True if x == 0 else 1, rasp.tokens, simplify=False)
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    categorical = rasp.Aggregate(everything, mixed)
    numerical = rasp.numerical(rasp.Aggregate(everything, rasp.numerical(
        rasp.Map(lambda x: True if x == 0 else 1.0, rasp.tokens, simplify=False))))
    batch = evaluate_inputs(categorical, [[0, 1], [1, 1], [0, 0]])
    assert batch.undefined.tolist() == [True, False, False]
    assert batch.failure_label[0] == categorical.label and batch.failure_position[0] == 0
    assert [batch.row_value(categorical.label, b, 0) for b in (1, 2)] == [1, True]
    assert type(batch.row_value(categorical.label, 2, 0)) is bool
    assert evaluate_inputs(numerical, [[0, 1]]).lists(numerical.label) == [[1.0, 1.0]]
    assert_equal_to_scalar(categorical, (0, 1), [[0, 1], [1, 1], [0, 0], [1, 0]])


def test_a_map_is_called_once_per_distinct_value_not_per_position():
    calls = []

    def double(x):
        calls.append(x)
        return 2 * x

    doubled = rasp.Map(double, rasp.tokens)
    ids = np.array(list(itertools.product(range(3), repeat=6)))  # 729 inputs, 4,374 positions
    batch = evaluate_batch(doubled, ids, ("a", "b", "c"))
    assert sorted(calls) == ["a", "b", "c"]
    assert batch.lists(doubled.label)[5] == ["aa"] * 4 + ["bb", "cc"]


def test_a_function_that_raises_makes_only_its_inputs_undefined():
    inverse = rasp.Map(lambda x: 1 / x, rasp.tokens)
    batch = evaluate_inputs(inverse, [[1, 2], [2, 0], [0, 0], [2, 2]])
    assert batch.undefined.tolist() == [False, True, True, False]
    assert batch.lists(inverse.label)[3] == [0.5, 0.5]


def test_numerical_means_are_exact_and_fall_back_when_float64_could_round():
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    thirds = rasp.numerical(rasp.Aggregate(prefix, rasp.numerical(
        rasp.Map(lambda x: x / 3, rasp.tokens)), default=0))  # not dyadic: the exact rule
    halves = rasp.numerical(rasp.Aggregate(prefix, rasp.numerical(
        rasp.Map(lambda x: x / 2 - 0.25, rasp.tokens)), default=0))
    big = rasp.numerical(rasp.Aggregate(prefix, rasp.numerical(
        rasp.Map(lambda x: 1e16 + x, rasp.tokens)), default=0))  # float64 sums would round
    inputs = [list(xs) for xs in itertools.product((0, 1, 2), repeat=4)]
    for program in (thirds, halves, big):
        assert_equal_to_scalar(program, (0, 1, 2), inputs)
    batch = evaluate_inputs(halves, [[1, 0, 0]])
    assert isinstance(batch.values[halves.label], Numbers)
    assert batch.lists(halves.label) == [[0.25, 0.0, -1 / 12]]


def test_values_the_same_on_every_input_are_computed_once_and_stay_exact():
    """indices, length and what is computed from them alone are held broadcast over the
    batch (batch stride 0), on one row: the Select, its width, a mean over it; a TRUE
    Select of tokens is one matrix too. Masked (causal) or not, equal to the scalar rule,
    and a mixture with per-input values is per input again."""
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    last = rasp.Map(lambda n: n - 1, rasp.SelectorWidth(everything))
    at_last = rasp.Select(rasp.indices, last, rasp.Comparison.EQ)
    is_b = rasp.numerical(rasp.Map(lambda t: 1 if t == "b" else 0, rasp.tokens))
    frac = rasp.numerical(rasp.Aggregate(prefix, is_b, default=0))
    final = rasp.numerical(rasp.Aggregate(at_last, frac, default=0))
    both = rasp.SelectorWidth(prefix & rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))
    program = rasp.SequenceMap(lambda x, w: (x, w), final, both)
    inputs = [list(xs) for xs in itertools.product("ab", repeat=4)]
    for causal in (False, True):
        assert_equal_to_scalar(program, ("a", "b"), inputs, causal=causal)
        batch = evaluate_inputs(program, inputs, causal=causal)
        for uniform in (prefix, everything, at_last):
            assert batch.values[uniform.label].strides[0] == 0, uniform.label
        assert batch.coded(last.label).codes.strides[0] == 0
        assert batch.values[frac.label].values.strides[0] != 0  # depends on the tokens
        assert batch.values[both.label].codes.strides[0] != 0


def test_a_predicate_that_raises_on_a_uniform_select_makes_every_input_undefined():
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: 1 / (k - q) > 0)
    program = rasp.SelectorWidth(select)
    assert_equal_to_scalar(program, (0, 1), [[0, 1], [1, 1]])
    assert evaluate_inputs(program, [[0, 1], [1, 1]]).undefined.tolist() == [True, True]


def test_numerical_values_are_coded_even_past_the_sample():
    """A computed numerical SOp's distinct values are found from the first rows and a
    binary search of the rest; values only later rows hold are still told apart."""
    from rasp_compiler.lang.coded import sorted_codes as _sorted_codes

    keys = np.array([[3, 1], [1, 3], [7, 3], [0, 9]], dtype=np.uint64)
    unique, codes = _sorted_codes(keys, sample=2)
    expected, inverse = np.unique(keys, return_inverse=True)
    assert unique.tolist() == expected.tolist()
    assert codes.tolist() == inverse.reshape(keys.shape).tolist()
    x = rasp.numerical(rasp.Map(float, rasp.tokens))
    doubled = rasp.numerical(rasp.LinearSequenceMap(x, x, 1, 1))  # no table of its own
    label = rasp.Map(str, doubled)
    inputs = [[1, 1]] * 5000 + [[0, 2]]  # 0.0 and 4.0 only in the last row
    batch = evaluate_inputs(label, inputs)
    assert batch.values[doubled.label].coded is None
    assert batch.lists(label.label)[-1] == ["0.0", "4.0"]
    assert batch.lists(label.label)[0] == ["2.0", "2.0"]


@pytest.mark.parametrize("comparison", list(rasp.Comparison), ids=lambda c: c.name)
def test_comparisons_of_numbers_are_computed_by_numpy_as_python_computes_them(comparison):
    """Comparisons of plain numbers run as numpy array comparisons; at the edges where
    float64 is not Python (ints past 2^53) or values are not numbers, per pair."""
    from rasp_compiler.lang.batch_selectors import compare_numbers as _compare_numbers

    values = {0: 2 ** 53, 1: 2 ** 53 + 1, 2: -0.0, 3: 0, 4: float("nan"), 5: None, 6: 0.5}
    key = rasp.Map(lambda t: values[t], rasp.tokens)
    query = rasp.Map(lambda t: values[(t + 3) % 7], rasp.tokens)
    program = rasp.SelectorWidth(rasp.Select(key, query, comparison))
    inputs = [list(xs) for xs in itertools.product(range(7), repeat=2)]
    assert_equal_to_scalar(program, tuple(range(7)), inputs)
    plain = [2 ** 53, -0.0, 0, float("nan"), None, 0.5]
    vectorised = _compare_numbers(comparison, plain, plain)
    assert (vectorised is None) == (comparison in (rasp.Comparison.TRUE, rasp.Comparison.FALSE))
    assert _compare_numbers(comparison, [2 ** 53 + 1], [1.0]) is None
    assert _compare_numbers(comparison, [True], [1]) is None


def test_large_value_tables_take_the_sparse_path():
    """Keys and queries with more distinct pairs than DENSE_PAIR_LIMIT: the predicate
    and the pair function are called per distinct pair present, still exact."""
    wide = rasp.SequenceMap(lambda x, i: x * 1000 + i, rasp.tokens, rasp.indices)
    wider = rasp.SequenceMap(lambda a, b: a * 10**6 + b, wide, wide)
    select = rasp.Select(wider, wider, lambda k, q: (k + q) % 3 == 0)
    program = rasp.SelectorWidth(select)
    rng = random.Random(0)
    inputs = [[rng.randrange(300) for _ in range(6)] for _ in range(60)]
    ids = np.array(inputs)
    batch = evaluate_batch(program, ids, tuple(range(300)))
    assert len(batch.coded(wider.label).table) ** 2 > DENSE_PAIR_LIMIT
    assert_equal_to_scalar(program, tuple(range(300)), inputs)


def test_causal_mode_masks_every_selector_and_counts_length_so_far():
    program = rasp.SequenceMap(lambda w, l: (w, l), rasp.SelectorWidth(
        ~rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)), rasp.length)
    batch = evaluate_inputs(program, [["a", "b", "a"]], causal=True)
    assert batch.lists(program.label) == [[(0, 1), (1, 2), (1, 3)]]


def test_constant_sop_of_the_wrong_length_is_undefined_everywhere():
    program = rasp.ConstantSOp([1, 2, 3])
    assert evaluate_inputs(program, [[0, 0], [1, 1]]).undefined.tolist() == [True, True]
    assert not evaluate_inputs(program, [[0, 0, 0]]).undefined.any()


def test_outputs_differ_follows_the_evaluators_sameness():
    a = Coded((1, -0.0, "x"), np.array([[0, 1, 2]]))
    b = Coded((True, 0.0, "x"), np.array([[0, 1, 2]]))
    # True is not 1, nor -0.0 0.0: different values of a categorical SOp (identity.py)
    assert outputs_differ(a, b).tolist() == [[True, True, False]]
    x = Numbers(np.array([[1.0, 2.0, 0.0]]), np.array([[False, False, True]]))
    y = Numbers(np.array([[1.0 + 1e-15, 2.1, 0.0]]), np.array([[False, False, True]]))
    assert outputs_differ(x, y).tolist() == [[False, True, False]]


def test_bad_ids_are_refused_clearly():
    with pytest.raises(InvalidInputError, match="2-D integer array"):
        evaluate_batch(rasp.tokens, np.zeros(3, dtype=int), ("a",))
    with pytest.raises(InvalidInputError, match=r"0\.\.1"):
        evaluate_batch(rasp.tokens, np.array([[2]]), ("a", "b"))
    with pytest.raises(InvalidInputError, match="one length"):
        evaluate_inputs(rasp.tokens, [["a"], ["a", "b"]])
