"""Linear-form detection (linear_forms.py): affine maps become forms, and SequenceMaps that
see their inputs through one linear form x + r y are found, with the pairs that occur."""

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.linear_forms import affine_fit, detect
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.verify.checker import verify


def _ops(program, vocab, n, **options):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n))
    return ops, schedule(ops, **options)


def test_detect_finds_the_form_of_a_difference_and_rejects_a_product():
    found = detect(lambda x, y: x - y - 1, "x", tuple(range(1, 33)), "y", tuple(range(32)))
    assert found is not None and found.ratio == -1.0
    assert len(found.zs) == 63 and found.changes == 62 and found.width == 125  # not 1,024
    assert detect(lambda x, y: (x * y) % 5, "x", tuple(range(16)), "y", tuple(range(16))) is None


def test_detect_reads_evenly_spaced_inputs_and_ignores_impossible_pairs():
    halves = tuple(v / 2 for v in range(40))
    found = detect(lambda x, y: x + 2 * y, "x", halves, "y", tuple(range(20)))
    assert found is not None and found.ratio == 2.0
    # Where y >= x the pair never occurs: f may give anything there.
    found = detect(lambda x, y: x - y if y < x else "junk", "x", tuple(range(1, 17)), "y",
                   tuple(range(16)), possible=lambda x, y: y < x)
    assert found is not None and "junk" not in found.outputs


def test_length_minus_indices_takes_only_the_values_that_occur():
    opp = (lib.make_length() - rasp.indices).named("opp")
    graph = build_graph(opp)
    values = infer_values(graph, ["a", "b"], 40)
    assert sorted(values["opp"]) == list(range(1, 41))  # index < length: N values, not 2N - 1


def test_an_affine_numerical_sequence_map_is_a_linear_form():
    affine = rasp.numerical(rasp.SequenceMap(lambda x, i: 2 * x - i + 0.5, rasp.tokens,
                                             rasp.indices)).named("affine")
    ops, scheduled = _ops(affine, [0, 1, 2, 3], 8)
    assert "affine" in ops.forms and "affine" not in ops.units and scheduled.depth == 0
    model = compile_program(affine, [0, 1, 2, 3], 8)
    assert verify(affine, model, exhaustive_up_to=3, backend="numpy").ok


def test_one_affine_fit_serves_maps_and_sequence_maps():
    """Coefficients per argument then the constant; an argument with one value gets 0
    (the constant carries it); near-integers snap; anything else is not affine."""
    assert affine_fit({(x,): 0.1 * x + 2 for x in range(5)}) == pytest.approx((0.1, 2.0))
    assert affine_fit({(3.0,): 5.0}) == (0.0, 5.0)
    assert affine_fit({(x, 7): 3 * x - 7 for x in range(4)}) == (3, 0.0, -7)
    assert affine_fit({(x, y): 2 * x - y for x in range(3) for y in range(3)}) == (2, -1, 0)
    assert affine_fit({(x,): x * x for x in range(4)}) is None
    assert affine_fit({(True,): 1.0, (False,): 0.0}) is None
    assert affine_fit({}) is None
