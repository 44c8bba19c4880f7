import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler import compile_program
from rasp_compiler.errors import CompileWarning, UnsafeAggregateError
from rasp_compiler.graph import build_graph
from rasp_compiler.rewrite import rewrite
from rasp_compiler.safety import check_categorical_aggregates
from rasp_compiler.schedule import schedule
from rasp_compiler.values import infer_values


def checks_of(program, vocab, n):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n))
    return {c.label: c for c in check_categorical_aggregates(ops, schedule(ops).live)}


def test_selecting_one_position_or_one_value_is_proven_safe():
    checks = checks_of(lib.make_reverse(rasp.tokens), ["a", "b"], 5)
    assert checks["reverse"].status == "proven"
    same = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ),
                          rasp.Map(lambda t: t.upper(), rasp.tokens)).named("same")
    assert checks_of(same, ["a", "b"], 5)["same"].status == "proven"


def test_a_mixing_aggregate_is_refused_with_an_input_that_shows_it():
    mixed = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
                           rasp.tokens).named("prefix_copy")
    check = checks_of(mixed, ["a", "b"], 5)["prefix_copy"]
    assert check.status == "unsafe"
    assert len(set(check.counterexample)) > 1
    with pytest.raises(UnsafeAggregateError, match=r"prefix_copy: .*on the input \[.*allow_unsafe"):
        compile_program(mixed, ["a", "b"], 5)


def test_an_aggregate_that_cannot_be_proven_compiles_with_a_warning():
    program = lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)
    assert checks_of(program, [1, 2, 3], 5)["sort"].status == "unproven"
    with pytest.warns(CompileWarning, match="sort: could not prove"):
        model = compile_program(program, [1, 2, 3], 5)
    assert model.info.aggregate_checks == (("sort", "unproven", model.info.aggregate_checks[0][2]),)


def test_a_wrong_tie_break_is_caught_by_the_search():
    # Ties broken with index / 5 collide once indices reach 5: sorting at length 12 mixes.
    program = lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)
    with pytest.raises(UnsafeAggregateError, match="sort: "):
        compile_program(program, [1, 2, 3], 12)
