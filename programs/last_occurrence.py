"""The position where the token at each position last occurs."""

from rasp_compiler import rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [(list("abab"), [2, 3, 2, 3]), (list("cca"), [1, 1, 2])]


def program():
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    later = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.GT).named("later")
    is_last = (rasp.SelectorWidth(same & later) == 0).named("is_last")
    last_keys = rasp.Select(is_last, is_last, lambda key, query: key).named("last_keys")
    return rasp.Aggregate(same & last_keys, rasp.indices).named("last_occurrence")
