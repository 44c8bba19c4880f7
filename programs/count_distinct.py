"""How many distinct tokens the input has, at every position."""

from rasp_compiler import rasp

VOCAB = ("a", "b", "c", "d")
MAX_SEQ_LEN = 6
EXAMPLES = [(list("abab"), [2] * 4), (list("dcba"), [4] * 4)]


def program():
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    is_first = (rasp.SelectorWidth(same & earlier) == 0).named("is_first")
    firsts = rasp.Select(is_first, is_first, lambda key, query: key).named("first_keys")
    return rasp.SelectorWidth(firsts).named("count_distinct")
