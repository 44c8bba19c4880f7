"""Every number finite: refuse an SOp that can hold inf, -inf or NaN, naming its source.

In float32 one inf turns every sum it enters (each attention average, each layer)
into NaN at every position, and NaN cannot name a category (it is not equal to
itself). values.infer_values checks each SOp once, its parameters before its rule
runs (`refuse_non_finite_parameters`) and its value set after
(`refuse_non_finite`), so every later stage may assume finite numbers.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Mapping

from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang import rasp


def _is_non_finite(value: Any, numerical: bool = True) -> bool:
    """inf, -inf, NaN, or (as a number) an int too large for a float: it would become inf."""
    if not isinstance(value, Real):
        return False
    try:
        return not math.isfinite(value)
    except OverflowError:
        return numerical


_NEVER_NAN = frozenset({str, int, bool, type(None)})


def _holds_nan(value: Any) -> bool:
    """A value not equal to itself: NaN, or a tuple, frozenset or complex number holding
    one at any depth. `(1, nan) == (1, nan)` is False unless both hold the same NaN
    object, so such a value cannot name a category (dicts keyed by it miss)."""
    kind = type(value)
    if kind in _NEVER_NAN:
        return False
    if kind is float:
        return value != value
    if isinstance(value, (tuple, frozenset)):
        return any(map(_holds_nan, value))
    try:
        return bool(value != value)
    except Exception:  # a value that cannot be compared is refused elsewhere, if at all
        return False


def _is_refused_number(value: Any, numerical: bool) -> bool:
    """inf, -inf or NaN (or an int too large for a float, as a number), or a value holding
    NaN inside a tuple, frozenset or complex number. inf inside a tuple is a category like
    any other (equal to itself, never summed); NaN is not even equal to itself."""
    return _is_non_finite(value, numerical) or _holds_nan(value)


def _refusal_reason(value: Any) -> str:
    """Why `value` is refused, and what to write instead."""
    if isinstance(value, Real):
        return f"{_NON_FINITE_WHY}. {_NON_FINITE_FIX}"
    return (
        "it holds NaN, which is not equal to itself, so neither is the value: no residual "
        "dimension can stand for it, and no output could match the evaluator's. Use a finite "
        "number or a marker such as the string 'nan' in its place"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


_NON_FINITE_WHY = (
    "the model computes in float32, where one inf turns every sum it enters (each attention "
    "average, each layer) into NaN at every position, and NaN is not equal to itself, so it "
    "cannot name a category either"
)
_NON_FINITE_FIX = (
    "Use a finite number instead (for a sentinel, a large finite value such as 1e6, or a "
    "categorical marker such as the string 'inf')"
)


def refuse_non_finite_parameters(expr: rasp.SOp) -> None:
    """Refuse inf or NaN written into the program (a fill, a constant, a default, a
    factor), and NaN inside a tuple, frozenset or complex number written there."""
    if isinstance(expr, rasp.Full):
        found = [("its fill", expr.fill)]
    elif isinstance(expr, rasp.ConstantSOp):
        found = [(f"its value at position {i}", v) for i, v in enumerate(expr.value)]
    elif isinstance(expr, rasp.Aggregate):
        found = [("its default", expr.default)]
    elif isinstance(expr, rasp.LinearSequenceMap):
        found = [("its factor fst_fac", expr.fst_fac), ("its factor snd_fac", expr.snd_fac)]
    else:
        return
    for where, value in found:
        if _is_refused_number(value, rasp.is_numerical(expr)):
            raise InvalidProgramError(
                f"{expr.label}: {where} is {_short(value)}; {_refusal_reason(value)}"
            )


def refuse_non_finite(expr: rasp.SOp, values: set, sets: Mapping[str, tuple]) -> None:
    """Refuse an SOp that can hold inf, -inf or NaN, or a value holding NaN inside a tuple,
    frozenset or complex number, naming the input value that gives it.

    Checked once per SOp (with `refuse_non_finite_parameters` before its rule runs),
    so every later stage may assume finite numbers.
    """
    try:  # fast path: a finite sum of numbers proves every one of them finite
        if math.isfinite(sum(values)):
            return
    except (TypeError, OverflowError):
        pass
    numerical = rasp.is_numerical(expr)
    bad = sorted((v for v in values if _is_refused_number(v, numerical)), key=_short)
    if bad:
        raise InvalidProgramError(
            f"{expr.label}: this {type(expr).__name__} can be {_short(bad[0])} "
            f"({_non_finite_source(expr, sets)}); {_refusal_reason(bad[0])}"
        )


def _non_finite_source(expr: rasp.SOp, sets: Mapping[str, tuple]) -> str:
    """The input value(s) on which a function returns inf or NaN (or a value holding NaN)."""
    numerical = rasp.is_numerical(expr)
    if isinstance(expr, rasp.TokensType):
        return "a token of the vocab"
    if isinstance(expr, rasp.Map):
        for x in sets[expr.inner.label]:
            if x is not None and _is_refused_number(_quiet_call(expr.f, x), numerical):
                return f"returned on the input value {x!r}, a value {expr.inner.label} can take"
    if isinstance(expr, rasp.SequenceMap):
        for x in sets[expr.fst.label]:
            for y in sets[expr.snd.label]:
                if x is None or y is None:
                    continue
                if _is_refused_number(_quiet_call(expr.f, x, y), numerical):
                    return (f"returned on the input values ({x!r}, {y!r}), values "
                            f"{expr.fst.label} and {expr.snd.label} can take")
    return "for some input"


def _quiet_call(f: Callable, *args) -> Any:
    try:
        return f(*args)
    except Exception:
        return None
