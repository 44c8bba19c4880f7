"""The digits of twice a number (most significant digit first), overflow dropped.

Token-wise arithmetic with a carry: digit i of 2n is (2 * d_i + [d_{i+1} >= 5]) mod 10,
reading the next digit with a shifted Aggregate (default 0 past the end).
"""

from rasp_compiler import rasp

VOCAB = tuple(range(10))
MAX_SEQ_LEN = 4
EXAMPLES = [([1, 2, 7], [2, 5, 4]), ([0, 5], [1, 0]), ([4, 9, 9], [9, 9, 8])]


def program():
    following = rasp.Select(rasp.indices, rasp.indices, lambda key, query: key == query + 1)
    next_digit = rasp.Aggregate(following.named("following"), rasp.tokens, default=0)
    carry = rasp.Map(lambda d: int(d >= 5), next_digit.named("next_digit")).named("carry")
    return rasp.SequenceMap(lambda d, c: (2 * d + c) % 10, rasp.tokens, carry).named("double")
