"""The explorer inline in a notebook: `model.show(tokens)` returns an `ExplorerFrame`,
whose display is the explorer's static page for those inputs in one iframe (`srcdoc`: the
page travels inside the notebook, needs no server and makes no request; its
Content-Security-Policy holds inside the frame, which is sandboxed to scripts only).
The compact summaries (`_repr_html_`) are model/html.py.
"""

from __future__ import annotations

import html

DEFAULT_FRAME_HEIGHT = 720  # pixels: the page scrolls inside the frame


class ExplorerFrame:
    """The explorer's page for some inputs, displayed inline by a notebook (one
    self-contained iframe). `page` is the HTML page itself (`save(path)` writes it)."""

    def __init__(self, page: str, title: str, inputs: int = 1,
                 height: int = DEFAULT_FRAME_HEIGHT):
        self.page, self.title, self.inputs, self.height = page, title, inputs, int(height)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.page, quote=True)}" '
                f'title="{html.escape(str(self.title), quote=True)}" sandbox="allow-scripts" '
                f'style="box-sizing: border-box; width: 100%; height: {self.height}px; '
                f'border: 1px solid #dde1e6; '
                f'border-radius: 4px"></iframe>')

    def save(self, path):
        from pathlib import Path

        path = Path(path)
        path.write_text(self.page, encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return (f"ExplorerFrame({self.title!r}: the explorer's page for {self.inputs} "
                f"input{'s' * (self.inputs != 1)}; a notebook displays it inline, "
                f".save(path) writes it)")


def show(model, tokens=None, *more_inputs, height: int = DEFAULT_FRAME_HEIGHT) -> ExplorerFrame:
    """The explorer for `tokens` (and `more_inputs`; default: the vocab, cut to
    max_seq_len), to display in a notebook: the last expression of a cell, or
    IPython.display.display(model.show(...))."""
    from rasp_compiler.explorer.page import static_page
    from rasp_compiler.explorer.views import default_inputs

    inputs = [list(tokens), *map(list, more_inputs)] if tokens is not None \
        else default_inputs(model)
    return ExplorerFrame(static_page(model, inputs), f"{model.name}: model explorer",
                         len(inputs), height)
