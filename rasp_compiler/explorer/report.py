"""The HTML report of a compiled model: the explorer's static page for one input.

`model.html_report(tokens, path)` writes the same self-contained, offline page as
`rasp-compiler inspect --html` (see page.py): the layer plan, the input's
output and read-back, every head's compiled and ideal pattern, the residual
stream step by step, the selector report and the compile facts, linked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def html_report(model, tokens: Sequence, path, *more_inputs: Sequence) -> Path:
    """Write the page for the input `tokens` (and any `more_inputs`) to `path`."""
    from rasp_compiler.explorer.page import write_static_page

    return write_static_page(model, [list(tokens), *map(list, more_inputs)], path)
