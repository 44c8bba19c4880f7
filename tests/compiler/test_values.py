import itertools
import json
import math
import random
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rasp_compiler import compile_program, lib, rasp
from rasp_compiler.errors import EvaluationError, InvalidProgramError, ValueSetTooLargeError
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.verify.fuzz import FuzzConfig, random_input, random_program
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.lang.identity import identity_key, same_value
from rasp_compiler.compiler.values import infer_values, sorted_values


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


def test_a_value_set_over_the_limit_is_refused_before_its_values_are_scanned(monkeypatch):
    # The (tokens, indices) pairs at vocab 1,000 and max_seq_len 400: 400,000
    # tuples took 4 s (vocab 5,000 at 128: 9 s) in the identity check before the count
    # refused them.
    from rasp_compiler.compiler import value_rules

    distinct_values = value_rules.distinct_values

    def no_scan(values, *args):
        assert len(values) <= 10_000, "the identity check ran on a value set over the limit"
        return distinct_values(values, *args)

    monkeypatch.setattr(value_rules, "distinct_values", no_scan)
    pairs = rasp.SequenceMap(lambda x, i: (x, i), rasp.tokens, rasp.indices).named("pairs")
    with pytest.raises(ValueSetTooLargeError,
                       match=r"pairs: this SequenceMap can take 400,000 or more distinct values, "
                             r"over the limit of 10,000.*round the values with a Map"):
        infer_values(pairs, range(1_000), 400)
    number = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), number, default=0))
    rounded = rasp.Map(lambda v: (round(v, 3),), mean).named("rounded")
    with pytest.raises(ValueSetTooLargeError, match="rounded: this Map can take 40,181"):
        infer_values(rounded, range(50), 64)


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
    except InvalidProgramError as error:  # inf/NaN Maps, refused by design
        assert "Use a finite number" in str(error)
        assume(False)
    # Categorical values must be in the set as the same value (True is not 1); numerical
    # ones as the same number.
    def key(label):
        return (lambda v: v) if rasp.is_numerical(graph.expr(label)) else identity_key

    keys = {label: set(map(key(label), values[label])) for label in graph.sops()}
    for label in graph.sops():  # each value once: 0 and 0.0 twice, 0 never twice
        assert len(keys[label]) == len(values[label]), (label, values[label])
    for _ in range(15):
        xs = random_input(rng, vocab, max_seq_len)
        try:
            result = evaluate_all(graph, xs)
        except EvaluationError:
            continue  # a categorical aggregate mixing values has no meaning
        for label in graph.sops():
            for position, value in enumerate(result[label]):
                assert key(label)(value) in keys[label], (label, position, value, xs)


_NUMBERS = rasp.numerical(rasp.Map(float, rasp.tokens))


@pytest.mark.parametrize("program, vocab, message", [
    (rasp.numerical(rasp.Map(lambda x: math.inf if x == 2 else x, rasp.tokens)), [1, 2],
     "this Map can be inf \\(returned on the input value 2, a value tokens can take\\)"),
    (rasp.Map(lambda x: math.nan if x == 1 else x, rasp.tokens), [1, 2],
     "this Map can be nan \\(returned on the input value 1"),
    (rasp.numerical(rasp.SequenceMap(lambda x, i: -math.inf if x == i else x, rasp.tokens,
                                     rasp.indices)), [1, 5],
     "this SequenceMap can be -inf \\(returned on the input values \\(1, 1\\)"),
    (rasp.numerical(rasp.LinearSequenceMap(_NUMBERS, _NUMBERS, math.nan, 1)), [1, 2],
     "its factor fst_fac is nan"),
    (rasp.numerical(rasp.Full(math.inf)), [1], "its fill is inf"),
    (rasp.Full(math.nan), [1], "its fill is nan"),
    (rasp.ConstantSOp([0, -math.inf], check_length=False), [1], "its value at position 1 is -inf"),
    (rasp.numerical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT),
                                   _NUMBERS, default=math.nan)), [1, 2], "its default is nan"),
    (rasp.tokens, [1, math.nan], "tokens: this TokensType can be nan \\(a token of the vocab\\)"),
    (rasp.numerical(rasp.LinearSequenceMap(rasp.numerical(rasp.Map(lambda x: 1e308, rasp.tokens)),
                                           _NUMBERS, 10, 1)), [1, 2],
     "this LinearSequenceMap can be inf"),
], ids=["numerical_map", "categorical_map", "sequence_map", "factor", "numerical_fill",
        "categorical_fill", "constant", "default", "vocab", "overflow"])
