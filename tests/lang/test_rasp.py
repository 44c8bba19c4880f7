import itertools
import logging

import pytest

from rasp_compiler import rasp
from rasp_compiler.errors import EvaluationError, InvalidProgramError

C = rasp.Comparison


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


# --------------------------------------------------------------------------- selector folding

K = [0, 1, 2, 3]


def _matrix(selector, xs=K):
    return rasp.evaluate(selector, xs)


def test_not_of_a_select_is_a_select_keeping_exact_comparisons():
    for comparison, negation in [(C.EQ, C.NEQ), (C.NEQ, C.EQ), (C.TRUE, C.FALSE), (C.FALSE, C.TRUE)]:
        folded = ~rasp.Select(rasp.tokens, rasp.indices, comparison)
        assert isinstance(folded, rasp.Select) and folded.predicate is negation
    lt = rasp.Select(rasp.tokens, rasp.indices, C.LT)
    folded = ~lt
    assert isinstance(folded, rasp.Select) and folded.keys is rasp.tokens
    assert not isinstance(folded.predicate, rasp.Comparison)  # `not <` is not `>=` on sets
    assert rasp.predicate_name(folded.predicate) == "not_LT"
    assert (~folded).predicate is C.LT  # not not
    sets = [frozenset({1}), frozenset({2})]
    assert not C.GEQ(sets[0], sets[1]) and folded.predicate(sets[0], sets[1])
    assert _matrix(folded) == _matrix(rasp.selector_not(lt, simplify=False))
    kept = rasp.selector_not(lt, simplify=False)
    assert isinstance(kept, rasp.SelectorNot) and kept.inner is lt
    both = rasp.Select(rasp.tokens, rasp.tokens, C.EQ) & rasp.Select(rasp.indices, rasp.indices, C.LT)
    assert isinstance(~both, rasp.SelectorNot)


def test_and_or_of_selects_over_the_same_sops_fold_into_one_select():
    geq = rasp.Select(rasp.tokens, rasp.indices, C.GEQ)
    leq = rasp.Select(rasp.tokens, rasp.indices, C.LEQ)
    for op, combine in ((rasp.selector_and, all), (rasp.selector_or, any)):
        folded = op(geq, leq)
        assert isinstance(folded, rasp.Select)
        assert folded.keys is rasp.tokens and folded.queries is rasp.indices
        expected = [[combine((k >= q, k <= q)) for k in [3, 1, 0, 2]] for q in range(4)]
        assert _matrix(folded, [3, 1, 0, 2]) == expected
        assert _matrix(op(geq, leq, simplify=False), [3, 1, 0, 2]) == expected
    assert (geq & leq).predicate == (geq & leq).predicate  # folded predicates compare by parts
    # Comparisons are kept where the fold is the same function on every value.
    true = rasp.Select(rasp.tokens, rasp.indices, C.TRUE)
    false = rasp.Select(rasp.tokens, rasp.indices, C.FALSE)
    assert (true & geq).predicate is C.GEQ and (geq & true).predicate is C.GEQ
    assert (false | leq).predicate is C.LEQ and (leq | false).predicate is C.LEQ
    assert (geq & rasp.Select(rasp.tokens, rasp.indices, C.GEQ)).predicate is C.GEQ
    assert not isinstance((geq | true).predicate, rasp.Comparison)
    crossed = rasp.Select(rasp.indices, rasp.tokens, C.LEQ)
    assert isinstance(geq & crossed, rasp.SelectorAnd) and isinstance(geq | crossed, rasp.SelectorOr)
    assert isinstance(rasp.SelectorAnd(geq, leq), rasp.SelectorAnd)  # the classes never fold


