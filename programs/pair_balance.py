"""The fraction of "(" minus the fraction of ")" among the tokens so far.

tracr's `make_pair_balance`: negative somewhere means a ")" came too early.
"""

from rasp_compiler import lib, rasp

VOCAB = ("(", ")", "a")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["(", "a", ")", ")"], [1.0, 0.5, 0.0, -0.25]),
]


def program():
    return lib.make_pair_balance(rasp.tokens, "(", ")")
