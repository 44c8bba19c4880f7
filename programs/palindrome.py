"""True everywhere iff the input reads the same backwards.

The reverse (as in `reverse`, with a default so that it is never None), then
the fraction of positions where it differs from the input must be zero.
"""

from rasp_compiler import lib, rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 7
EXAMPLES = [(list("abcba"), [True] * 5), (list("abca"), [False] * 4), (list("a"), [True])]


def program():
    opposite = (lib.make_length() - rasp.indices - 1).named("opposite")
    flip = rasp.Select(rasp.indices, opposite, rasp.Comparison.EQ).named("flip")
    flipped = rasp.Aggregate(flip, rasp.tokens, default="").named("flipped")
    differs = rasp.numerical(rasp.SequenceMap(lambda x, y: float(x != y), rasp.tokens, flipped))
    everywhere = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("everywhere")
    mismatches = rasp.numerical(rasp.Aggregate(everywhere, differs.named("differs"), default=0))
    return rasp.Map(lambda m: m == 0, mismatches.named("mismatch_rate")).named("palindrome")
