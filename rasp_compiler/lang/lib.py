"""Reusable RASP building blocks, with the same names and meanings as tracr's `compiler.lib`.

Each function returns a fresh expression DAG; the programs in `programs/` are
thin wrappers that pick a vocab and a length.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang import rasp


def make_length() -> rasp.SOp:
    """The input length at every position: the width of an all-true selector."""
    all_true = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true")
    return rasp.SelectorWidth(all_true).named("length")


# One shared instance, as in tracr (whose make_reverse and make_shuffle_dyck read it).
length = make_length()


def make_reverse(sop: rasp.SOp) -> rasp.SOp:
    """`sop` read backwards: position i takes the value at length - 1 - i."""
    opp_index = (length - rasp.indices).named("opp_index")
    opp_index = (opp_index - 1).named("opp_index_minus_1")
    flip = rasp.Select(rasp.indices, opp_index, rasp.Comparison.EQ).named("flip")
    return rasp.Aggregate(flip, sop).named("reverse")


def make_hist() -> rasp.SOp:
    """How many times the token at each position occurs in the whole input."""
    same_token = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    return rasp.SelectorWidth(same_token).named("hist")


def make_sort_unique(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """`vals` ordered by `keys`, which must be distinct within an input.

    Each position counts the keys smaller than its own (its target position),
    then each output position fetches the value whose target it is.
    """
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    fetch = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ).named("fetch")
    return rasp.Aggregate(fetch, vals).named("sort")


def make_sort(vals: rasp.SOp, keys: rasp.SOp, *, max_seq_len: int, min_key: float) -> rasp.SOp:
    """`vals` ordered by `keys`, ties kept in input order.

    Ties are broken by adding a fraction of the index that is smaller than the
    gap between distinct keys (`min_key` is that gap), so keys become unique.
    """
    unique_keys = rasp.SequenceMap(
        lambda key, index: key + min_key * index / max_seq_len, keys, rasp.indices
    ).named("unique_keys")
    return make_sort_unique(vals, unique_keys)


def make_sort_freq(max_seq_len: int) -> rasp.SOp:
    """Tokens ordered by decreasing frequency, ties in input order."""
    hist = (-1 * make_hist()).named("neg_hist")
    return make_sort(rasp.tokens, hist, max_seq_len=max_seq_len, min_key=1).named("sort_freq")


def make_frac_prevs(bools: rasp.SOp) -> rasp.SOp:
    """The fraction of positions up to and including this one where `bools` is true."""
    bools = rasp.numerical(bools)
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")


def make_pair_balance(sop: rasp.SOp, open_token: Any, close_token: Any) -> rasp.SOp:
    """Fraction of opening minus fraction of closing tokens up to each position."""
    suffix = f"{open_token}{close_token}"
    is_open = rasp.numerical(sop == open_token).named(f"is_open_{suffix}")
    is_close = rasp.numerical(sop == close_token).named(f"is_close_{suffix}")
    opens = make_frac_prevs(is_open).named(f"opens_{suffix}")
    closes = make_frac_prevs(is_close).named(f"closes_{suffix}")
    balance = rasp.LinearSequenceMap(opens, closes, 1, -1)
    return rasp.numerical(balance).named(f"balance_{suffix}")


def _check_pairs(function: str, pairs: Sequence[str]) -> None:
    if isinstance(pairs, str) or not pairs or any(
            not isinstance(pair, str) or len(pair) != 2 for pair in pairs):
        raise InvalidProgramError(
            f"{function}: pairs must be a list of two-character strings, an opening and a "
            f"closing bracket each, such as ['()', '{{}}'], got {pairs!r}")


def make_shuffle_dyck(pairs: Sequence[str]) -> rasp.SOp:
    """True at every position iff each bracket type is balanced on its own (shuffle-Dyck).

    As in the RASP paper: no prefix may close more than it opened (no negative
    balance anywhere) and every balance is zero at the last position.
    """
    _check_pairs("make_shuffle_dyck", pairs)
    balances = [make_pair_balance(rasp.tokens, pair[0], pair[1]) for pair in pairs]

    any_negative = balances[0] < 0
    for balance in balances[1:]:
        any_negative = any_negative | (balance < 0)
    any_negative = rasp.numerical(rasp.Map(lambda x: x, any_negative)).named("any_negative")

    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("select_all")
    has_neg = rasp.numerical(rasp.Aggregate(select_all, any_negative, default=0)).named("has_neg")

    all_zero = balances[0] == 0
    for balance in balances[1:]:
        all_zero = all_zero & (balance == 0)
    all_zero = all_zero.named("all_zero")

    last_index = (length - 1).named("last_index")
    select_last = rasp.Select(rasp.indices, last_index, rasp.Comparison.EQ).named("select_last")
    last_zero = rasp.Aggregate(select_last, all_zero).named("last_zero")

    not_has_neg = (~has_neg).named("not_has_neg")
    return (last_zero & not_has_neg).named("shuffle_dyck")


def make_shuffle_dyck2() -> rasp.SOp:
    """Shuffle-Dyck over two bracket types, `()` and `{}`."""
    return make_shuffle_dyck(pairs=["()", "{}"]).named("shuffle_dyck2")


def shift_by(offset: int, sop: rasp.SOp) -> rasp.SOp:
    """`sop` moved `offset` positions to the right; the first `offset` positions are None."""
    shifted = rasp.Select(rasp.indices, rasp.indices, lambda key, query: query == key + offset)
    return rasp.Aggregate(shifted.named(f"select_shift_{offset}"), sop).named(f"shift_by_{offset}")


def detect_pattern(sop: rasp.SOp, pattern: Sequence[Any]) -> rasp.SOp:
    """True where `pattern` ends at this position, False elsewhere, None for the first
    len(pattern) - 1 positions."""
    if len(pattern) < 1:
        raise InvalidProgramError(f"detect_pattern: the pattern must have at least one element, "
                                  f"got {pattern!r}; pass the tokens to look for, e.g. ['a', 'b']")
    detectors = []
    for back, element in enumerate(reversed(pattern)):
        detector = (sop == element).named(f"is_{element}_{back}")
        if back:
            detector = shift_by(back, detector)
        detectors.append(detector)
    found = detectors.pop()
    while detectors:
        found = found & detectors.pop()
    return found.named("detect_pattern")


def make_count(sop: rasp.SOp, token: Any) -> rasp.SOp:
    """How many positions of `sop` hold `token`, at every position."""
    is_token = rasp.Select(sop, sop, lambda key, query: key == token).named(f"is_{token}")
    return rasp.SelectorWidth(is_token).named(f"count_{token}")


def make_count_less_freq(n: int) -> rasp.SOp:
    """How many positions hold a token that occurs at most `n` times, at every position."""
    hist = make_hist()
    rare = rasp.Select(hist, hist, lambda key, query: key <= n).named("rare")
    return rasp.SelectorWidth(rare).named("count_less_freq")


def make_dyck(pairs: Sequence[str]) -> rasp.SOp:
    """True at every position iff the brackets are balanced and properly nested (Dyck-k).

    Depth after each position = (opens so far) - (closes so far), each the width of
    an AND of two selectors. With one bracket type, balanced means no negative
    depth and depth 0 at the end. With several, every closing bracket must also
    match the type of its partner: the last opening bracket before it whose depth
    before opening equals the depth after closing. That partner is found with
    ranks: rank of an opening bracket = earlier opening brackets at the same
    level; count of a closing bracket = earlier opening brackets at its level; the
    partner is the one with rank = count - 1 (an AND of three atoms in one head).
    """
    _check_pairs("make_dyck", pairs)
    openers = {pair[0] for pair in pairs}
    closers = {pair[1] for pair in pairs}
    partner = {pair[1]: pair[0] for pair in pairs}

    upto = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("upto")
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    open_keys = rasp.Select(rasp.tokens, rasp.tokens, lambda key, query: key in openers)
    close_keys = rasp.Select(rasp.tokens, rasp.tokens, lambda key, query: key in closers)
    opened = rasp.SelectorWidth(upto & open_keys.named("open_keys")).named("opened")
    closed = rasp.SelectorWidth(upto & close_keys.named("close_keys")).named("closed")
    depth = (opened - closed).named("depth")

    negative = rasp.numerical(rasp.Map(lambda d: float(d < 0), depth)).named("negative")
    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("everywhere")
    any_negative = rasp.numerical(rasp.Aggregate(select_all, negative, default=0))
    last_index = (make_length() - 1).named("last_index")
    select_last = rasp.Select(rasp.indices, last_index, rasp.Comparison.EQ).named("select_last")
    ends_at_zero = rasp.Aggregate(select_last, depth == 0).named("ends_at_zero")
    balanced = rasp.SequenceMap(
        lambda zero, neg: bool(zero) and neg == 0, ends_at_zero, any_negative.named("any_negative")
    ).named("balanced")
    if len(pairs) == 1:
        return balanced.named("dyck")

    is_open = rasp.Map(lambda t: t in openers, rasp.tokens)
    level = rasp.SequenceMap(lambda d, o: d - 1 if o else d, depth, is_open).named("level")
    same_level = rasp.Select(level, level, rasp.Comparison.EQ).named("same_level")
    rank = rasp.SelectorWidth(same_level & earlier & open_keys).named("rank")
    closes_level = rasp.Select(level, depth, rasp.Comparison.EQ).named("closes_level")
    count = rasp.SelectorWidth(closes_level & earlier & open_keys).named("count")
    is_partner = rasp.Select(rank, count, lambda key, query: key == query - 1).named("is_partner")
    partner_token = rasp.Aggregate(closes_level & is_partner & open_keys, rasp.tokens, default="")
    partner_token = partner_token.named("partner_token")
    mismatch = rasp.SequenceMap(
        lambda t, p: float(t in closers and p != partner[t]), rasp.tokens, partner_token
    )
    any_mismatch = rasp.numerical(rasp.Aggregate(select_all, rasp.numerical(mismatch), default=0))
    return rasp.SequenceMap(
        lambda ok, bad: bool(ok) and bad == 0, balanced, any_mismatch.named("any_mismatch")
    ).named("dyck")


def make_nary_sequencemap(f: Callable[..., Any], *sops: rasp.SOp) -> rasp.SOp:
    """f(a[i], b[i], c[i], ...) at each position, for any number of SOps.

    SequenceMaps gather the arguments into a tuple, one SOp at a time, and a Map
    applies `f` to the tuple. Each tuple SOp is categorical, with one value per
    combination of its parts' values, so a compiled model grows with their product.
    """
    if not sops:
        raise InvalidProgramError(
            "make_nary_sequencemap: pass the function and at least one SOp, "
            "e.g. make_nary_sequencemap(lambda x, y, z: x + y - z, tokens, tokens, indices)")
    first, *rest = sops
    if not rest:
        return rasp.Map(lambda x: f(x), first)
    args = rasp.SequenceMap(lambda x, y: (x, y), first, rest[0])
    for sop in rest[1:]:
        args = rasp.SequenceMap(lambda xs, y: (*xs, y), args, sop)
    return rasp.Map(lambda xs: f(*xs), args)
