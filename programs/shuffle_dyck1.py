"""True everywhere iff the parentheses are balanced (Dyck-1, the RASP paper's way).

tracr's `make_shuffle_dyck(["()"])`: no prefix closes more than it opened and
the balance is zero at the end.
"""

from rasp_compiler import lib

VOCAB = ("(", ")")
MAX_SEQ_LEN = 8
EXAMPLES = [
    (list("(())"), [True] * 4),
    (list("())("), [False] * 4),
    (list("(("), [False] * 2),
]


def program():
    return lib.make_shuffle_dyck(["()"])
