"""True where the pattern "abc" ends, False elsewhere, None for the first two positions.

tracr's `detect_pattern(tokens, "abc")`.
"""

from rasp_compiler import lib, rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 7
EXAMPLES = [
    (list("abcabc"), [None, None, True, False, False, True]),
    (list("aab"), [None, None, False]),
]


def program():
    return lib.detect_pattern(rasp.tokens, "abc")
