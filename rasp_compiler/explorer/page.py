"""The explorer's HTML page: one self-contained document holding the views as JSON, the
page script and its style, under a Content-Security-Policy that allows nothing else.

Why a module of its own: the page is the same for the static file (`static_page`,
`write_static_page`: `inspect --html`, `model.html_report`, the notebook's
`model.show`), which opens offline and makes no network request, and for the local
server (server.py), whose page may also post typed inputs to its own origin; the policy
and the escaping that keep user strings inert live here once.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from rasp_compiler.errors import InvalidInputError, SaveError
from rasp_compiler.explorer.views import input_view, json_safe, model_view, owner_of


def _asset(name: str) -> str:
    return (resources.files("rasp_compiler.explorer") / "assets" / name).read_text("utf-8")


def json_for_script(data: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&'
    survives (so no `</script>` or `<!--` can end the block), and no raw line separators."""
    text = json.dumps(json_safe(data), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def page_html(view: dict, inputs: Sequence[dict], mode: str) -> tuple[str, str]:
    """The page and its Content-Security-Policy. `mode` is "static" (the inputs are all
    there is) or "server" (the page posts typed inputs to /api/run).

    The policy allows exactly the page's own script and style (by hash), images from
    data: URLs (the favicon), and in server mode requests to the page's own origin."""
    script, style = _asset("explorer.js"), _asset("explorer.css")
    policy = (f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; "
              f"img-src data:; base-uri 'none'; form-action 'none'"
              + ("; connect-src 'self'" if mode == "server" else ""))
    data = json_for_script({"mode": mode, "model": view, "inputs": list(inputs)})
    title = html.escape(f"{view['title']}: model explorer")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(policy)}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>{title}</title><style>{style}</style></head>"
        "<body><noscript>This page draws its views with JavaScript; enable it to see "
        "them.</noscript><div id=\"app\"></div>"
        f"<script type=\"application/json\" id=\"explorer-data\">{data}</script>"
        f"<script>{script}</script></body></html>\n"
    )
    return page, policy


def static_page(model, inputs: Sequence[Sequence], owner: str | None = None,
                program_note: str = "") -> str:
    """A self-contained page with the views for each of `inputs` (token sequences)."""
    owner = owner or owner_of(model)
    views = [input_view(model, owner, [str(t) for t in tokens]) for tokens in inputs]
    for view in views:  # a page of fixed inputs has no box to show the error in: raise it
        if "error" in view:
            raise InvalidInputError(view["error"])
    return page_html(model_view(model, owner, program_note), views, "static")[0]


def write_static_page(model, inputs: Sequence[Sequence], path, owner: str | None = None) -> Path:
    path = Path(path)
    page = static_page(model, inputs, owner)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:  # e.g. a full disk or a read-only file: say which file
        raise SaveError(f"cannot write the HTML page to {path}: {exc.strerror or exc}") from exc
    return path
