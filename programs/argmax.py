"""The position of the first largest token, at every position.

A key is the argmax when nothing is larger and no earlier key is as large: the
width of `(larger) | (as large and earlier)` is zero there (an OR with no
shared side, flagged in the selector report).
"""

from rasp_compiler import rasp

VOCAB = (0, 1, 2, 3)
MAX_SEQ_LEN = 6
EXAMPLES = [([1, 3, 0, 3], [1, 1, 1, 1]), ([2, 1], [0, 0])]


def program():
    larger = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.GT).named("larger")
    equal = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("equal")
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    beaten = rasp.SelectorWidth(larger | (equal & earlier)).named("beaten")
    pick = rasp.Select(beaten, rasp.tokens, lambda key, query: key == 0).named("pick_first_max")
    return rasp.Aggregate(pick, rasp.indices).named("argmax")
