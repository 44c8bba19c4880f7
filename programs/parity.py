"""The parity of the number of 1s, at every position (0 even, 1 odd)."""

from rasp_compiler import lib, rasp

VOCAB = (0, 1)
MAX_SEQ_LEN = 8
EXAMPLES = [([1, 0, 1, 1], [1, 1, 1, 1]), ([0, 1, 1], [0, 0, 0])]


def program():
    ones = lib.make_count(rasp.tokens, 1)
    return rasp.Map(lambda n: n % 2, ones).named("parity")
