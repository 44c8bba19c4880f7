"""The words of the layer plan, in one line each: the command line prints the ones its
output uses (`compile`, `inspect`), the explorer shows them beside the numbers.
docs/compiler.md explains each construction in full."""

from __future__ import annotations

import re

TERMS = {
    "aggregate": "a head that copies (or averages) the value of the keys its selector picks",
    "width": "a head that counts the keys its selector picks (a SelectorWidth): BOS takes "
             "1/(count+1) of the attention, and an MLP reads the count from that share",
    "coldness": "the scale of a head's attention logits: selected keys beat the others by "
                "coldness/2, so at most (keys+1)·e^(-coldness/2) of the weight leaks (docs/compiler.md)",
    "lookup": "an MLP part with one ReLU per combination of its categorical inputs: a table",
    "steps": "an MLP part reading a number (e.g. a head's attention share) into values: "
             "one clamped ReLU step pair where the output changes",
    "linear-steps": "steps along a linear form of two categorical inputs (x + r·y) instead "
                    "of a table of every pair",
    "piecewise-linear": "an MLP part computing a numerical function of a number: a ReLU "
                        "at each kink",
    "bos-cleanup": "neurons that erase what the layer's heads wrote at the BOS position, so "
                   "BOS stays clean for later layers",
}


def explain(text: str) -> list[str]:
    """`term: meaning` for each term of TERMS that `text` uses, in TERMS's order."""
    return [f"{term}: {meaning}" for term, meaning in TERMS.items()
            if re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text)]
