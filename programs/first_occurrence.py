"""The position where the token at each position first occurs.

An AND of "same token" and "no earlier equal token" selects exactly one key.
"""

from rasp_compiler import rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [(list("abab"), [0, 1, 0, 1]), (list("cca"), [0, 0, 2])]


def program():
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    is_first = (rasp.SelectorWidth(same & earlier) == 0).named("is_first")
    first_keys = rasp.Select(is_first, is_first, lambda key, query: key).named("first_keys")
    return rasp.Aggregate(same & first_keys, rasp.indices).named("first_occurrence")
