"""The explorer's local server (`rasp-compiler explore`, `serve(model)`): one page and one
API, on 127.0.0.1 only, running any input typed into the page.

Why a module of its own: everything here is about HTTP and its hazards (a Host header
from DNS rebinding, bodies too long, chunked, shorter than announced or nested too
deep, clients that stall or hang up), not about the model; the views come from
views.py and the page from page.py, as in the static page.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.explorer.page import page_html
from rasp_compiler.explorer.views import default_inputs, input_view, json_safe, model_view

MAX_REQUEST_BYTES = 64 * 1024  # a typed input is a few tokens; refuse anything bigger
MAX_JSON_DEPTH = 32  # {"text": "..."} nests 1 deep; Python's json recurses once per level
REQUEST_TIMEOUT = 30  # seconds a connection may sit idle (e.g. a body shorter than announced)
DRAIN_SECONDS = 0.5  # after refusing a body unread, how long to drop what the client still sends


class ExplorerServer(ThreadingHTTPServer):
    """Serves one page ("/") and one API ("/api/run") for one model, on 127.0.0.1 only.

    There is no file system behind it: any other path is 404, so nothing outside the
    page can be reached (no path traversal). Requests whose Host header is not this
    server's own address are refused (a page elsewhere cannot reach it through DNS
    rebinding). Runs are serialised: one model, one forward at a time."""

    daemon_threads = True

    def __init__(self, model, owner: str, initial: Sequence[str] = (), port: int = 0,
                 program_note: str = ""):
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another "
                f"--port (0 picks a free one)") from None
        self.model, self.owner = model, owner
        self.lock = threading.Lock()
        view = model_view(model, owner, program_note)
        first = input_view(model, owner, list(initial) or default_inputs(model)[0])
        self.page, self.policy = page_html(view, [first], "server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up or stalls mid-request is no error of ours: stay quiet
        (socketserver would print a traceback); anything else is a bug, shown as one."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def run_words(self, words: Sequence[str]) -> dict:
        with self.lock:
            return input_view(self.model, self.owner, words)


def body_length(headers) -> tuple[int, tuple[int, str] | None]:
    """The request body's length from its headers, or (0, (status, message)) refusing it
    before a byte of the body is read: no Content-Length or a chunked body (411), a
    Content-Length that is not one plain decimal number (400: `-1` used to read until the
    client closed), or one past MAX_REQUEST_BYTES (413)."""
    if headers.get("Transfer-Encoding") is not None:
        return 0, (HTTPStatus.LENGTH_REQUIRED,
                   "send the input with a Content-Length, not a Transfer-Encoding")
    values = headers.get_all("Content-Length") or []
    if not values:
        return 0, (HTTPStatus.LENGTH_REQUIRED, "send the input with a Content-Length")
    if len(values) > 1:
        return 0, (HTTPStatus.BAD_REQUEST, "send one Content-Length header, not several")
    text = values[0].strip()
    if not (text.isascii() and text.isdigit()):
        return 0, (HTTPStatus.BAD_REQUEST,
                   f"Content-Length must be a number of bytes, 0 to {MAX_REQUEST_BYTES}, got "
                   f"{text[:40]!r}")
    size = int(text)
    if size > MAX_REQUEST_BYTES:
        return 0, (HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                   f"an input is at most {MAX_REQUEST_BYTES} bytes, got a Content-Length of "
                   f"{text[:40]}")
    return size, None


def json_depth(text: str) -> int:
    """How deeply the JSON `text` nests arrays and objects (strings skipped), counted in
    one pass without parsing: json.loads recurses once per level, so `[` x 30,000 would
    raise RecursionError. Malformed text gets a number too; json.loads then refuses it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class _Handler(BaseHTTPRequestHandler):
    server: ExplorerServer
    server_version = "rasp-compiler-explorer"
    timeout = REQUEST_TIMEOUT  # a client that stalls mid-request is dropped, not waited on

    def log_message(self, format, *args):  # quiet: the terminal shows the URL only
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", self.server.policy)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, message: str) -> None:
        self._send(status, message.encode("utf-8"), "text/plain; charset=utf-8")

    def _discard_sent_body(self) -> None:
        """After refusing a body unread: end the response (FIN), then drop what the client
        had already sent, at most MAX_REQUEST_BYTES in at most DRAIN_SECONDS. Closing a
        socket with unread input resets the connection, and the client could lose the
        refusal before reading it."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + DRAIN_SECONDS
            left = MAX_REQUEST_BYTES
            while left > 0 and (wait := deadline - time.monotonic()) > 0:
                self.connection.settimeout(wait)
                data = self.connection.recv(min(left, 16384))
                if not data:
                    break
                left -= len(data)
        except OSError:  # timed out, or the client went away: nothing more to do
            pass

    def _host_ok(self) -> bool:
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._host_ok():
            return self._text(HTTPStatus.FORBIDDEN, "this server answers only at 127.0.0.1")
        if self.path.split("?", 1)[0] != "/":
            return self._text(HTTPStatus.NOT_FOUND, "not found: this server has one page, /")
        self._send(HTTPStatus.OK, self.server.page.encode("utf-8"), "text/html; charset=utf-8")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok():
            return self._text(HTTPStatus.FORBIDDEN, "this server answers only at 127.0.0.1")
        if self.path != "/api/run":
            return self._text(HTTPStatus.NOT_FOUND, "not found: inputs go to /api/run")
        size, problem = body_length(self.headers)
        if problem is not None:  # the body is never read: answer, then close
            self.close_connection = True
            self._text(*problem)
            return self._discard_sent_body()
        body = self.rfile.read(size)
        if len(body) < size:
            self.close_connection = True
            return self._text(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of "
                                                      f"the {size} bytes of its Content-Length")
        try:
            document = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._text(HTTPStatus.BAD_REQUEST, "the body is not UTF-8; send JSON "
                                                      '{"text": "the tokens"}')
        depth = json_depth(document)
        if depth > MAX_JSON_DEPTH:
            return self._text(HTTPStatus.BAD_REQUEST,
                              f"the JSON nests {depth} levels deep (at most {MAX_JSON_DEPTH}); "
                              f'send JSON {{"text": "the tokens"}}')
        try:
            text = json.loads(document)["text"]
        except (ValueError, KeyError, TypeError, IndexError):
            text = None
        if not isinstance(text, str):
            return self._text(HTTPStatus.BAD_REQUEST, 'send JSON {"text": "the tokens"}')
        body = json.dumps(json_safe(self.server.run_words(text.split())), allow_nan=False)
        self._send(HTTPStatus.OK, body.encode("utf-8"), "application/json")


def serve(model, owner: str, initial: Sequence[str] = (), port: int = 0,
          program_note: str = "") -> ExplorerServer:
    """A started explorer server (in a background thread); `.url` is its page,
    `.shutdown()` stops it. Port 0 picks a free one."""
    server = ExplorerServer(model, owner, initial, port, program_note)
    threading.Thread(target=server.serve_forever, name="explorer", daemon=True).start()
    return server


def run_until_interrupted(server: ExplorerServer) -> None:
    """Serve in this thread until Ctrl-C, then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
