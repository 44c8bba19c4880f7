"""The input moved two positions to the right, None before it.

tracr's `shift_by(2, tokens)`.
"""

from rasp_compiler import lib, rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["a", "b", "c", "a"], [None, None, "a", "b"]),
]


def program():
    return lib.shift_by(2, rasp.tokens)
