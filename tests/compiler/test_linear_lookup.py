"""Linear-form lookups (linear_lookup.py) and the scaled SelectorWidth share (widths.py)."""

import random

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.compiler import pipeline as compiler
from rasp_compiler.compiler.linear_lookup import (LINEAR_STEPS, check_precision, detect,
                                         with_numerical_copies)
from rasp_compiler.compiler.mlp import lower_block
from rasp_compiler.model.residual import BOS, ONE, Dim
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.verify.checker import verify
from rasp_compiler.compiler import widths

from test_mlp import apply  # same folder: pytest puts it on sys.path


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


def test_linear_steps_compute_the_sequence_map_on_every_possible_pair():
    n = 24  # length x indices: 600 pairs, past the fusion limit below
    opp = (lib.make_length() - rasp.indices).named("opp")
    program = rasp.Aggregate(rasp.Select(rasp.indices, opp, rasp.Comparison.EQ), rasp.tokens)
    ops, plan = _ops(program, ["a", "b"], n, max_fused_input_space=100)
    (block,) = [b for layer in plan.layers for b in layer.blocks if b.outputs == ("opp",)]
    part = lower_block(ops, block)
    assert part.construction == LINEAR_STEPS and part.width < 2 * n + 1
    for length in range(1, n + 1):
        for index in range(length):
            inputs = {ONE: 1.0, Dim("length", length): 1.0, Dim("indices", index): 1.0}
            assert apply(part, inputs) == {Dim("opp", length - index): pytest.approx(1.0)}
    assert all(w < 0 for neuron in part.neurons for d, w in neuron.w_in if d == BOS)


def test_reverse_at_128_is_small_and_reports_the_construction():
    model = compile_program(lib.make_reverse(rasp.tokens), ["a", "b", "c", "d"], 128)
    assert model.parameter_count() < 1_000_000  # 17.8 M with a lookup over (length, index)
    constructions = {part.construction for layer in model.info.layers for part in layer.mlp}
    assert LINEAR_STEPS in constructions
    rng = random.Random(1)
    inputs = [[rng.choice("abcd") for _ in range(k)] for k in (128, 3)]
    assert verify(lib.make_reverse(rasp.tokens), model, inputs=inputs, backend="numpy").ok


def _reverse_on_its_own(n):
    """reverse with `length - indices` in its own MLP (not fused with length's decoder)."""
    return compile_program(lib.make_reverse(rasp.tokens), ["a", "b", "c", "d"], n,
                           max_fused_input_space=100)


def test_linear_steps_read_numerical_copies_a_few_weights_per_neuron():
    opp = (lib.make_length() - rasp.indices).named("opp")
    program = rasp.Aggregate(rasp.Select(rasp.indices, opp, rasp.Comparison.EQ), rasp.tokens)
    ops, plan = _ops(program, ["a", "b"], 40, max_fused_input_space=100)
    copied, replanned = with_numerical_copies(ops, plan, max_fused_input_space=100)
    assert replanned.depth == plan.depth and replanned.lower_bound == plan.lower_bound == 2
    assert copied.forms["opp.z"].as_dict() == {Dim("length.number"): 1.0,
                                               Dim("indices.number"): -1.0}
    assert copied.embeddings["indices.number"].table[39] == 39.0  # written by position
    # length's one-hot is read by nothing else now: only its numerical copy is written.
    assert "length" not in replanned.materialized and "length.number" in replanned.materialized
    (block,) = [b for layer in replanned.layers for b in layer.blocks if b.outputs == ("opp",)]
    part = lower_block(copied, block)
    assert part.construction == LINEAR_STEPS
    assert max(len(neuron.w_in) for neuron in part.neurons) <= 4  # the copies, one, bos
    for length in range(1, 41):
        for index in range(length):
            inputs = {ONE: 1.0, Dim("length.number"): length, Dim("indices.number"): index}
            assert apply(part, inputs) == {Dim("opp", length - index): pytest.approx(1.0)}


def test_reverse_non_zero_parameters_grow_about_linearly_and_stay_exact():
    small, large = _reverse_on_its_own(32), _reverse_on_its_own(64)
    assert large.parameter_count(nonzero=True) <= 2.3 * small.parameter_count(nonzero=True)
    assert large.depth == small.depth == 3
    rng = random.Random(2)
    inputs = [[rng.choice("abcd") for _ in range(k)] for k in (64, 63, 1, 17)]
    assert verify(lib.make_reverse(rasp.tokens), large, inputs=inputs, backend="numpy").ok