def test_non_finite_values_are_refused_naming_where_they_come_from(program, vocab, message):
    with pytest.raises(InvalidProgramError, match=f"{message}.*Use a finite number"):
        infer_values(program, vocab, 3)


def test_finite_values_pass_the_check_quickly():
    big = rasp.numerical(rasp.Map(lambda x: x * 1e300, rasp.tokens))
    total = rasp.numerical(rasp.LinearSequenceMap(big, big, 1, 1))  # 2e300 each: finite
    assert max(infer_values(total, range(5), 2)[total.label]) == 8e300


# --------------------------------------------------------------------------- equal but different


def _true_or_one():
    return rasp.Map(lambda x: True if x == 0 else 1, rasp.tokens).named("true_or_one")


def _same_values(got: tuple, expected: tuple) -> bool:
    return len(got) == len(expected) and all(map(same_value, got, expected))


def test_a_map_returning_true_and_1_holds_both_values():
    # The program: copied through an Aggregate then Map(str), the model said
    # 'True' where the evaluator said '1'. Both values are kept, each to its own dimension.
    copy = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ),
                          _true_or_one()).named("copy")
    text = rasp.Map(str, copy).named("text")
    values = infer_values(text, [0, 1, 2], 3)
    assert _same_values(values["true_or_one"], (True, 1))
    assert _same_values(values["copy"], (None, True, 1))
    assert values["text"] == (None, "1", "True")


@pytest.mark.parametrize("program, expected", [
    (lambda: rasp.Map(lambda x: -0.0 if x == 0 else 0.0, rasp.tokens), (-0.0, 0.0)),
    (lambda: rasp.Map(lambda x: 1.0 if x == 0 else 1, rasp.tokens), (1, 1.0)),
    (lambda: rasp.Map(lambda x: (x == 0,) if x == 0 else (1,), rasp.tokens), ((1,), (True,))),
    (lambda: rasp.SequenceMap(lambda x, i: x == i if i == 0 else 1, rasp.tokens, rasp.indices),
     (False, True, 1)),
    (lambda: rasp.SequenceMap(lambda a, b: 0 if a == b else (0.0 if a < b else 1),
                              rasp.tokens, rasp.indices), (0, 0.0, 1)),
    (lambda: rasp.ConstantSOp([1, True, 2, 1.0]), (True, 1, 1.0, 2)),
    (lambda: rasp.Full(-0.0), (-0.0,)),
    (lambda: rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT),
                            rasp.Map(lambda x: x > 0, rasp.tokens), default=0),
     (False, 0, True)),  # the default 0 beside the value False: two values
    (lambda: rasp.Map(lambda x: {0: 0, 1: 0.0, 2: -0.0}[x], rasp.tokens), (0, -0.0, 0.0)),
])
def test_categorical_sops_keep_equal_but_different_values_apart(program, expected):
    """Each value once, as identity.py tells values apart, in a fixed order: Python's order
    between classes of equal values, and within one bool, int, float (-0.0 first)."""
    sop = program()
    assert _same_values(infer_values(sop, [0, 1, 2], 2)[sop.label], expected)


def test_equal_values_of_one_identity_are_one_value():
    # np.int64(1) is the int 1 (identity.py), and a value repeated is listed once.
    sop = rasp.Map(lambda x: np.int64(1) if x == 0 else 1, rasp.tokens)
    assert infer_values(sop, [0, 1, 2], 2)[sop.label] == (1,)
    assert sorted_values([0.0, 0, 0.0, -0.0, 0, None]) == (None, 0, -0.0, 0.0)
    assert [type(v) for v in sorted_values([0.0, 0, False])] == [bool, int, float]
    # a set can hold only one of 0 and 0.0, and is sorted as it is
    assert sorted_values({2, 0, 1}) == (0, 1, 2)


