"""The token occurring in more than half of the positions, or "-" if there is none."""

from rasp_compiler import lib, rasp

VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 6
EXAMPLES = [(list("abaa"), ["a"] * 4), (list("abcab"), ["-"] * 5), (list("bb"), ["b", "b"])]


def program():
    hist = lib.make_hist()
    length = lib.make_length().named("length")
    is_major = rasp.SequenceMap(lambda h, n: 2 * h > n, hist, length).named("is_major")
    pick = rasp.Select(is_major, rasp.tokens, lambda key, query: key).named("pick_major")
    return rasp.Aggregate(pick, rasp.tokens, default="-").named("majority")
