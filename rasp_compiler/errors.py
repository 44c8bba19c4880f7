"""The one error hierarchy (and the one warning) of rasp_compiler.

Every error the package raises on purpose derives from `RaspCompilerError`, and
each subclass also derives from the builtin a caller would naturally catch, so
`except ValueError` and `except RaspCompilerError` both work.

Messages follow one rule: name the node (its label) or the token, say what was
wrong with which values, and say what to write instead.
"""

from __future__ import annotations


class RaspCompilerError(Exception):
    """Root of every error raised on purpose by rasp_compiler."""


class InvalidProgramError(RaspCompilerError, ValueError):
    """The RASP program is malformed (wrong types, clashing labels, bad arguments)."""


class UnsupportedExpressionError(RaspCompilerError, NotImplementedError):
    """The program is valid RASP but the compiler cannot (yet) build it exactly."""


class NotProvidedError(RaspCompilerError, NotImplementedError):
    """A part of tracr's interface this compiler does not provide; the message says what
    to use instead (tracr's craft model, its haiku module)."""


class EvaluationError(RaspCompilerError, ValueError):
    """The reference evaluator met an input on which the program has no meaning.

    `label` names the expression at fault and `position` the query position, when known.
    """

    def __init__(self, message: str, *, label: str | None = None, position: int | None = None):
        super().__init__(message)
        self.label = label
        self.position = position


class ValueSetTooLargeError(RaspCompilerError, ValueError):
    """An SOp can take more distinct values than the configured limit allows."""


class InvalidInputError(RaspCompilerError, ValueError):
    """An input sequence does not fit the compiled model (unknown token, too long, ...)."""


class CompilationError(RaspCompilerError, ValueError):
    """The compiler cannot prove its construction exact within the requested tolerance."""


class UnsafeAggregateError(CompilationError):
    """A categorical Aggregate may select several positions holding different values."""


class ModelTooLargeError(CompilationError):
    """The compiled model would have more parameters than `max_parameters` allows.

    Raised before any weight is allocated; `parameters` is a lower bound on the
    model's size, `limit` the option's value, `label` the part responsible.
    """

    def __init__(self, message: str, *, parameters: int, limit: int, label: str):
        super().__init__(message)
        self.parameters = parameters
        self.limit = limit
        self.label = label


class MissingDependencyError(RaspCompilerError, ImportError):
    """An optional dependency (for pictures: matplotlib) is not installed."""


class UnknownNameError(RaspCompilerError, KeyError):
    """A lookup by name (a node's label, a selector, a head) that the model does not have."""

    def __str__(self) -> str:  # KeyError would show the message quoted, as a repr
        return str(self.args[0]) if self.args else ""


class ModelMismatchError(RaspCompilerError, AssertionError):
    """The compiled model's output differs from the reference evaluator's (raised by the
    testing helpers, so pytest and hypothesis report it as a failed check)."""


class InternalError(RaspCompilerError, RuntimeError):
    """rasp_compiler broke one of its own rules: a bug in rasp_compiler, not in the
    program or the input; the message says where to fix it."""


class CompileWarning(UserWarning):
    """Something the compiler could not prove: the model is built, but check it."""


class LoadError(RaspCompilerError, ValueError):
    """A saved model or a program file cannot be loaded."""


class SavedFileProblem(LoadError):
    """One thing wrong inside a saved file (model.json, params.npz); the loader adds the
    folder to the message."""


class SaveError(RaspCompilerError, OSError):
    """A model or report cannot be written where asked (a file in the way, a folder of
    other things, an OS error), or holds a value a saved model cannot represent."""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 head', '2 heads', '0 layers': a count with its noun, singular only for 1."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def describe_values(values, limit: int = 8) -> str:
    """Short human-readable rendering of a collection of values for error messages."""
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values)} in all)"
    return "{" + shown + "}"


def describe_bytes(size: int) -> str:
    """A byte count for messages: '2.1 GB', '340.0 MB', '12.5 kB', '812 bytes'."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