def test_dyck1_non_zero_parameters_grow_about_linearly():
    dyck = lambda: lib.make_dyck(["()"])  # noqa: E731
    small, large = (compile_program(dyck(), ["(", ")"], n) for n in (32, 64))
    assert large.parameter_count(nonzero=True) <= 2.3 * small.parameter_count(nonzero=True)
    inputs = [list("(" * 32 + ")" * 32), list("()" * 31 + ")("), list(")")]
    assert verify(dyck(), large, inputs=inputs, backend="numpy").ok


def test_a_copy_float32_cannot_trust_falls_back_to_the_one_hots(monkeypatch):
    real = compiler.check_precision

    def refuse_copies(ops, plan, lowered):
        if "length.number" in plan.materialized:
            raise CompilationError("length.number: pretend float32 cannot hold it")
        return real(ops, plan, lowered)

    monkeypatch.setattr(compiler, "check_precision", refuse_copies)
    model = _reverse_on_its_own(32)
    (part,) = [p for layer in model.info.layers for p in layer.mlp if p.label == "opp_index"]
    assert part.construction == LINEAR_STEPS and part.leaves == ("length", "indices")
    inputs = [list("abcd" * 8), list("dcb")]
    assert verify(lib.make_reverse(rasp.tokens), model, inputs=inputs, backend="numpy").ok


def test_an_affine_numerical_sequence_map_is_a_linear_form():
    affine = rasp.numerical(rasp.SequenceMap(lambda x, i: 2 * x - i + 0.5, rasp.tokens,
                                             rasp.indices)).named("affine")
    ops, plan = _ops(affine, [0, 1, 2, 3], 8)
    assert "affine" in ops.forms and "affine" not in ops.units and plan.depth == 0
    model = compile_program(affine, [0, 1, 2, 3], 8)
    assert verify(affine, model, exhaustive_up_to=3, backend="numpy").ok


def test_one_affine_fit_serves_maps_and_sequence_maps():
    """Coefficients per argument then the constant; an argument with one value gets 0
    (the constant carries it); near-integers snap; anything else is not affine."""
    from rasp_compiler.compiler.linear_lookup import affine_fit

    assert affine_fit({(x,): 0.1 * x + 2 for x in range(5)}) == pytest.approx((0.1, 2.0))
    assert affine_fit({(3.0,): 5.0}) == (0.0, 5.0)
    assert affine_fit({(x, 7): 3 * x - 7 for x in range(4)}) == (3, 0.0, -7)
    assert affine_fit({(x, y): 2 * x - y for x in range(3) for y in range(3)}) == (2, -1, 0)
    assert affine_fit({(x,): x * x for x in range(4)}) is None
    assert affine_fit({(True,): 1.0, (False,): 0.0}) is None
    assert affine_fit({}) is None


def test_noisy_inputs_that_could_cross_a_step_are_refused():
    opp = (lib.make_length() - rasp.indices).named("opp")
    ops, plan = _ops(opp, ["a"], 40, max_fused_input_space=100)
    (block,) = [b for layer in plan.layers for b in layer.blocks if b.outputs == ("opp",)]
    part = lower_block(ops, block)
    check_precision(block, part, {"length": 1e-6}, ops.units["opp"].linear)  # fine
    with pytest.raises(CompilationError, match="could read the wrong value"):
        check_precision(block, part, {"length": 0.05}, ops.units["opp"].linear)


def test_width_shares_stay_decodable_at_1024():
    assert widths.bos_share(16) == 1.0 and widths.bos_share(17) == 17.0
    assert widths.bos_share(1024, categorical=False) == 1.0  # decoded piecewise-linearly
    assert widths.smallest_gap(1024) > 2.4e-4 > 100 * widths.smallest_gap(1024, False)


def test_hist_at_256_is_exact_on_the_widest_counts():
    model = compile_program(lib.make_hist(), ["a", "b"], 256)
    (head,) = model.info.layers[0].heads
    assert model.ops.attention[head.label].bos_share == 256.0
    inputs = [["a"] * 256, ["a"] * 255 + ["b"]]
    assert verify(lib.make_hist(), model, inputs=inputs, backend="numpy").ok


def test_the_ideal_pattern_of_a_scaled_width_head_gives_bos_its_share():
    model = compile_program(lib.make_hist(), ["a", "b"], 20)
    assert model.check_patterns([["a", "b", "a"]]).passed