def test_a_vocab_may_hold_1_and_true_as_two_tokens():
    values = infer_values(rasp.tokens, [1, True, 2, 1.0], 2)
    assert _same_values(values.vocab, (True, 1, 1.0, 2))
    assert _same_values(values["tokens"], (True, 1, 1.0, 2))
    assert _same_values(infer_values(rasp.tokens, [0.0, -0.0], 2).vocab, (-0.0, 0.0))
    assert infer_values(rasp.tokens, [1, 1, np.int64(1)], 2).vocab == (1,)  # one token


def test_numerical_sops_hold_numbers_as_floats():
    # One dimension holds the number: True, 1 and 1.0 are the same number there, and
    # functions reading it see the float the model computes with (as the evaluator does).
    mixed = rasp.numerical(rasp.Map(lambda x: True if x == 0 else x, rasp.tokens)).named("mixed")
    as_text = rasp.Map(str, mixed, simplify=False).named("as_text")
    values = infer_values(as_text, [0, 1, 2], 2)
    assert values["mixed"] == (1.0, 2.0) and all(type(v) is float for v in values["mixed"])
    assert values["as_text"] == ("1.0", "2.0")


def test_a_numerical_zero_has_no_sign():
    # A numerical dimension holds 0.0 and -0.0 as one number, and the value set kept
    # whichever came first: Map(str) of it said '0.0' where the evaluator said '-0.0'.
    zeros = rasp.numerical(rasp.Map(lambda x: -0.0 if x == 1 else 0.0 if x == 0 else 2.0,
                                    rasp.tokens)).named("zeros")
    as_text = rasp.Map(str, zeros, simplify=False).named("as_text")
    values = infer_values(as_text, [0, 1, 2], 2)
    assert [math.copysign(1, v) for v in values["zeros"]] == [1, 1]
    assert values["as_text"] == ("0.0", "2.0")
    assert evaluate_all(as_text, [1, 0]).values["as_text"] == ["0.0", "0.0"]


def test_categorical_linear_sequence_maps_keep_exact_values():
    total = rasp.LinearSequenceMap(rasp.tokens, rasp.indices, 2, 1).named("total")
    values = infer_values(total, [0, 1], 3)["total"]
    assert values == (0, 1, 2, 3, 4) and all(type(v) is int for v in values)


def test_numpy_ints_and_ints_are_one_value():
    same = rasp.Map(lambda x: np.int64(x) if x else 0, rasp.tokens).named("same")
    assert infer_values(same, [0, 1], 2)["same"] == (0, 1)


# --------------------------------------------------------------------------- issue 22


_NAN = float("nan")


@pytest.mark.parametrize("program, vocab, shown", [
    (rasp.Map(lambda x: (x, float("nan")), rasp.tokens).named("pair"), [1, 2],
     r"pair: this Map can be \(1, nan\) \(returned on the input value 1, a value tokens can take"),
    (rasp.Map(lambda x: frozenset([x, float("nan")]), rasp.tokens).named("both"), [1, 2],
     r"both: this Map can be frozenset\(\{.*nan.*\}\) \(returned on the input value 1"),
    (rasp.Map(lambda x: ((float("nan"),),), rasp.tokens).named("deep"), [1, 2],
     r"deep: this Map can be \(\(nan,\),\) \(returned on the input value 1"),
    (rasp.SequenceMap(lambda a, b: (a, float("nan")), rasp.tokens, rasp.indices).named("seq"),
     [1, 2], r"seq: this SequenceMap can be \(1, nan\) \(returned on the input values \(1, 0\)"),
    (rasp.Map(lambda x: (x, math.nan), rasp.tokens).named("same_nan"), [1, 2],  # one NaN object
     r"same_nan: this Map can be \(1, nan\)"),
    (rasp.Map(lambda x: (x, np.float64("nan")), rasp.tokens).named("numpy_nan"), [1, 2],
     r"numpy_nan: this Map can be \(1, np.float64\(nan\)\)"),
    (rasp.Map(lambda x: complex(x, _NAN), rasp.tokens).named("complex"), [1, 2],
     r"complex: this Map can be \(1\+nanj\)"),
    (rasp.SequenceMap(lambda a, b: (a, b), rasp.tokens, rasp.Full((1, _NAN)).named("fill")),
     [1, 2], r"fill: its fill is \(1, nan\)"),
    (rasp.ConstantSOp([(1,), (2, _NAN)]).named("constant"), [1, 2],
     r"constant: its value at position 1 is \(2, nan\)"),
    (rasp.tokens, [1, (2, _NAN)], r"tokens: this TokensType can be \(2, nan\) \(a token of the vocab\)"),
], ids=["tuple", "frozenset", "nested", "sequence_map", "one_nan_object", "numpy", "complex",
        "fill", "constant", "vocab"])
