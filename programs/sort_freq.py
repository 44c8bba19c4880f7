"""The tokens ordered by decreasing frequency, ties in input order.

tracr's `make_sort_freq`: sort by minus the histogram.
"""

from rasp_compiler import lib

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 5
EXAMPLES = [
    (["b", "a", "b", "c"], ["b", "b", "a", "c"]),
    (["a", "c", "c", "c", "a"], ["c", "c", "c", "a", "a"]),
]


def program(max_seq_len=MAX_SEQ_LEN):
    return lib.make_sort_freq(max_seq_len)
