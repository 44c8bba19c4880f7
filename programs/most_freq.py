"""The most frequent token, at every position (ties: the one that occurs first).

After the RASP paper's `most_freq`: a histogram, a first-occurrence flag from
`select(tok, tok, ==) and select(indices, indices, <)`, and a "beats" selector
(more frequent, or as frequent and first seen earlier) whose width is zero only
at the winner's first occurrence. Uses AND in one head and an OR with no shared
side.
"""

from rasp_compiler import rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [
    (["a", "b", "b", "c"], ["b"] * 4),
    (["c", "a", "a", "c"], ["c"] * 4),
    (["b"], ["b"]),
]


def program():
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    hist = rasp.SelectorWidth(same).named("hist")
    seen_before = rasp.SelectorWidth(same & earlier).named("seen_before")
    is_first = (seen_before == 0).named("is_first")
    more = rasp.Select(hist, hist, rasp.Comparison.GT).named("more_frequent")
    as_many = rasp.Select(hist, hist, rasp.Comparison.EQ).named("as_frequent")
    first_keys = rasp.Select(is_first, is_first, lambda key, query: key).named("first_keys")
    beats = (first_keys & (more | (as_many & earlier))).named("beats")
    beaten = rasp.SelectorWidth(beats).named("beaten")
    winner = rasp.SequenceMap(lambda first, n: bool(first) and n == 0, is_first, beaten)
    winner = winner.named("winner")
    pick = rasp.Select(winner, rasp.tokens, lambda key, query: key).named("pick_winner")
    return rasp.Aggregate(pick, rasp.tokens).named("most_freq")
