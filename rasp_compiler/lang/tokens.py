"""Tokens typed as words (the command line, the explorer's input box) read back as the
vocab's own tokens, with one message for every place a user types them."""

from __future__ import annotations

from typing import Sequence

from rasp_compiler.errors import InvalidInputError


def parse_tokens(owner: str, words: Sequence[str], vocab: Sequence) -> list:
    """Command-line words to `owner`'s vocab tokens: each word is the str() of one token,
    or its repr() (`'1'`, quoted, is the string "1").

    A word that could be two tokens is refused, naming both: with VOCAB (1, "1", 2) the
    word 1 used to be read as the string "1", silently, and the int 1 could not be typed.
    """
    readings: dict[str, list] = {}
    for token in vocab:
        for text in dict.fromkeys((str(token), repr(token))):
            readings.setdefault(text, []).append(token)
    tokens = []
    for word in words:
        found = readings.get(word, [])
        if not found:
            raise InvalidInputError(
                f"token {word!r} is not in the vocab of {owner}: "
                f"{', '.join(sorted({str(token) for token in vocab}))}"
            )
        if len(found) > 1:
            raise InvalidInputError(_ambiguous(owner, word, found, readings))
        tokens.append(found[0])
    return tokens


def _ambiguous(owner: str, word: str, found: list, readings: dict[str, list]) -> str:
    """Why `word` names several tokens, and how each one can be typed alone (its repr,
    when that names it alone), or that it cannot."""
    shown = " or ".join(f"the {type(token).__name__} {token!r}" for token in found)
    ways, stuck = [], []
    for token in found:
        if len(readings.get(repr(token), [])) == 1 and repr(token) != word:
            ways.append(f"the {type(token).__name__} as {repr(token)}, quotes included (in a "
                        f"shell: \"{repr(token)}\")")
        else:
            stuck.append(f"the {type(token).__name__} {token!r}")
    advice = f"; type {' and '.join(ways)}" if ways else ""
    if stuck:
        advice += (f"; {' and '.join(stuck)} cannot be typed apart: rename a token in the "
                   f"vocab so that no two print alike, or run the model from Python")
    return (f"the word {word!r} is ambiguous in the vocab of {owner}: it can be {shown}, "
            f"which print alike{advice}")
