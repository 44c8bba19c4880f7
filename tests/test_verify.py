import pytest

from rasp_compiler import lib
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


def test_categorical_outputs_must_be_the_same_value_not_merely_equal():
    assert values_match(True, 1) and values_match(1.00001, 1)  # numerical: numbers
    assert not values_match(True, 1, categorical=True)
    assert not values_match(1.0, 1, categorical=True)
    assert not values_match(-0.0, 0.0, categorical=True)
    assert values_match(1, 1, categorical=True) and values_match(None, None, categorical=True)


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


def test_progress_bar_reports_counts(capsys):
    program = lib.make_hist()
    model = compile_program(program, ["a", "b"], 4)
    report = verify(program, model, exhaustive_up_to=3, samples=10, progress=True, chunk=5)
    err = capsys.readouterr().err
    assert report.ok and report.inputs_checked == 24
    assert "24/24 inputs (100%)" in err and "0 mismatched" in err


def test_batches_are_sharded_over_several_devices():
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import numpy as np
        from rasp_compiler import lib, rasp, compile_program, verify
        program = lib.make_reverse(rasp.tokens)
        model = compile_program(program, ["a", "b", "c"], 6)
        ids, mask = model.runtime.sharded(np.zeros((8, 4), np.int32), np.ones((8, 4), bool))
        print(len(ids.sharding.device_set))
        report = verify(program, model, exhaustive_up_to=4, samples=50)
        print(report.devices, report.ok, report.inputs_checked)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, check=True)
    assert result.stdout.split() == ["4", "4", "True", "170"]
