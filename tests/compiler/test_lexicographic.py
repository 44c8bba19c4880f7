"""Comparisons of a lexicographically ordered SequenceMap, compiled over its parts.

Every model here is checked against the evaluator on the program as written (the
rewrite must not change what is computed), exhaustively on short inputs."""

import pytest

from rasp_compiler import compile_program, lib, rasp, verify
from rasp_compiler.lang.graph import postorder

C = rasp.Comparison
pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")


def tie_broken(n: int, first=rasp.tokens, second=rasp.indices, scale=None):
    """first + second / n: unique per position, ordered by first, then second."""
    scale = scale or (lambda a, b: a + b / n)
    return rasp.SequenceMap(scale, first, second).named("key")


def width_program(comparison: C, key: rasp.SOp) -> rasp.SOp:
    return rasp.SelectorWidth(rasp.Select(key, key, comparison).named("cmp")).named("width")


def residual_sops(model) -> set[str]:
    return {dim.sop for dim in model.layout.dims}


@pytest.mark.parametrize("comparison", [C.LT, C.LEQ, C.GT, C.GEQ, C.EQ, C.NEQ])
def test_every_comparison_is_rewritten_and_exact(comparison):
    n = 4
    program = width_program(comparison, tie_broken(n))
    model = compile_program(program, [1, 2, 3], n)
    assert len(model.info.rewrites) == 1 and "cmp: Select(key, key," in model.info.rewrites[0]
    assert "key" not in residual_sops(model)
    fresh = width_program(comparison, tie_broken(n))  # the program as written, evaluated
    report = verify(fresh, model, exhaustive_up_to=n)
    assert report.ok, report


def test_the_second_part_can_be_the_major_one():
    n = 4
    key = rasp.SequenceMap(lambda i, t: i + 10 * t, rasp.indices, rasp.tokens).named("key")
    model = compile_program(width_program(C.LT, key), [0, 1, 2], n)
    assert "comparison of (tokens, indices) in lexicographic order" in model.info.rewrites[0]
    key = rasp.SequenceMap(lambda i, t: i + 10 * t, rasp.indices, rasp.tokens).named("key")
    assert verify(width_program(C.LT, key), model, exhaustive_up_to=n).ok


def test_an_aggregate_reads_the_rewritten_selector():
    n = 4

    def program():
        key = tie_broken(n)
        return rasp.Aggregate(rasp.Select(key, key, C.EQ).named("same"), rasp.tokens).named("out")

    model = compile_program(program(), [1, 2, 3], n)
    assert model.info.rewrites and "key" not in residual_sops(model)
    assert verify(program(), model, exhaustive_up_to=n).ok


@pytest.mark.parametrize("f", [
    lambda t, i: t - i / 10,  # ties broken the other way: not lexicographic in either order
    lambda t, i: t * 10 + (i % 2),  # not injective
    lambda t, i: f"{t}{i}",  # not a number
])
def test_a_key_that_is_not_lexicographic_is_compiled_as_written(f):
    n = 4
    model = compile_program(width_program(C.LT, tie_broken(n, scale=f)), [1, 2, 3], n)
    assert model.info.rewrites == () and "key" in residual_sops(model)
    assert verify(width_program(C.LT, tie_broken(n, scale=f)), model, exhaustive_up_to=n).ok


def test_the_users_program_is_not_changed():
    program = lib.make_sort_freq(6)
    before = [(e.unique_id, e.label, tuple(id(c) for c in e.children))
              for e in postorder(program)]
    model = compile_program(program, [1, 2, 3], 6)
    assert model.info.rewrites
    assert [(e.unique_id, e.label, tuple(id(c) for c in e.children))
            for e in postorder(program)] == before
    assert model.program is program


def test_sort_freq_at_64_has_no_quadratic_key():
    """The key has 64 x 64 values; compiled over its parts the residual is linear in n."""
    model = compile_program(lib.make_sort_freq(64), [1, 2, 3, 4], 64)
    assert "unique_keys" not in residual_sops(model)
    assert model.layout.width < 4 * 64 and model.parameter_count() < 1_000_000
    assert "inclusion-exclusion" in model.selector_report().entry("smaller").construction
    report = verify(lib.make_sort_freq(64), model, samples=20, backend="numpy")
    assert report.ok, report
