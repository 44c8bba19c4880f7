"""rasp_compiler: compile RASP programs to exact transformers you can look inside.

    from rasp_compiler import rasp, compile_program   # tracr's RASP API, unchanged
    program = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ),
                             rasp.tokens)
    rasp.evaluate(program, ["a", "b"])                # the reference meaning: ["a", "b"]
    compile_program(program, {"a", "b"}, 8).run([["a", "b"]])   # the same, by a transformer
"""

import importlib
import sys
import types

from rasp_compiler import errors
from rasp_compiler.errors import (
    CompilationError,
    CompileWarning,
    EvaluationError,
    InvalidInputError,
    InvalidProgramError,
    LoadError,
    ModelTooLargeError,
    NotProvidedError,
    RaspCompilerError,
    SaveError,
    UnsafeAggregateError,
    UnsupportedExpressionError,
    ValueSetTooLargeError,
)
from rasp_compiler.lang import lib, rasp
from rasp_compiler.program_files import ProgramSpec, list_programs, load_program

# The rest is imported when first used (PEP 562): `from rasp_compiler import compile_program`
# works as before, while `import rasp_compiler` (and so the command line's `list` and
# `--help`) does not pay for jax, haiku and networkx (about 1.2 s warm on 2 cores).
_LAZY = {
    "compiling": ("rasp_compiler.compiling", None),
    "compile_program": ("rasp_compiler.compiler.pipeline", "compile_program"),
    "compile_rasp_to_model": ("rasp_compiler.compiling", "compile_rasp_to_model"),
    "CompressedModel": ("rasp_compiler.superposition.compression", "CompressedModel"),
    "compress": ("rasp_compiler.superposition.compression", "compress"),
    "Evaluation": ("rasp_compiler.lang.evaluator", "Evaluation"),
    "evaluate": ("rasp_compiler.lang.evaluator", "evaluate"),
    "evaluate_all": ("rasp_compiler.lang.evaluator", "evaluate_all"),
    "ProgramGraph": ("rasp_compiler.lang.graph", "ProgramGraph"),
    "build_graph": ("rasp_compiler.lang.graph", "build_graph"),
    "CompiledModel": ("rasp_compiler.model.compiled", "CompiledModel"),
    "Unclean": ("rasp_compiler.model.compiled", "Unclean"),
    "ValueSets": ("rasp_compiler.compiler.values", "ValueSets"),
    "infer_values": ("rasp_compiler.compiler.values", "infer_values"),
    "VerificationReport": ("rasp_compiler.verify.checker", "VerificationReport"),
    "verify": ("rasp_compiler.verify.checker", "verify"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'rasp_compiler' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Importing a module of the `rasp_compiler.verify` folder sets the package's `verify` to that
    module (the import system's setattr); the package's `verify` stays the function, as it
    was when this file imported everything eagerly."""

    def __setattr__(self, name: str, value) -> None:
        if name == "verify" and isinstance(value, types.ModuleType):
            value = value.verify
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "CompilationError",
    "CompileWarning",
    "CompiledModel",
    "CompressedModel",
    "Unclean",
    "VerificationReport",
    "compile_program",
    "compile_rasp_to_model",
    "compiling",
    "compress",
    "verify",
    "Evaluation",
    "EvaluationError",
    "InvalidInputError",
    "InvalidProgramError",
    "LoadError",
    "ModelTooLargeError",
    "ProgramGraph",
    "ProgramSpec",
    "RaspCompilerError",
    "SaveError",
    "UnsafeAggregateError",
    "NotProvidedError",
    "UnsupportedExpressionError",
    "ValueSetTooLargeError",
    "ValueSets",
    "build_graph",
    "errors",
    "evaluate",
    "evaluate_all",
    "infer_values",
    "lib",
    "list_programs",
    "load_program",
    "rasp",
]