def test_nan_inside_a_tuple_or_frozenset_is_refused_naming_the_sop_and_value(program, vocab, shown):
    """Issue 22, item 1: these gave a raw KeyError from lower.py (NaN != NaN, so a dict keyed
    by the value missed it). Not compilable exactly: a value holding NaN is not equal to
    itself, so no residual dimension can stand for it and no output could match the
    evaluator's. Even with one NaN object (math.nan) two tuples holding it compare equal
    only because tuples compare their items by identity first: refused as well."""
    with pytest.raises(InvalidProgramError, match=shown + r".*it holds NaN, which is not equal "
                                                          r"to itself.*string 'nan'"):
        compile_program(program, vocab, 2)


def test_inf_inside_a_tuple_is_a_category_and_compiles_exactly(tmp_path):
    """inf equals itself, so a tuple holding it names a category like any other (a top-level
    inf is refused: it would be summed). It is saved and loaded too."""
    from rasp_compiler import CompiledModel

    program = rasp.Map(lambda x: (x, math.inf if x == 1 else -math.inf), rasp.tokens)
    model = compile_program(program, [1, 2], 3)
    expected = [[(1, math.inf), (2, -math.inf), (1, math.inf)]]
    assert model.run([[1, 2, 1]]) == [program([1, 2, 1])] == expected
    model.save(tmp_path / "m")
    assert CompiledModel.load(tmp_path / "m").run([[1, 2, 1]]) == expected


