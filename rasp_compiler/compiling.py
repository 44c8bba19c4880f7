"""tracr's entry point, under tracr's module name: `from rasp_compiler import compiling`.

tracr code writes `from tracr.compiler import compiling` and then
`compiling.compile_rasp_to_model(program, vocab, max_seq_len, ...)`; here the same
two lines work with `rasp_compiler` in place of `tracr.compiler`, with tracr's
arguments and defaults (`compiler_bos="compiler_bos"`, `compiler_pad="compiler_pad"`).
"""

from __future__ import annotations

from typing import Any, Iterable

from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang import rasp
from rasp_compiler.model.tracr_model import AssembledModel

COMPILER_BOS = "compiler_bos"
COMPILER_PAD = "compiler_pad"


def compile_rasp_to_model(
    program: rasp.SOp,
    vocab: Iterable[Any],
    max_seq_len: int,
    causal: bool = False,
    compiler_bos: Any = COMPILER_BOS,
    compiler_pad: Any = COMPILER_PAD,
    mlp_exactness: int = 100,
) -> AssembledModel:
    """tracr's `compile_rasp_to_model`, same arguments and defaults.

    `mlp_exactness` is accepted for compatibility and has no effect: every MLP here
    is exact on every possible input value, not a discretised approximation.
    `causal=True` builds a decoder-only model, as tracr does (see compile_program).
    The result is tracr's model object (`AssembledModel`: tracr's parameter names
    and residual order, encoders, forward, graph); `.compiled` is ours.
    """
    if isinstance(mlp_exactness, bool) or not isinstance(mlp_exactness, int) or mlp_exactness < 1:
        raise InvalidProgramError(f"mlp_exactness must be a positive int, got {mlp_exactness!r}")
    return AssembledModel(compile_program(program, vocab, max_seq_len, bos=compiler_bos,
                                          pad=compiler_pad, causal=causal))
