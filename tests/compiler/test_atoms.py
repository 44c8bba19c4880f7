"""Atoms (atoms.py): each Select as a Boolean relation between the values a head reads on
its query side and on its key side, with the Maps of categorical SOps folded in."""

import numpy as np
import pytest

from rasp_compiler import rasp
from rasp_compiler.compiler.atoms import AtomBuilder
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.errors import InvalidProgramError, UnsupportedExpressionError
from rasp_compiler.lang.graph import build_graph


def builder(program, vocab=(1, 2, 3), n=4):
    graph = build_graph(program)
    return AtomBuilder(graph, infer_values(graph, vocab, n))


def aggregate_of(select):
    return rasp.numerical(rasp.Aggregate(select, rasp.numerical(rasp.Map(float, rasp.tokens)),
                                         default=0))


@pytest.mark.parametrize("predicate, expected", [
    (rasp.Comparison.LT, lambda k, q: k < q),
    (rasp.Comparison.GEQ, lambda k, q: k >= q),
    (rasp.Comparison.NEQ, lambda k, q: k != q),
])
def test_a_select_is_its_predicate_on_every_pair_of_values(predicate, expected):
    select = rasp.Select(rasp.tokens, rasp.tokens, predicate)
    atom = builder(aggregate_of(select)).atom(select)
    assert (atom.query, atom.key) == ("tokens", "tokens")
    assert atom.query_values == atom.key_values == (1, 2, 3)
    want = np.array([[expected(k, q) for k in (1, 2, 3)] for q in (1, 2, 3)])
    assert np.array_equal(atom.relation, want)  # rows: query values, columns: key values


def test_maps_of_categorical_sops_fold_into_the_relation():
    doubled = rasp.Map(lambda x: 2 * x, rasp.tokens).named("doubled")
    shifted = rasp.Map(lambda x: x + 1, doubled).named("shifted")
    select = rasp.Select(shifted, rasp.tokens, rasp.Comparison.EQ).named("s")
    atoms = builder(aggregate_of(select), vocab=(1, 2, 3, 5, 7))
    atom = atoms.atom(select)
    assert atom.key == "tokens" and atom.folded == ("shifted",)  # rasp composed the two Maps
    # key k selected by query q iff 2k + 1 == q: (3 <- 1), (5 <- 2), (7 <- 3)
    pairs = {(atom.query_values[i], atom.key_values[j]) for i, j in np.argwhere(atom.relation)}
    assert pairs == {(3, 1), (5, 2), (7, 3)}
    folded = atoms.fold(shifted)
    assert folded.base == "tokens" and folded.mapping(3) == 7 and folded.mapping(None) is None


def test_a_constant_selector_reads_indices_and_all_true_reads_tokens():
    constant = rasp.ConstantSelector([[True, False], [True, True]])
    atoms = builder(aggregate_of(constant), n=2)
    atom = atoms.atom(constant)
    assert (atom.query, atom.key) == ("indices", "indices")
    assert atom.relation.tolist() == [[True, False], [True, True]]
    everything = atoms.all_true("everything")
    assert everything.relation.all() and everything.relation.shape == (3, 3)


def test_an_atoms_relation_cannot_be_changed_by_a_later_stage():
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    atom = builder(aggregate_of(select)).atom(select)
    with pytest.raises(ValueError):
        atom.relation[0, 0] = False


def test_a_select_on_numbers_and_a_failing_predicate_are_refused_by_name():
    number = aggregate_of(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)).named("mean")
    on_numbers = rasp.Select(number, number, rasp.Comparison.EQ).named("on_numbers")
    with pytest.raises(UnsupportedExpressionError, match="on_numbers: its keys mean are "
                                                         "numerical"):
        builder(aggregate_of(on_numbers)).atom(on_numbers)
    failing = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: 1 / (k - q)).named("failing")
    with pytest.raises(InvalidProgramError, match="failing: the predicate raised "
                                                  "ZeroDivisionError"):
        builder(aggregate_of(failing)).atom(failing)  # k == q divides by zero
