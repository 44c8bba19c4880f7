"""The input read backwards.

RASP paper (Weiss et al., 2021) and tracr's `make_reverse`: each position
fetches the token at length - 1 - index.
"""

from rasp_compiler import lib, rasp

VOCAB = ("a", "b", "c", "d")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["a", "b", "c", "d"], ["d", "c", "b", "a"]),
    (["a", "a", "b"], ["b", "a", "a"]),
]


def program():
    return lib.make_reverse(rasp.tokens)
