"""True everywhere iff "()" and "{}" are each balanced on their own (shuffle-Dyck-2).

tracr's `make_shuffle_dyck2`; interleavings such as "({)}" count as balanced.
"""

from rasp_compiler import lib

VOCAB = ("(", ")", "{", "}")
MAX_SEQ_LEN = 10
EXAMPLES = [
    (list("({)}"), [True] * 4),
    (list("(){)}"), [False] * 5),
]


def program():
    return lib.make_shuffle_dyck2()
