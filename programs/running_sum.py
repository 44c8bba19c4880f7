"""The sum of the tokens so far (this one included), as an exact integer.

The mean of the prefix (a numerical Aggregate) times the prefix length: one
numerical input and one categorical input, fused into one exact MLP.
"""

from rasp_compiler import rasp

VOCAB = (0, 1, 2, 3)
MAX_SEQ_LEN = 6
EXAMPLES = [([1, 2, 0, 3], [1, 3, 3, 6]), ([3, 3], [3, 6])]


def program():
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prefix")
    values = rasp.numerical(rasp.Map(lambda t: t, rasp.tokens)).named("values")
    mean = rasp.numerical(rasp.Aggregate(prefix, values, default=0)).named("prefix_mean")
    return rasp.SequenceMap(lambda m, i: round(m * (i + 1)), mean, rasp.indices).named("running_sum")
