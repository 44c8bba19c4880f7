"""rasp_compiler: compile RASP programs to exact transformers you can look inside.

    from rasp_compiler import rasp, compile_program   # tracr's RASP API, unchanged
    program = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ),
                             rasp.tokens)
    rasp.evaluate(program, ["a", "b"])                # the reference meaning: ["a", "b"]
    compile_program(program, {"a", "b"}, 8).run([["a", "b"]])   # the same, by a transformer
"""

from rasp_compiler import compiling, errors, lib, rasp
from rasp_compiler.compiler import compile_program
from rasp_compiler.compiling import compile_rasp_to_model
from rasp_compiler.compression import CompressedModel, compress
from rasp_compiler.errors import (
    CompilationError,
    CompileWarning,
    EvaluationError,
    InvalidInputError,
    InvalidProgramError,
    LoadError,
    ModelTooLargeError,
    RaspCompilerError,
    SaveError,
    UnsafeAggregateError,
    NotProvidedError,
    UnsupportedExpressionError,
    ValueSetTooLargeError,
)
from rasp_compiler.evaluator import Evaluation, evaluate, evaluate_all
from rasp_compiler.graph import ProgramGraph, build_graph
from rasp_compiler.program_files import ProgramSpec, list_programs, load_program
from rasp_compiler.model import CompiledModel, Unclean
from rasp_compiler.values import ValueSets, infer_values
from rasp_compiler.verify import VerificationReport, verify

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