def test_a_huge_max_seq_len_is_refused_from_the_arguments_in_bounded_time_and_memory():
    """Issue 22, item 2: indices' and length's value sets were built as
    set(range(max_seq_len)) before the 10,000-value limit was checked: 4.6 s and 760 MB
    for 10^7, a raw MemoryError (or the kernel's OOM killer) for 99,999,999,999,999.
    Measured in a fresh process (VmHWM: its own peak, which includes importing jax, about
    200 MB)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import contextlib, io, json, resource, time
        from rasp_compiler import compile_program, lib, rasp
        from rasp_compiler.cli import main
        from rasp_compiler.errors import ValueSetTooLargeError
        out = []
        for n in (10_000_000, 99_999_999_999_999):
            started = time.perf_counter()
            try:
                compile_program(lib.make_reverse(rasp.tokens), ["a", "b"], n)
            except ValueSetTooLargeError as error:
                out.append([time.perf_counter() - started, str(error)])
        started = time.perf_counter()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main(["compile", "reverse", "--max-seq-len", "99999999999999"])
        out.append([time.perf_counter() - started, status, err.getvalue()])
        try:  # this process's peak: ru_maxrss would carry pytest's, through fork and exec
            with open("/proc/self/status") as status_file:
                peak = next(int(line.split()[1]) * 1024 for line in status_file
                            if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out.append(peak)
        print(json.dumps(out))
    """)
    import os
    from pathlib import Path

    import rasp_compiler

    root = str(Path(rasp_compiler.__file__).resolve().parents[1])  # this checkout's package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=300, env=env)
    (seconds_7, message_7), (seconds_14, message_14), (cli_seconds, status, cli), peak = (
        json.loads(result.stdout.splitlines()[-1]))
    assert message_7.startswith("indices: at max_seq_len=10,000,000 it takes 10,000,000 values "
                                "(0..9,999,999), over the limit of 10,000 (max_value_set_size); "
                                "lower max_seq_len (--max-seq-len on the command line) or raise "
                                "compile_program's max_value_set_size")
    assert "max_seq_len=99,999,999,999,999" in message_14
    assert status == 2 and cli.count("\n") == 1
    assert cli.startswith("rasp-compiler: error: indices: at max_seq_len=99,999,999,999,999")
    assert max(seconds_7, seconds_14, cli_seconds) < 2.0, (seconds_7, seconds_14, cli_seconds)
    assert peak < 500e6, f"peak memory {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("program, options, message", [
    (rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)).named("w"),
     {}, r"w \(a SelectorWidth\): at max_seq_len=20,000 it takes 20,001 values \(0..20,000\), "
         r"over the limit of 10,000 \(max_value_set_size\)"),
    (rasp.length, {"max_value_set_size": 100},
     r"length: at max_seq_len=20,000 it takes 20,000 values \(1..20,000\), over the limit of 100"),
    (rasp.numerical(rasp.Map(lambda i: i / 2, rasp.numerical(rasp.indices))),
     {"max_numerical_value_set_size": 5_000},
     r"indices: .* over the limit of 5,000 \(max_numerical_value_set_size\); .* raise "
     r"compile_program's max_numerical_value_set_size"),
    (rasp.Aggregate(rasp.ConstantSelector([[True]], check_length=False).named("fixed"),
                    rasp.tokens), {},
     r"fixed \(a ConstantSelector, read as indices\): at max_seq_len=20,000 it takes 20,000 "
     r"values \(the indices 0..19,999\)"),
], ids=["selector_width", "length", "numerical_indices", "constant_selector"])
def test_sops_that_grow_with_max_seq_len_are_refused_before_any_set_is_built(
        program, options, message, monkeypatch):
    from rasp_compiler.compiler import value_rules

    def no_rule(*args):
        raise AssertionError("a value-set rule ran before the length bound was checked")

    monkeypatch.setattr(value_rules, "RULES", {kind: no_rule for kind in value_rules.RULES})
    with pytest.raises(ValueSetTooLargeError, match=message):
        infer_values(program, [1, 2], 20_000, **options)


def test_a_mean_of_one_value_is_listed_at_once_at_any_length():
    """The means of copies of one number are that number: listing them no longer runs
    max_seq_len steps (10 million took 37 s; 10^14 would never end)."""
    constant = rasp.numerical(rasp.Map(lambda x: 0.25, rasp.tokens))
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    mean = rasp.numerical(rasp.Aggregate(select, constant, default=0)).named("mean")
    other = rasp.numerical(rasp.Aggregate(select, rasp.numerical(rasp.Map(lambda x: 3, rasp.tokens)),
                                          default=1))
    both = rasp.numerical(rasp.LinearSequenceMap(mean, other, 2, -1)).named("both")
    started = time.perf_counter()
    values = infer_values(both, [1, 2, 3], 10**14)
    assert time.perf_counter() - started < 1
    assert values["mean"] == (0.0, 0.25)
    assert values["both"] == (-2.5, -1.0)  # 2 * 0.25 - 3, and the defaults 2 * 0 - 1
    assert set(values["both"]) == set(infer_values(both, [1, 2, 3], 3)["both"])


def _sum_of_means(terms: int) -> rasp.SOp:
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    means = [rasp.numerical(rasp.Aggregate(prefix, rasp.numerical(
        rasp.Map(lambda v, i=i: float(v == i % 3), rasp.tokens)), default=0)) for i in range(terms)]
    total = means[0]
    for mean in means[1:]:
        total = rasp.numerical(rasp.LinearSequenceMap(total, mean, 1, 1))
    return total


