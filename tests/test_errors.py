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
