"""The tokens in increasing order, repeats allowed (ties kept in input order).

tracr's `make_sort(tokens, tokens, max_seq_len, min_key=1)`: keys are made
unique by adding index / max_seq_len, then sorted as in `sort_unique`.
"""

from rasp_compiler import lib, rasp

VOCAB = (1, 2, 3, 4, 5)
MAX_SEQ_LEN = 5
EXAMPLES = [
    ([3, 1, 4, 2], [1, 2, 3, 4]),
    ([2, 4, 1, 2], [1, 2, 2, 4]),
]


def program(max_seq_len=MAX_SEQ_LEN):
    return lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=max_seq_len, min_key=1)
