"""The tokens in increasing order, for inputs without repeated tokens.

tracr's `make_sort_unique(tokens, tokens)`: each token counts the smaller ones to
find its target position. A repeated token makes two positions share a target
(they hold the same value, so nothing mixes) and leaves a later position with
no source: the output there is None. Use `sort` for inputs with repeats.
"""

from rasp_compiler import lib, rasp

VOCAB = (1, 2, 3, 4, 5)
MAX_SEQ_LEN = 5
EXAMPLES = [
    ([3, 1, 4, 2], [1, 2, 3, 4]),
    ([5, 2], [2, 5]),
    ([2, 1, 2], [1, 2, None]),
]


def program():
    return lib.make_sort_unique(rasp.tokens, rasp.tokens)
