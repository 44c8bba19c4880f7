"""How a SelectorWidth's head encodes the width w as an attention weight on BOS.

The head scores BOS and every selected key alike, so BOS receives a share of the
attention that falls as w grows; the MLP after it decodes w from that share with
steps placed between consecutive shares. With BOS weighted like one key the
share is 1/(w+1), whose consecutive values are only 1/(N(N+1)) apart at w = N:
about 1e-6 at max_seq_len 1,024, too close for a float32 step (mlp.MIN_RELATIVE_GAP).

For a categorical SelectorWidth above `UNSCALED_UP_TO` the BOS key's score is
raised by ln(s) with s = N, so BOS weighs as much as s keys and receives

    z(w) = s / (s + w)        (1 at w = 0, 1/2 at w = N)

and consecutive values are s / ((s + w)(s + w + 1)) >= N / (2N (2N + 1)) ~ 1/(4N)
apart: 2.4e-4 at N = 1,024, a gap float32 steps resolve (the exact bound per
length is `smallest_gap`). Up to UNSCALED_UP_TO the classic 1/(w+1) is kept:
its smallest gap there is 1/272, and compiled small models stay as they were.

A numerical SelectorWidth keeps 1/(w+1) at every length: it is decoded
piecewise-linearly (w = 1/z - 1), not by steps, and the softmax's rounding is
relative to z, so w comes out with a relative error; with s = N the same
rounding would cost gamma * (N + w) in absolute terms, 2e-4 at N = 64.
"""

from __future__ import annotations

UNSCALED_UP_TO = 16  # max_seq_len up to which BOS weighs like one key


def bos_share(max_seq_len: int, categorical: bool = True) -> float:
    """s: how many keys' worth of attention the BOS key of a width head carries."""
    return float(max_seq_len) if categorical and max_seq_len > UNSCALED_UP_TO else 1.0


def fraction(width: int, share: float) -> float:
    """The attention weight on BOS when `width` keys are selected: s / (s + w)."""
    return share / (share + width)


def smallest_gap(max_seq_len: int, categorical: bool = True) -> float:
    """The closest two shares of widths 0..N are (at w = N - 1 and N)."""
    s = bos_share(max_seq_len, categorical)
    return fraction(max_seq_len - 1, s) - fraction(max_seq_len, s)
