"""The arguments of compile_program, checked on entry.

Each check refuses, with what to write instead, an option value that would fail (or
mislead) deep inside a later stage: a limit that is not a positive int, an
attention_precision float32 cannot honour, bos and pad tokens a saved model could
not hold or tell apart from the vocab.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from rasp_compiler.compiler.lower import DEFAULT_ATTENTION_PRECISION, FLOAT32_PRECISION_FLOOR
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang import rasp


def check_program_and_options(program, *, causal, attention_precision, allow_unsafe_aggregates,
                              **limits) -> None:
    """Refuse a program that is not an SOp, and option values that would fail (or
    mislead) deep inside a later stage."""
    if not isinstance(causal, bool):
        raise InvalidProgramError(f"causal must be True or False, got {causal!r}")
    if not isinstance(program, rasp.SOp):
        raise InvalidProgramError(
            f"compile_program takes the program's output SOp, got {type(program).__name__} "
            f"{program!r}"
        )
    _check_options(attention_precision=attention_precision,
                   allow_unsafe_aggregates=allow_unsafe_aggregates, **limits)


def _check_options(*, attention_precision, allow_unsafe_aggregates, **limits) -> None:
    """Refuse option values that would fail (or mislead) deep inside a later stage."""
    if not isinstance(allow_unsafe_aggregates, bool):
        raise InvalidProgramError(
            f"allow_unsafe_aggregates must be True or False, got {allow_unsafe_aggregates!r}"
        )
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise InvalidProgramError(f"{name} must be a positive int, got {value!r}")
    eps = attention_precision
    if isinstance(eps, bool) or not isinstance(eps, Real) or math.isnan(eps):
        raise InvalidProgramError(
            f"attention_precision must be a number, the largest attention mass a head may "
            f"leak (default {DEFAULT_ATTENTION_PRECISION:g}), got {eps!r}"
        )
    if eps <= 0:
        raise InvalidProgramError(
            f"attention_precision must be greater than 0, got {eps!r}: a softmax always leaks "
            f"some attention; the smallest leak float32 resolves is {FLOAT32_PRECISION_FLOOR:g}"
        )
    if eps < FLOAT32_PRECISION_FLOOR:
        raise InvalidProgramError(
            f"attention_precision {eps!r} is below {FLOAT32_PRECISION_FLOOR:g}, finer than "
            f"float32 softmax resolves; use a value in [{FLOAT32_PRECISION_FLOOR:g}, 1)"
        )
    if eps >= 1:
        raise InvalidProgramError(
            f"attention_precision must be below 1 (it is the attention mass a head may leak "
            f"away from the keys it selects), got {eps!r}; the default is "
            f"{DEFAULT_ATTENTION_PRECISION:g}"
        )


def check_special_tokens(bos, pad, vocab: list) -> None:
    """bos and pad must be tokens a saved model holds (str, int, finite float, bool, or
    tuples of them), different from each other and from every vocab token even under ==
    (1 and True count as one here, though a vocab may hold both: tracr's apply finds BOS
    and PAD with ==, and so do export and load). Checked on entry: bos="X", pad="X" (or 1
    and True) compiled and saved, then load() refused; bos=["X"] compiled, then apply
    raised a raw TypeError."""
    for name, token in (("bos", bos), ("pad", pad)):
        if not _storable(token):
            raise InvalidProgramError(
                f"{name} must be a token a saved model can hold: a str, int, finite float, "
                f"bool or a tuple of them, got {type(token).__name__} {token!r}"
                + ("; None is RASP's 'no value'" if token is None else ""))
        try:
            inside = token in vocab  # at C speed: a vocab may be long
        except Exception:  # a token that cannot be compared: refused later by the vocab checks
            inside = False
        for other in vocab if inside else ():
            if _equal(token, other):
                raise InvalidProgramError(
                    f"the {name} token {token!r} is also in the vocab"
                    + ("" if type(other) is type(token) else
                       f" as {type(other).__name__} {other!r}, which Python counts as equal")
                    + f"; choose another {name}=")
    if _equal(bos, pad):
        raise InvalidProgramError(
            f"bos and pad must be different tokens, got bos={bos!r} and pad={pad!r}"
            + ("" if type(bos) is type(pad) else
               f" ({type(bos).__name__} and {type(pad).__name__}, which == counts as equal: "
               f"tracr's apply and loading could not tell them apart)")
            + "; choose another pad=")


def _storable(token) -> bool:
    kind = type(token)
    if kind in (str, int, bool):
        return True
    if kind is float:
        return math.isfinite(token)
    return kind is tuple and all(item is None or _storable(item) for item in token)


def _equal(a, b) -> bool:
    """a == b as the encoder's dicts see it (False for values that cannot be compared)."""
    try:
        return bool(a == b)
    except Exception:  # e.g. an array token: refused later by the vocab checks
        return False
