"""True everywhere iff "()", "{}" and "[]" are each balanced on their own (shuffle-Dyck-3).

tracr's `make_shuffle_dyck(["()", "{}", "[]"])`.
"""

from rasp_compiler import lib

VOCAB = ("(", ")", "{", "}", "[", "]")
MAX_SEQ_LEN = 10
EXAMPLES = [
    (list("{(}[])"), [True] * 6),
    (list("[(])]"), [False] * 5),
]


def program():
    return lib.make_shuffle_dyck(["()", "{}", "[]"])
