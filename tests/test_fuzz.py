"""Differential fuzzing: random programs either match the evaluator or are refused clearly."""

import random
import time

import pytest
from hypothesis import given, settings

from rasp_compiler import lib, rasp
from rasp_compiler.compiler import compile_program
from rasp_compiler.errors import ModelMismatchError
from rasp_compiler.fuzz import (CATEGORICAL_FROM_NUMERICAL, NUMERICAL_FROM_CATEGORICAL,
                                FuzzConfig, campaign, random_program)
from rasp_compiler.graph import build_graph
from rasp_compiler.identity import find_clash
from rasp_compiler.values import infer_values
from rasp_compiler.testing import assert_matches, rasp_inputs


def _holds_equal_but_different_values(seed: int) -> bool:
    """Whether the campaign's program of this seed has a categorical SOp that can hold two
    values Python counts as equal (True and 1, 0 and 0.0, -0.0 and 0.0)."""
    rng = random.Random(seed)
    program = random_program(rng, FuzzConfig(size=rng.randint(2, 7)))
    graph = build_graph(program)
    values = infer_values(graph, (0, 1, 2, 3), 4, max_value_set_size=20_000)
    return any(rasp.is_categorical(graph.expr(label)) and find_clash(values[label]) is not None
               for label in graph.sops() if label in values)


@pytest.mark.slow
def test_a_few_hundred_random_programs_never_mismatch_silently():
    report = campaign(300, seed=1)
    assert not report.problems, report.summary()
    assert report.count("matched") > 250, report.summary()  # most programs compile
    # MIXED_TYPE_MAPS make some SOps hold True and 1, 0 and 0.0 or -0.0 and 0.0: kept apart,
    # each a value of its own, and the model matches the evaluator, types included.
    mixed = [o for o in report.outcomes
             if o.status == "matched" and _holds_equal_but_different_values(o.seed)]
    assert len(mixed) > 20, report.summary()


def test_generator_covers_every_construct():
    kinds = set()
    for seed in range(200):
        stack = [random_program(random.Random(seed))]
        while stack:
            expr = stack.pop()
            kinds.add(type(expr).__name__)
            if isinstance(expr, rasp.Select):
                kinds.add(f"predicate:{rasp.predicate_name(expr.predicate)}")
            stack.extend(expr.children)
    expected = {"Map", "SequenceMap", "LinearSequenceMap", "Aggregate", "SelectorWidth", "Select",
                "SelectorAnd", "SelectorOr", "SelectorNot"}
    assert expected <= kinds
    assert {f"predicate:{c.name}" for c in rasp.Comparison} <= kinds


def test_generator_draws_signed_zeros_read_by_their_sign():
    """A numerical SOp giving -0.0 and 0.0, read by copysign: the fuzzer draws both (with
    the old value sets, which kept one signed zero, such programs mismatched)."""
    sign = dict(CATEGORICAL_FROM_NUMERICAL)["sign(x), -0.0 < 0"]
    read_by_sign = 0
    for seed in range(300):
        stack = [random_program(random.Random(seed))]
        while stack:
            expr = stack.pop()
            read_by_sign += isinstance(expr, rasp.Map) and expr.f is sign
            stack.extend(expr.children)
    assert read_by_sign > 0
    signed = rasp.numerical(rasp.Map(dict(NUMERICAL_FROM_CATEGORICAL)["(x-1)/2, -0.0 at 0"],
                                     rasp.tokens, simplify=False))
    program = rasp.Map(sign, signed, simplify=False)
    model = compile_program(program, [0, 1, 2], 3)
    assert model.run([[0, 1, 2]], backend="numpy") == [[1, 1, 1]]  # a numerical zero is 0.0


def test_the_numpy_forward_equals_the_haiku_forward():
    import numpy as np

    program = lib.make_shuffle_dyck(["()", "{}"])
    model = compile_program(program, list("(){}"), 8)
    batch = [list("({})"), list("}{"), list("(){}(){}")]
    assert model.run(batch, backend="numpy") == model.run(batch)
    jax_slices, _ = model.residual_slices(batch)
    numpy_slices, _ = model.residual_slices(batch, backend="numpy")
    for a, b in zip(jax_slices, numpy_slices):
        assert np.allclose(a, b, atol=1e-5)


PROGRAM = lib.make_sort_freq(6)
MODEL = compile_program(PROGRAM, ["a", "b", "c"], 6)  # proven safe: no CompileWarning


@settings(max_examples=40)
@given(rasp_inputs(["a", "b", "c"], 6))
def test_property_test_helpers_in_a_few_lines(tokens):
    assert_matches(PROGRAM, MODEL, tokens)


def test_assert_matches_catches_a_wrong_model():
    model = compile_program(lib.make_hist(), ["a", "b"], 4)
    params = {k: dict(v) for k, v in model.params.items()}
    params["layer_0/mlp/linear_2"]["w"] = params["layer_0/mlp/linear_2"]["w"][:, ::-1] * 1
    model.params = params
    with pytest.raises(ModelMismatchError, match=r"hist: on input \['a', 'b', 'a'\] at position "
                                                 r"\d the evaluator says"):
        assert_matches(lib.make_hist(), model, ["a", "b", "a"])


@pytest.mark.slow
def test_extreme_numbers_are_refused_clearly_or_computed_exactly():
    """inf/NaN Maps and large offsets added then subtracted: refused by name, or exact."""
    report = campaign(40, seed=0, config=FuzzConfig(size=3, extreme_rate=0.6), samples=10)
    assert not report.problems, report.summary()
    refusals = " ".join(o.detail for o in report.outcomes if o.status == "refused")
    assert "Use a finite number" in refusals, report.summary()
    assert "the float32 model can be off by up to" in refusals, report.summary()
    assert report.count("matched") > 0, report.summary()


@pytest.mark.slow
def test_oversized_value_sets_are_refused_quickly_by_name():
    """Pair codes of pair codes and means of many distinct numbers: refused in seconds."""
    started = time.perf_counter()
    report = campaign(12, seed=3, config=FuzzConfig(size=1, extreme_rate=1.0), samples=5)
    assert not report.problems, report.summary()
    refusals = [o.detail for o in report.outcomes if o.status == "refused"]
    assert any("value set is too large" in r or "too large to list" in r for r in refusals), (
        report.summary())
    assert time.perf_counter() - started < 60


def test_refusals_group_by_kind_in_the_summary():
    from rasp_compiler.fuzz import FuzzOutcome, FuzzReport, refusal_reason

    a = "InvalidProgramError: map_7: this Map can be inf (returned on the input value 3)"
    b = "InvalidProgramError: map_2: this Map can be nan (returned on the input value 1)"
    assert refusal_reason(a) == refusal_reason(b) == "InvalidProgramError: X: this Map can be N (..)"
    report = FuzzReport([FuzzOutcome(0, "refused", a), FuzzOutcome(1, "refused", b),
                         FuzzOutcome(2, "matched")])
    assert "refused x2: InvalidProgramError: X: this Map can be N" in report.summary()
