"""The smallest token, at every position (the mirror image of max_token)."""

from rasp_compiler import rasp

VOCAB = (0, 1, 2, 3, 4)
MAX_SEQ_LEN = 6
EXAMPLES = [([2, 4, 1, 4], [1, 1, 1, 1]), ([3], [3])]


def program():
    smaller = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("smaller")
    is_min = (rasp.SelectorWidth(smaller) == 0).named("is_min")
    pick = rasp.Select(is_min, rasp.tokens, lambda key, query: key).named("pick_min")
    return rasp.Aggregate(pick, rasp.tokens).named("min_token")
