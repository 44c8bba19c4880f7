"""The tokens in increasing order, ties broken by position, the RASP paper's way.

RASP paper (Weiss et al., 2021), `sort`: a key goes before another if it is
smaller, or equal and earlier: `select(k, k, <) or (select(k, k, ==) and
select(indices, indices, <))`. tracr cannot compile this Boolean selector; here
its normal form is (k <= k) and (k < k or i < i), and the OR with no shared side
is built by product encoding (the selector report flags it).
"""

from rasp_compiler import rasp

VOCAB = (1, 2, 3, 4)
MAX_SEQ_LEN = 6
EXAMPLES = [
    ([3, 1, 2, 1], [1, 1, 2, 3]),
    ([4, 4, 2], [2, 4, 4]),
]


def program():
    keys = rasp.tokens
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT).named("smaller")
    same = rasp.Select(keys, keys, rasp.Comparison.EQ).named("same")
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    before = (smaller | (same & earlier).named("same_and_earlier")).named("before")
    target = rasp.SelectorWidth(before).named("target")
    fetch = rasp.Select(target, rasp.indices, rasp.Comparison.EQ).named("fetch")
    return rasp.Aggregate(fetch, rasp.tokens).named("sort_ties")