def test_a_long_sum_of_means_is_refused_in_seconds(monkeypatch):
    """Issue 22: summing 400 numerical Aggregates took 38 s to reach ValueSetTooLargeError.
    Float rounding makes each partial sum take more values than the last (877,486 after 51
    terms at max_seq_len 8, where exact fractions would give 42,841), so listing them all
    costs about k^3 (348 million sums here); the program's sums are now bounded as a whole,
    and the refusal comes after about 1.5 s."""
    from rasp_compiler.compiler import value_rules

    listed = []
    distinct_sums = value_rules._distinct_sums

    def counted(left, right):
        listed.append(len(left) * len(right))
        return distinct_sums(left, right)

    monkeypatch.setattr(value_rules, "_distinct_sums", counted)
    started = time.perf_counter()
    with pytest.raises(ValueSetTooLargeError,
                       match=r"linear_sequence_map_\d+: listing the values of this program's "
                             r"numerical LinearSequenceMaps needs more than 100,000,000 sums"
                             r".*float rounding.*Sum fewer terms"):
        infer_values(_sum_of_means(400), [0, 1, 2], 8)
    assert sum(listed) <= 100_000_000
    assert time.perf_counter() - started < 30  # a safety net only, for a loaded machine


def test_shorter_sums_of_means_list_exactly_the_evaluators_floats():
    program = _sum_of_means(6)
    values = infer_values(program, [0, 1, 2], 3)[program.label]
    reachable = {v for n in range(1, 4) for xs in itertools.product([0, 1, 2], repeat=n)
                 for v in evaluate_all(program, list(xs))[program.label]}
    assert reachable <= set(values)
    assert list(values) == sorted(set(values))
    assert all(type(v) is float for v in values)
    assert not any(v == 0 and math.copysign(1, v) < 0 for v in values)  # no -0.0


def test_distinct_sums_equal_numpys_unique_and_keep_no_negative_zero():
    from rasp_compiler.compiler.value_rules import _distinct_sums

    rng = np.random.default_rng(0)
    left = np.concatenate((rng.integers(-5, 5, 300) / 4, [-0.0, 0.0]))
    right = np.concatenate((rng.integers(-5, 5, 7) / 8, [-0.0]))
    got = _distinct_sums(left, right)
    assert np.array_equal(got, np.unique(np.add.outer(left, right)))
    assert not np.signbit(got[got == 0]).any()
    assert _distinct_sums(np.array([-0.0]), np.array([-0.0])).tolist() == [0.0]


def test_large_float_sets_sort_as_python_sorts_them():
    rng = random.Random(0)
    values = {rng.uniform(-1e6, 1e6) for _ in range(30_000)} | {0.0, 5e-324, -math.inf}
    assert sorted_values(values) == tuple(sorted(values))


def test_a_mean_of_two_values_past_its_limit_is_refused_from_max_seq_len():
    """With c = limit + 1 <= max_seq_len positions, the means of j highs and c - j lows are
    c + 1 values far enough apart for floats to keep them apart: refused at once (at
    max_seq_len 10^7 listing them took 4 s before the limit stopped it)."""
    two = rasp.numerical(rasp.Map(lambda x: float(x > 1), rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ),
                                         two, default=0)).named("mean")
    started = time.perf_counter()
    with pytest.raises(ValueSetTooLargeError, match=r"mean: this Aggregate can take 2,000,002 or "
                                                    r"more distinct values, over the limit of "
                                                    r"2,000,000"):
        infer_values(mean, [1, 2, 3], 10**7)
    assert time.perf_counter() - started < 1
    # Sound: where it refuses early, listing every mean finds more than the limit too.
    with pytest.raises(ValueSetTooLargeError, match="can take 52 or more"):
        infer_values(mean, [1, 2, 3], 51, max_numerical_value_set_size=50)
    assert len(infer_values(mean, [1, 2, 3], 51)["mean"]) > 50
    # Values too close for floats to keep apart at that count are listed, not refused early.
    close = rasp.numerical(rasp.Map(lambda x: 1e15 + (x > 1) * 0.125, rasp.tokens))
    tiny = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ),
                                         close, default=0)).named("tiny")
    assert len(infer_values(tiny, [1, 2], 40, max_numerical_value_set_size=30)["tiny"]) <= 30
