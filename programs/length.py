"""The input length at every position.

tracr's `make_length`: the width of a selector that selects every key.
"""

from rasp_compiler import lib

VOCAB = ("a", "b", "c", "d")
MAX_SEQ_LEN = 8
EXAMPLES = [
    (["a", "b", "b", "b", "c"], [5, 5, 5, 5, 5]),
    (["d"], [1]),
]


def program():
    return lib.make_length()
