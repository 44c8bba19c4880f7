"""For each token, how many distinct tokens occur exactly as often as it does.

RASP paper (Weiss et al., 2021), `double_hist`: the histogram, then the width of
"same count and a first occurrence" (an AND of two selectors).
"""

from rasp_compiler import rasp

VOCAB = ("a", "b", "c", "d")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (list("aabcd"), [1, 1, 3, 3, 3]),
    (list("abab"), [2, 2, 2, 2]),
]


def program():
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    hist = rasp.SelectorWidth(same).named("hist")
    is_first = (rasp.SelectorWidth(same & earlier) == 0).named("is_first")
    same_count = rasp.Select(hist, hist, rasp.Comparison.EQ).named("same_count")
    first_keys = rasp.Select(is_first, is_first, lambda key, query: key).named("first_keys")
    return rasp.SelectorWidth(same_count & first_keys).named("double_hist")
