"""Linear steps (mlp_linear.py): a linear lookup lowered to steps along x + r y, read from
the one-hots, exact on every pair that occurs; and their float32 check (precision.py)."""

import random

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.mlp import lower_block
from rasp_compiler.compiler.mlp_linear import LINEAR_STEPS, linear_lookup_of
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.compiler.precision import check_linear_steps
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.model.residual import BOS, ONE, Dim
from rasp_compiler.verify.checker import verify

from test_mlp import apply  # same folder: pytest puts it on sys.path


def _ops(program, vocab, n, **options):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n))
    return ops, schedule(ops, **options)


def test_linear_steps_compute_the_sequence_map_on_every_possible_pair():
    n = 24  # length x indices: 600 pairs, past the fusion limit below
    opp = (lib.make_length() - rasp.indices).named("opp")
    program = rasp.Aggregate(rasp.Select(rasp.indices, opp, rasp.Comparison.EQ), rasp.tokens)
    ops, scheduled = _ops(program, ["a", "b"], n, max_fused_input_space=100)
    (block,) = [b for layer in scheduled.layers for b in layer.blocks if b.outputs == ("opp",)]
    assert linear_lookup_of(ops, block) is ops.units["opp"].linear is not None
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


def test_noisy_inputs_that_could_cross_a_step_are_refused():
    opp = (lib.make_length() - rasp.indices).named("opp")
    ops, scheduled = _ops(opp, ["a"], 40, max_fused_input_space=100)
    (block,) = [b for layer in scheduled.layers for b in layer.blocks if b.outputs == ("opp",)]
    part = lower_block(ops, block)
    check_linear_steps(block, part, {"length": 1e-6}, ops.units["opp"].linear)  # fine
    with pytest.raises(CompilationError, match="could read the wrong value"):
        check_linear_steps(block, part, {"length": 0.05}, ops.units["opp"].linear)
