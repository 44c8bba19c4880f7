"""The fraction of tokens so far (this one included) that are "x".

RASP paper `frac_prevs` and tracr's `make_frac_prevs`: a numerical mean over
the positions up to this one.
"""

from rasp_compiler import lib, rasp

VOCAB = ("a", "b", "x")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["a", "x", "x", "b"], [0.0, 0.5, 2 / 3, 0.5]),
    (["x"], [1.0]),
]


def program():
    return lib.make_frac_prevs((rasp.tokens == "x").named("is_x"))
