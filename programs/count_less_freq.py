"""How many positions hold a token occurring at most twice, at every position.

tracr's `make_count_less_freq(2)`.
"""

from rasp_compiler import lib

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["a", "a", "a", "b", "b", "c"], [3] * 6),
    (["a", "a", "c", "b", "b", "c"], [6] * 6),
]


def program():
    return lib.make_count_less_freq(2)
