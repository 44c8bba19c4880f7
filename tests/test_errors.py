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


@pytest.mark.parametrize("error, builtin", [
    (errors.UnknownNameError, KeyError),
    (errors.ModelMismatchError, AssertionError),
    (errors.InternalError, RuntimeError),
])
def test_the_newer_errors_derive_from_the_root_and_a_builtin(error, builtin):
    assert issubclass(error, errors.RaspCompilerError) and issubclass(error, builtin)


def test_an_unknown_name_prints_its_message_unquoted():
    assert str(errors.UnknownNameError("no node 'x'; have ['y']")) == "no node 'x'; have ['y']"


BUILTINS = {"Exception", "ValueError", "TypeError", "KeyError", "IndexError", "LookupError",
            "AssertionError", "RuntimeError", "NotImplementedError", "OSError", "ImportError",
            "ArithmeticError", "ZeroDivisionError"}


def test_the_package_raises_only_its_own_errors_and_asserts_nothing():
    """No `raise ValueError(...)` (or another builtin) and no `assert` in rasp_compiler/:
    every error a user can meet is a RaspCompilerError naming what to fix, and an
    assert vanishes under `python -O`."""
    import ast
    from pathlib import Path

    import rasp_compiler

    found = []
    for path in sorted(Path(rasp_compiler.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Assert):
                found.append(f"{where}: assert")
            elif isinstance(node, ast.Raise) and node.exc is not None:
                raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(raised, ast.Name) and raised.id in BUILTINS:
                    found.append(f"{where}: raise {raised.id}")
    assert not found, "use (or add) a class of rasp_compiler.errors:\n" + "\n".join(found)
