import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.errors import InvalidProgramError, UnsupportedExpressionError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.model.residual import BOS, Dim, ONE
from rasp_compiler.compiler.rewrite import rewrite, width_hidden_label
from rasp_compiler.compiler.values import infer_values


def ops_of(program, vocab=("a", "b"), n=4):
    graph = build_graph(program)
    return rewrite(graph, infer_values(graph, vocab, n))


def test_each_sop_becomes_one_kind_of_operation():
    program = lib.make_reverse(rasp.tokens)
    ops = ops_of(program)
    assert set(ops.embeddings) == {"tokens", "indices"}
    assert set(ops.attention) == {width_hidden_label("length"), "reverse"}
    assert {"length", "opp_index", "opp_index_minus_1"} <= set(ops.units)
    assert ops.units["length"].inputs == (width_hidden_label("length"),)


def test_maps_of_categorical_sops_fold_into_the_heads_that_read_them():
    program = lib.make_reverse(rasp.tokens)
    ops = ops_of(program)
    (atom,) = ops.attention["reverse"].atoms
    assert atom.query == "opp_index" and atom.key == "indices"
    assert atom.folded == ("opp_index_minus_1",)
    assert ops.folded["opp_index_minus_1"] == ("flip",)
    # relation[q][k]: key index k selected when k == opp_index(q) - 1
    for i, q in enumerate(atom.query_values):
        for j, k in enumerate(atom.key_values):
            assert atom.relation[i, j] == (k == q - 1)


def test_numerical_maps_of_categorical_sops_and_linear_maps_are_free_forms():
    is_x = rasp.numerical(rasp.Map(lambda t: 2.0 if t == "a" else -1.0, rasp.tokens)).named("w")
    frac = lib.make_frac_prevs(is_x)
    scaled = rasp.numerical(rasp.Map(lambda x: 3 * x + 1, frac)).named("scaled")
    ops = ops_of(scaled)
    assert ops.forms["w"].as_dict() == {Dim("tokens", "a"): 2.0, Dim("tokens", "b"): -1.0}
    assert ops.forms["scaled"].as_dict() == {Dim("frac_prevs"): 3.0, ONE: 1.0, BOS: -1.0}
    assert "scaled" not in ops.units


def test_selector_width_writes_a_hidden_bos_weight_decoded_by_an_mlp_unit():
    ops = ops_of(lib.make_hist(), n=3)
    hidden = width_hidden_label("hist")
    head = ops.attention[hidden]
    assert head.kind == "width" and head.bos_writes == ((Dim(hidden), 1.0),)
    assert ops.values[hidden] == (0.25, 1 / 3, 0.5, 1.0)
    assert [ops.units["hist"].fn(z) for z in ops.values[hidden]] == [3, 2, 1, 0]


def test_categorical_aggregate_default_is_written_from_bos():
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1)
    program = rasp.Aggregate(select, rasp.tokens, default="z").named("next")
    head = ops_of(program).attention["next"]
    assert (BOS, Dim("next", "z"), 1.0) in head.ov
    assert head.bos_writes == ((Dim("next", "z"), 1.0),)


@pytest.mark.parametrize("build, message", [
    (lambda: rasp.SelectorWidth(rasp.Select(lib.make_frac_prevs(rasp.tokens == "a"),
                                            rasp.tokens, rasp.Comparison.EQ)),
     "its keys frac_prevs are numerical.*rasp.categorical"),
    (lambda: rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ),
                            lib.make_frac_prevs(rasp.tokens == "a")),
     "categorical Aggregate copies one-hot categories"),
    (lambda: rasp.numerical(rasp.Map(lambda x: 1.0, lib.shift_by(1, rasp.tokens))),
     "can be None"),
    (lambda: rasp.numerical(rasp.Map(lambda x: "no", rasp.tokens)), "returns 'no'"),
])
def test_constructs_the_compiler_cannot_build_name_the_node(build, message):
    with pytest.raises(UnsupportedExpressionError, match=message):
        ops_of(build())


def test_constant_selector_becomes_a_positional_atom():
    table = [[k == 0 for k in range(3)] for _ in range(3)]
    program = rasp.Aggregate(rasp.ConstantSelector(table), rasp.tokens).named("first")
    (atom,) = ops_of(program, n=3).attention["first"].atoms
    assert atom.query == atom.key == "indices"
    assert np.array_equal(atom.relation, np.array(table))


def test_inputs_read_by_length_or_constant_selectors_are_embedded_once():
    # length reads tokens before the program's own tokens node is reached.
    ops = ops_of(rasp.SequenceMap(lambda n, t: n, rasp.length, rasp.tokens).named("both"))
    assert ops.order.count("tokens") == 1
    table = [[k == q for k in range(4)] for q in range(4)]
    program = rasp.Aggregate(rasp.ConstantSelector(table), rasp.indices).named("copy")
    assert ops_of(program).order.count("indices") == 1


def test_the_rewrite_is_read_only_and_records_each_selector_with_its_heads():
    agg = rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prefix"),
        rasp.numerical(rasp.Map(lambda x: 1.0 if x == "a" else 0.0, rasp.tokens)), default=0,
    ).named("frac"))
    ops = ops_of(agg)
    for mapping in (ops.values, ops.encodings, ops.attention, ops.units, ops.forms,
                    ops.embeddings, ops.folded, ops.position, ops.magnitudes,
                    ops.embeddings["tokens"].table):
        with pytest.raises(TypeError):
            mapping["new"] = 0
    (choice,) = ops.selector_choices
    assert choice.selector == "prefix" and choice.heads == ("frac",)
    assert ops.magnitudes["frac"] == 1.0
    for atoms in choice.chosen.heads:  # the relations the head is built from are frozen too
        for atom in atoms:
            with pytest.raises(ValueError, match="read-only"):
                atom.relation[0, 0] = not atom.relation[0, 0]


def test_a_numerical_aggregate_of_a_map_that_gives_none_is_refused_by_name():
    maybe = rasp.Map(lambda x: None if x == "b" else 1, rasp.tokens).named("maybe")
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    with pytest.raises(InvalidProgramError, match=r"mean: a numerical Aggregate averages "
                       r"numbers, but it can read \{None\} of maybe"):
        ops_of(rasp.numerical(rasp.Aggregate(select, maybe, default=0).named("mean")))
