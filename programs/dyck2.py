"""True everywhere iff "()" and "[]" are properly nested and balanced (Dyck-2).

Every closing bracket must close the most recent unclosed bracket, and of the
same type. Depths come from widths of AND selectors; each closing bracket
finds its opening partner with a head selecting on (depth, rank) pairs, an AND
of three atoms in one head; one more head checks every position at once.
"""

from rasp_compiler import lib

VOCAB = ("(", ")", "[", "]")
MAX_SEQ_LEN = 8
EXAMPLES = [
    (list("([])[]"), [True] * 6),
    (list("([)]"), [False] * 4),
    (list("(]"), [False] * 2),
    (list("[[]]"), [True] * 4),
]


def program():
    return lib.make_dyck(["()", "[]"])
