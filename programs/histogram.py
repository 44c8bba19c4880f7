"""How often the token at each position occurs in the input.

RASP paper `hist` and tracr's `make_hist`: the width of the same-token selector.
"""

from rasp_compiler import lib

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["a", "b", "a", "c"], [2, 1, 2, 1]),
    (["c", "c", "c"], [3, 3, 3]),
]


def program():
    return lib.make_hist()
