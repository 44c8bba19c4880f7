import itertools
import logging

import pytest

from rasp_compiler import rasp
from rasp_compiler.errors import EvaluationError, InvalidProgramError


def test_ids_are_drawn_lazily_and_labels_are_tracrs():
    rasp.RASPExpr._ids = itertools.count(1)  # tracr's reset
    first = rasp.Map(lambda x: x, rasp.tokens)
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    second = rasp.Map(lambda x: x, rasp.tokens)
    assert "unique_id" not in vars(first)  # building draws no id
    assert repr(first) == "Map('map (no id yet)')" and "unique_id" not in vars(first)
    assert (first.name, select.name, second.name) == ("map", "select", "map")
    assert second.label == "map_1"  # drawn on first read, in read order
    assert first.label == "map_2" and select.label == "select_3"
    assert first.unique_id == 2 and first.label == "map_2"  # and then kept
    named = second.named("mine")
    assert named.label == "mine" and named.name == "mine" and named is not second
    assert second.label == "map_1"  # the original keeps its name and label
    assert rasp.Map(lambda x: x, rasp.tokens).named("map").label.startswith("map_")  # a default
    rasp.RASPExpr._ids = itertools.count(1)
    again = [rasp.Map(lambda x: x, rasp.tokens) for _ in range(2)]
    assert [e.label for e in again] == ["map_1", "map_2"]  # reset + rebuild: same labels


def test_copy_is_shallow_with_a_new_id():
    inner = rasp.Map(lambda x: x + 1, rasp.tokens)
    outer = rasp.Map(lambda x: x * 2, inner, simplify=False).named("outer")
    clone = outer.copy()
    assert clone is not outer and clone.inner is inner and clone.name == "outer"
    assert clone.unique_id != outer.unique_id
    unnamed = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))
    assert unnamed.copy().label != unnamed.label


def test_primitives_have_fixed_labels_and_never_change():
    assert rasp.tokens.label == "tokens"
    assert rasp.indices.label == "indices"
    assert rasp.length.label == "length"
    assert rasp.TokensType().label == "tokens"  # as in tracr: every instance is the input
    foo = rasp.tokens.named("foo")
    assert foo is not rasp.tokens and foo.name == "foo" and foo.label == "tokens"
    assert rasp.tokens.name == "tokens"
    numbers = rasp.numerical(rasp.indices)
    assert isinstance(numbers, rasp.IndicesType) and numbers.label == "indices"
    assert rasp.is_numerical(numbers) and rasp.is_categorical(rasp.indices)
    assert rasp.Full((1, 2)).fill == (1, 2)  # tuples are hashable values


def test_annotations_are_copies_with_lazy_defaults():
    sop = rasp.Map(lambda x: x + 1, rasp.tokens)
    assert rasp.is_categorical(sop)
    num = rasp.numerical(sop)
    assert num is not sop and rasp.is_numerical(num) and rasp.is_categorical(sop)
    assert rasp.get_encoding(num) is rasp.Encoding.NUMERICAL
    back = rasp.categorical(num)
    assert rasp.is_categorical(back) and rasp.is_numerical(num)
    noted = sop.annotated(note="x")
    assert noted.annotations["note"] == "x" and "note" not in sop.annotations
    assert rasp.is_categorical(noted)
    assert rasp.annotate(sop, name="s").name == "s" and sop.name == "map"
    with pytest.raises(KeyError, match="no annotation 'colour'"):
        sop.annotations["colour"]
    rasp.DEFAULT_ANNOTATORS["colour"] = lambda expr: "blue"
    try:
        assert sop.annotations["colour"] == "blue"
        assert rasp.annotate(sop, colour="red").annotations["colour"] == "red"
    finally:
        del rasp.DEFAULT_ANNOTATORS["colour"]
    assert rasp.default_name(sop) == "map" and rasp.default_encoding(sop) is rasp.Encoding.CATEGORICAL
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    with pytest.raises(InvalidProgramError, match="only SOps have an encoding"):
        select.annotations["encoding"]


def test_sequence_map_of_one_sop_twice_logs_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, rasp.tokens)
    assert "reads tokens as both of its inputs" in caplog.text and "rasp.Map" in caplog.text


