import pytest

from rasp_compiler import errors


@pytest.mark.parametrize(
    "error, builtin",
    [
        (errors.InvalidProgramError, ValueError),
        (errors.UnsupportedExpressionError, NotImplementedError),
        (errors.EvaluationError, ValueError),
        (errors.ValueSetTooLargeError, ValueError),
        (errors.InvalidInputError, ValueError),
        (errors.CompilationError, ValueError),
        (errors.UnsafeAggregateError, errors.CompilationError),
        (errors.LoadError, ValueError),
        (errors.SaveError, OSError),
    ],
)
def test_every_error_derives_from_the_root_and_a_builtin(error, builtin):
    assert issubclass(error, errors.RaspCompilerError)
    assert issubclass(error, builtin)
    with pytest.raises(errors.RaspCompilerError):
        raise error("boom")


def test_describe_values_truncates_long_collections():
    assert errors.describe_values([1, 2]) == "{1, 2}"
    assert "(20 in all)" in errors.describe_values(range(20))


def test_model_too_large_is_a_compilation_error_that_carries_its_numbers():
    error = errors.ModelTooLargeError("pairs: too big", parameters=300, limit=200, label="pairs")
    assert isinstance(error, errors.CompilationError) and isinstance(error, ValueError)
    assert (error.parameters, error.limit, error.label) == (300, 200, "pairs")


def test_describe_bytes_picks_a_readable_unit():
    assert errors.describe_bytes(812) == "812 bytes"
    assert errors.describe_bytes(12_500) == "12.5 kB"
    assert errors.describe_bytes(2_147_483_648) == "2.1 GB"
