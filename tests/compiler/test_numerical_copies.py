"""The numerical-copies pass (numerical_copies.py): linear lookups read numerical copies of
their inputs where that saves weights, and the pipeline falls back to the one-hots when
float32 cannot trust a copy (pipeline.first_exact_reading)."""

import random

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler import pipeline as compiler
from rasp_compiler.compiler.mlp import lower_block
from rasp_compiler.compiler.mlp_linear import LINEAR_STEPS
from rasp_compiler.compiler.numerical_copies import with_numerical_copies
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.model.residual import ONE, Dim
from rasp_compiler.verify.checker import verify

from test_mlp import apply  # same folder: pytest puts it on sys.path


def _ops(program, vocab, n, **options):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n))
    return ops, schedule(ops, **options)


def _reverse_on_its_own(n):
    """reverse with `length - indices` in its own MLP (not fused with length's decoder)."""
    return compile_program(lib.make_reverse(rasp.tokens), ["a", "b", "c", "d"], n,
                           max_fused_input_space=100)


def test_linear_steps_read_numerical_copies_a_few_weights_per_neuron():
    opp = (lib.make_length() - rasp.indices).named("opp")
    program = rasp.Aggregate(rasp.Select(rasp.indices, opp, rasp.Comparison.EQ), rasp.tokens)
    ops, scheduled = _ops(program, ["a", "b"], 40, max_fused_input_space=100)
    copied, rescheduled = with_numerical_copies(ops, scheduled, max_fused_input_space=100)
    assert rescheduled.depth == scheduled.depth and rescheduled.lower_bound == scheduled.lower_bound == 2
    assert copied.forms["opp.z"].as_dict() == {Dim("length.number"): 1.0,
                                               Dim("indices.number"): -1.0}
    assert copied.embeddings["indices.number"].table[39] == 39.0  # written by position
    # length's one-hot is read by nothing else now: only its numerical copy is written.
    assert "length" not in rescheduled.materialized and "length.number" in rescheduled.materialized
    (block,) = [b for layer in rescheduled.layers for b in layer.blocks if b.outputs == ("opp",)]
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
    real = compiler.check_float32_precision

    def refuse_copies(ops, scheduled, lowered):
        if "length.number" in scheduled.materialized:
            raise CompilationError("length.number: pretend float32 cannot hold it")
        return real(ops, scheduled, lowered)

    monkeypatch.setattr(compiler, "check_float32_precision", refuse_copies)
    model = _reverse_on_its_own(32)
    (part,) = [p for layer in model.info.layers for p in layer.mlp if p.label == "opp_index"]
    assert part.construction == LINEAR_STEPS and part.leaves == ("length", "indices")
    inputs = [list("abcd" * 8), list("dcb")]
    assert verify(lib.make_reverse(rasp.tokens), model, inputs=inputs, backend="numpy").ok
