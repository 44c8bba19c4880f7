"""Differential fuzzing: random programs either match the evaluator or are refused clearly."""

import random
import time

import pytest
from hypothesis import given, settings

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import ModelMismatchError
from rasp_compiler.verify.fuzz import (CATEGORICAL_FROM_NUMERICAL, HUGE_LENGTHS, MIXED_VALUE_MAPS,
                                NAN_INSIDE_MAPS, NAN_INSIDE_PAIRS, NUMERICAL_FROM_CATEGORICAL,
                                SPECIAL_PREDICATES, FuzzConfig, random_program)
from rasp_compiler.verify.fuzz_campaign import campaign
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.lang.identity import find_clash
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.verify.testing import assert_matches, rasp_inputs


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


def _exprs(seed: int) -> list:
    """Every expression of the campaign's program of this seed."""
    rng = random.Random(seed)
    stack, seen = [random_program(rng, FuzzConfig(size=rng.randint(2, 7)))], {}
    while stack:
        expr = stack.pop()
        if id(expr) not in seen:
            seen[id(expr)] = expr
            stack.extend(expr.children)
    return list(seen.values())


def _can_be_none(sop, vocab=(0, 1, 2, 3), n=4) -> bool:
    try:
        return None in infer_values(sop, vocab, n, max_value_set_size=20_000)[sop.label]
    except Exception:  # refused programs: not counted
        return False


def test_generator_draws_constant_and_negated_predicates_over_sops_that_can_be_none():
    """Issue 22: dropping the None guard in selectors.py (an always-true atom over an SOp
    that can be None folds to TRUE) miscompiled SelectorWidth(Select(shift_by(1, tokens),
    tokens, always-true) & Select(indices, indices, LEQ)), and 1 of the 300 test programs
    noticed. The generator now draws such Selects (SPECIAL_PREDICATES over shifted SOps);
    with that mutation, test_a_few_hundred_random_programs_never_mismatch_silently finds
    12 mismatched programs."""
    special = {f: name for name, f in SPECIAL_PREDICATES}
    over_none: dict[str, int] = {}
    for seed in range(1, 301):
        for expr in _exprs(seed):
            if isinstance(expr, rasp.Select) and expr.predicate in special:
                if _can_be_none(expr.keys) or _can_be_none(expr.queries):
                    name = special[expr.predicate]
                    over_none[name] = over_none.get(name, 0) + 1
    assert set(over_none) == set(special.values()), over_none
    assert sum(over_none.values()) > 40, over_none


def test_a_few_hundred_programs_include_mixed_types_nan_inside_and_huge_lengths():
    mixed = {f for _, f in MIXED_VALUE_MAPS}
    nan_inside = {f for _, f in NAN_INSIDE_MAPS + NAN_INSIDE_PAIRS}
    drawn = {"mixed": set(), "nan": set()}
    for seed in range(1, 301):
        for expr in _exprs(seed):
            if isinstance(expr, (rasp.Map, rasp.SequenceMap)):
                if expr.f in mixed:
                    drawn["mixed"].add(seed)
                if expr.f in nan_inside:
                    drawn["nan"].add(seed)
    assert len(drawn["mixed"]) > 20 and drawn["nan"], drawn  # NaN: an extreme draw, rarer
    report = campaign(300, seed=1)
    matched = {o.seed for o in report.outcomes if o.status == "matched"}
    assert len(matched & drawn["mixed"]) > 20  # mixed values compile, decoded to themselves
    refusals = [o.detail for o in report.outcomes if o.status == "refused"]
    assert any(f"at max_seq_len={n:,}" in r for r in refusals for n in HUGE_LENGTHS)


def test_programs_at_huge_lengths_are_refused_or_compiled_in_seconds():
    """Every program of this campaign is compiled at a huge max_seq_len (20,000, 10^9 or
    10^14): each must be refused by name or compiled within HUGE_LENGTH_SECONDS ("slow"
    otherwise), in bounded memory, and check exactly on the short inputs."""
    started = time.perf_counter()
    report = campaign(40, seed=7, config=FuzzConfig(size=4, huge_length_rate=1.0), samples=5)
    assert not report.problems, report.summary()
    refusals = " ".join(o.detail for o in report.outcomes if o.status == "refused")
    assert "at max_seq_len=" in refusals and "the embedding tables alone need" in refusals
    assert time.perf_counter() - started < 120  # about 10 s; a safety net only


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
    assert "it holds NaN, which is not equal to itself" in refusals, report.summary()
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
    from rasp_compiler.verify.fuzz_campaign import FuzzOutcome, FuzzReport, refusal_reason

    a = "InvalidProgramError: map_7: this Map can be inf (returned on the input value 3)"
    b = "InvalidProgramError: map_2: this Map can be nan (returned on the input value 1)"
    assert refusal_reason(a) == refusal_reason(b) == "InvalidProgramError: X: this Map can be N (..)"
    report = FuzzReport([FuzzOutcome(0, "refused", a), FuzzOutcome(1, "refused", b),
                         FuzzOutcome(2, "matched")])
    assert "refused x2: InvalidProgramError: X: this Map can be N" in report.summary()
