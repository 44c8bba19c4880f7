"""How many tokens are "a", at every position.

tracr's `make_count(tokens, "a")`.
"""

from rasp_compiler import lib, rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["a", "a", "a", "b", "b", "c"], [3] * 6),
    (["c", "a", "b", "c"], [1] * 4),
]


def program():
    return lib.make_count(rasp.tokens, "a")
