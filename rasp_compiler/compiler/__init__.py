"""The compiler: `pipeline.compile_program` runs the stages in order, one module each
(docs/compiler.md lists them). Imports `lang` and `model`."""

from rasp_compiler.compiler.pipeline import compile_program

__all__ = ["compile_program"]