def test_a_full_side_matches_any_sop_and_keeps_its_fill():
    full_keys = rasp.Select(rasp.Full(1), rasp.indices, C.GEQ)
    on_tokens = rasp.Select(rasp.tokens, rasp.indices, C.LEQ)
    folded = full_keys & on_tokens
    assert isinstance(folded, rasp.Select) and folded.keys is rasp.tokens
    assert folded.queries is rasp.indices
    full_queries = rasp.Select(rasp.tokens, rasp.Full(2), C.GT)
    folded_or = on_tokens | full_queries
    assert folded_or.keys is rasp.tokens and folded_or.queries is rasp.indices
    xs = [2, 0, 3, 1]
    for simplified, written in ((folded, rasp.SelectorAnd(full_keys, on_tokens)),
                                (folded_or, rasp.SelectorOr(on_tokens, full_queries))):
        assert _matrix(simplified, xs) == _matrix(written, xs)


def test_folded_selectors_leave_none_positions_unselected():
    """A Select entry whose key or query is None is False; the folded `~` keeps that rule,
    an explicit SelectorNot negates it."""
    shifted = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1),
                             rasp.tokens)
    same = rasp.Select(shifted, rasp.tokens, C.EQ)
    assert _matrix(~same, [5, 6]) == [[False, False], [False, True]]
    assert _matrix(rasp.SelectorNot(same), [5, 6]) == [[True, False], [True, True]]


# --------------------------------------------------------------------------- evaluators


def _programs():
    shifted = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1),
                             rasp.tokens)
    means = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, C.LEQ),
                                          rasp.numerical(rasp.Map(lambda x: x > 1, rasp.tokens)),
                                          default=0))
    either = rasp.SelectorOr(rasp.Select(rasp.tokens, rasp.tokens, C.EQ),
                             rasp.SelectorNot(rasp.Select(rasp.indices, rasp.indices, C.LT)))
    return [
        rasp.Map(lambda x: x * 2, shifted),  # None flows through
        rasp.SequenceMap(lambda x, y: (x, y), shifted, rasp.indices),
        means,  # exact means, as floats
        rasp.SelectorWidth(either),
        rasp.LinearSequenceMap(rasp.length, rasp.indices, 2, -1),
        rasp.Select(shifted, rasp.tokens, C.LEQ),
        rasp.Aggregate(rasp.ConstantSelector([[True, False, False]] * 3), rasp.ConstantSOp([7, 8, 9])),
        rasp.Full(4) | rasp.Full(0),
    ]


@pytest.mark.parametrize("index", range(8))
def test_default_evaluator_gives_the_reference_values(index):
    program = _programs()[index]
    evaluator = rasp.DefaultRASPEvaluator()
    for xs in ([1, 2, 3], [3, 1, 2], [2, 2, 2]):
        assert evaluator.evaluate(program, xs) == rasp.evaluate(program, xs) == program(xs)
    assert isinstance(evaluator, rasp.RASPEvaluator)


def test_default_evaluator_refuses_what_the_reference_refuses():
    mixed = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, C.TRUE), rasp.tokens)
    for evaluate in (rasp.evaluate, rasp.DefaultRASPEvaluator().evaluate):
        with pytest.raises(EvaluationError, match="different values"):
            evaluate(mixed, [1, 2])
        with pytest.raises(EvaluationError, match="Constant len 3 doesn't match input len 2"):
            evaluate(rasp.ConstantSOp([1, 2, 3]), [1, 2])


def test_overriding_evaluate_reaches_every_sub_expression():
    class Masked(rasp.DefaultRASPEvaluator):  # tracr's causal_eval.CausalEvaluator, in short
        def evaluate(self, expr, xs):
            out = super().evaluate(expr, xs)
            if isinstance(expr, rasp.Selector):
                out = [[v and k <= q for k, v in enumerate(row)] for q, row in enumerate(out)]
            return out

    everything = rasp.Select(rasp.tokens, rasp.tokens, C.TRUE)
    width = rasp.SelectorWidth(rasp.SelectorAnd(everything, everything))
    assert Masked().evaluate(width, [5, 6, 7]) == [1, 2, 3]
    assert rasp.DefaultRASPEvaluator().evaluate(width, [5, 6, 7]) == [3, 3, 3]
