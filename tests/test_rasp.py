import pytest

from rasp_compiler import rasp
from rasp_compiler.errors import EvaluationError, InvalidProgramError


def test_labels_count_per_kind_and_named_overrides():
    first = rasp.Map(lambda x: x, rasp.tokens)
    second = rasp.Map(lambda x: x, rasp.tokens)
    kind, number = first.label.rsplit("_", 1)
    assert kind == "map"
    assert second.label == f"map_{int(number) + 1}"
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    assert select.label.startswith("select_")
    aggregate = rasp.Aggregate(select, rasp.tokens)
    assert aggregate.label.startswith("aggregate_")
    # A new select does not renumber maps.
    third = rasp.Map(lambda x: x, rasp.tokens)
    assert third.label == f"map_{int(number) + 2}"
    assert third.named("mine") is third
    assert third.label == "mine"


def test_primitives_have_fixed_labels():
    assert rasp.tokens.label == "tokens"
    assert rasp.indices.label == "indices"
    assert rasp.length.label == "length"
    assert rasp.TokensType().label == "tokens"  # as in tracr: every instance is the input
    assert rasp.tokens.named("tokens") is rasp.tokens  # naming it its own name is harmless
    assert rasp.Full((1, 2)).fill == (1, 2)  # tuples are hashable values


def test_default_encoding_is_categorical_and_annotations_change_in_place():
    sop = rasp.Map(lambda x: x + 1, rasp.tokens)
    assert rasp.is_categorical(sop)
    assert rasp.numerical(sop) is sop
    assert rasp.is_numerical(sop)
    assert rasp.get_encoding(sop) is rasp.Encoding.NUMERICAL
    assert rasp.categorical(sop) is sop and rasp.is_categorical(sop)
    sop.annotated(note="x")
    assert sop.annotations["note"] == "x" and rasp.is_categorical(sop)


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
    assert isinstance(a & b, rasp.SelectorAnd)
    assert isinstance(a | b, rasp.SelectorOr)
    assert isinstance(~a, rasp.SelectorNot)


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
        (lambda: rasp.Full([1]), r"full_\d+: the fill value \[1\] is a list, which is not "
                                 r"hashable.*write a tuple"),
        (lambda: rasp.ConstantSOp([1, [1], 2]), r"constant_sop_\d+: the value at position 1 "
                                                r"\[1\] is a list, which is not hashable"),
        (lambda: rasp.Full({"a": 1}), "dict, which is not hashable"),
        (lambda: rasp.tokens.named("toks"), r"tokens: the program inputs tokens, indices and "
                                             r"length keep their labels.*rasp.Map\(lambda x: x, "
                                             r"rasp.tokens\).named\('toks'\)"),
        (lambda: rasp.annotate(rasp.IndicesType(), name="i"), "indices: the program inputs"),
    ],
)
def test_bad_arguments_raise_invalid_program_error_naming_the_problem(build, message):
    with pytest.raises(InvalidProgramError, match=message):
        build()


def test_default_rasp_evaluator_is_tracr_compatible():
    program = rasp.Map(lambda x: x * 2, rasp.tokens)
    assert rasp.DefaultRASPEvaluator().evaluate(program, [1, 2]) == [2, 4]
    assert rasp.evaluate(program, [3]) == [6]
