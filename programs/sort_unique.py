"""The tokens in increasing order, for inputs without repeated tokens.

tracr's `make_sort_unique(tokens, tokens)`: each token counts the smaller ones to
find its target position. On an input with a repeated token, two positions
share a target and the final Aggregate would have to mix them: the evaluator
rejects such inputs and the compiled model flags them, which is why this
program compiles with `allow_unsafe_aggregates` (use `sort` for repeats).
"""

from rasp_compiler import lib, rasp

VOCAB = (1, 2, 3, 4, 5)
MAX_SEQ_LEN = 5
EXAMPLES = [
    ([3, 1, 4, 2], [1, 2, 3, 4]),
    ([5, 2], [2, 5]),
]
COMPILE_OPTIONS = {"allow_unsafe_aggregates": True}


def program():
    return lib.make_sort_unique(rasp.tokens, rasp.tokens)
