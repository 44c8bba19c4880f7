import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler import compile_program
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.verify import all_inputs, random_inputs, values_match, verify


def test_exhaustive_and_random_inputs():
    assert len(list(all_inputs("ab", 3))) == 2 + 4 + 8
    samples = list(random_inputs("ab", 5, 20, seed=3))
    assert len(samples) == 20 and all(1 <= len(s) <= 5 for s in samples)
    assert samples == list(random_inputs("ab", 5, 20, seed=3))


def test_values_match_uses_tolerance_only_for_numbers():
    assert values_match(1.00001, 1.0)
    assert not values_match(1.01, 1.0)
    assert values_match(None, None) and not values_match(0.0, None)
    assert values_match("a", "a") and not values_match("a", "b")


def test_verify_reports_a_broken_model():
    program = lib.make_hist()
    model = compile_program(program, ["a", "b"], 4)
    assert verify(program, model, exhaustive_up_to=3).ok
    params = dict(model.params)
    params["layer_0/mlp/linear_2"] = {"w": params["layer_0/mlp/linear_2"]["w"] * 0}
    model.params = params
    report = verify(program, model, exhaustive_up_to=2)
    assert not report.ok
    assert report.mismatch_count == report.positions_checked
    assert "MISMATCHED" in str(report) and "expected 1" in str(report)


def test_verify_needs_something_to_check():
    program = lib.make_hist()
    model = compile_program(program, ["a"], 2)
    with pytest.raises(InvalidProgramError, match="exhaustive_up_to"):
        verify(program, model)
    with pytest.raises(InvalidProgramError, match="exceeds"):
        verify(program, model, exhaustive_up_to=3)
