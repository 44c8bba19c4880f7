"""The largest token, at every position.

A position holds the maximum when no key is larger (width of `>` is zero); every
such position holds the same value, so copying from all of them is exact.
"""

from rasp_compiler import rasp

VOCAB = (0, 1, 2, 3, 4)
MAX_SEQ_LEN = 6
EXAMPLES = [([2, 4, 1, 4], [4, 4, 4, 4]), ([0], [0])]


def program():
    larger = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.GT).named("larger")
    is_max = (rasp.SelectorWidth(larger) == 0).named("is_max")
    pick = rasp.Select(is_max, rasp.tokens, lambda key, query: key).named("pick_max")
    return rasp.Aggregate(pick, rasp.tokens).named("max_token")
