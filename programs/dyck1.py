"""True everywhere iff the parentheses are balanced (Dyck-1), with integer counts.

In the RASP paper's spirit but counting instead of averaging: the number of "("
and of ")" up to each position is the width of `select(indices, indices, <=)
and select(tokens, tokens, is-open)`, one head each (an AND of two atoms). The
word is balanced iff no prefix has more ")" than "(" and the totals are equal.
"""

from rasp_compiler import lib, rasp

VOCAB = ("(", ")")
MAX_SEQ_LEN = 8
EXAMPLES = [
    (list("(())()"), [True] * 6),
    (list("())("), [False] * 4),
    (list("(("), [False] * 2),
]


def program():
    return lib.make_dyck(["()"])