def test_map_simplifies_nested_maps_like_tracr():
    inner = rasp.Map(lambda x: x + 1, rasp.tokens)
    outer = rasp.Map(lambda x: x * 10, inner)
    assert outer.inner is rasp.tokens
    assert outer([1, 2]) == [20, 30]
    kept = rasp.Map(lambda x: x * 10, inner, simplify=False)
    assert kept.inner is inner
    assert kept([1, 2]) == [20, 30]


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda s: s + 1, [2, 3, 4]),
        (lambda s: 1 + s, [2, 3, 4]),
        (lambda s: s - 1, [0, 1, 2]),
        (lambda s: 10 - s, [9, 8, 7]),
        (lambda s: s * 2, [2, 4, 6]),
        (lambda s: 2 * s, [2, 4, 6]),
        (lambda s: s / 2, [0.5, 1.0, 1.5]),
        (lambda s: 6 / s, [6.0, 3.0, 2.0]),
        (lambda s: s < 2, [True, False, False]),
        (lambda s: s <= 2, [True, True, False]),
        (lambda s: s > 2, [False, False, True]),
        (lambda s: s >= 2, [False, True, True]),
        (lambda s: s == 2, [False, True, False]),
        (lambda s: s != 2, [True, False, True]),
        (lambda s: ~(s == 2), [True, False, True]),
        (lambda s: (s == 2) | (s == 3), [False, True, True]),
        (lambda s: (s > 1) & (s < 3), [False, True, False]),
        (lambda s: s + s, [2, 4, 6]),
        (lambda s: s * rasp.indices, [0, 2, 6]),
        (lambda s: s - rasp.indices, [1, 1, 1]),
        (lambda s: 0 | (s == 2), [False, True, False]),
        (lambda s: 1 & (s == 2), [False, True, False]),
    ],
)
def test_operator_overloads_build_maps_and_sequence_maps(build, expected):
    sop = build(rasp.tokens)
    assert isinstance(sop, (rasp.Map, rasp.SequenceMap))
    assert sop([1, 2, 3]) == expected


def test_selector_operators_build_composite_selectors():
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    assert isinstance(a & b, rasp.SelectorAnd) and (a & b).fst is a
    assert isinstance(a | b, rasp.SelectorOr)
    assert isinstance(~(a & b), rasp.SelectorNot)


def test_linear_sequence_map_and_constants():
    lsm = rasp.LinearSequenceMap(rasp.tokens, rasp.indices, 2, -1)
    assert lsm([5, 5, 5]) == [10, 9, 8]
    assert rasp.Full(7)([1, 2]) == [7, 7]
    assert rasp.ConstantSOp([4, 5])([1, 2]) == [4, 5]


@pytest.mark.parametrize("comparison", list(rasp.Comparison))
def test_comparisons_are_called_key_first_and_negate_exactly(comparison):
    for key in range(3):
        for query in range(3):
            assert comparison(key, query) != comparison.negated()(key, query)
    assert rasp.Comparison.LT(1, 2) is True  # key < query
    with pytest.raises(EvaluationError, match=f"Comparison.{comparison.name} was called with "
                                              r"key=None, query=1; .*test for None"):
        comparison(None, 1)  # an EvaluationError is a ValueError, as tracr raises


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: rasp.Map(lambda x: x, 3), "must be an SOp.*rasp.Full"),
        (lambda: rasp.Map(3, rasp.tokens), "plain Python function"),
        (lambda: rasp.SequenceMap(lambda x, y: x, rasp.tokens, "a"), "second input"),
        (lambda: rasp.Aggregate(rasp.tokens, rasp.tokens), "selector of Aggregate"),
        (lambda: rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ),
                                rasp.tokens, default=[1]), "default must be"),
        (lambda: rasp.Select(rasp.tokens, rasp.tokens, "=="), "predicate"),
        (lambda: rasp.SelectorWidth(rasp.tokens), "SelectorWidth"),
        (lambda: rasp.LinearSequenceMap(rasp.tokens, rasp.tokens, "a", 1), "fst_fac"),
        (lambda: rasp.numerical(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)), "SOp"),
        (lambda: rasp.tokens.named(""), "non-empty"),
        (lambda: rasp.ConstantSOp("abc"), "list of values"),
        (lambda: rasp.Full([1]), r"Full: the fill value \[1\] is a list, which is not "
                                 r"hashable.*write a tuple"),
        (lambda: rasp.ConstantSOp([1, [1], 2]), r"ConstantSOp: the value at position 1 "
                                                r"\[1\] is a list, which is not hashable"),
        (lambda: rasp.Full({"a": 1}), "dict, which is not hashable"),
        (lambda: rasp.annotate(rasp.tokens, name=3), "tokens: a name must be a non-empty string"),
        (lambda: rasp.annotate(rasp.tokens, encoding="numerical"), "rasp.numerical"),
        (lambda: rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).annotated(
            encoding=rasp.Encoding.NUMERICAL), r"select \(no id yet\): only SOps"),
        (lambda: rasp.selector_and(rasp.tokens, rasp.tokens), "selector_and: its first input"),
    ],
)
def test_bad_arguments_raise_invalid_program_error_naming_the_problem(build, message):
    with pytest.raises(InvalidProgramError, match=message):
        build()


def test_default_rasp_evaluator_is_tracr_compatible():
    program = rasp.Map(lambda x: x * 2, rasp.tokens)
    assert rasp.DefaultRASPEvaluator().evaluate(program, [1, 2]) == [2, 4]
    assert rasp.evaluate(program, [3]) == [6]
