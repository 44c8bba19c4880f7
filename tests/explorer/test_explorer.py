"""The model explorer: its data against the model, its server, and its page in a real browser.

The browser is the distribution's headless chromium driven by selenium through the
distribution's chromedriver (.ci/run installs both), started once for this module; where
they are missing, the browser tests are skipped saying how to install them (conftest.py).
Screenshots of every view go to a temporary folder (printed; `pytest -s` shows it).
"""

from __future__ import annotations

import html
import http.client
import json
from pathlib import Path

import numpy as np
import pytest

from rasp_compiler import compile_program, lib, rasp
from rasp_compiler.circuits import circuit
from rasp_compiler.explorer import page, views
from rasp_compiler.explorer.circuit_view import CIRCUIT_PAIRS, CIRCUIT_SEED
from rasp_compiler.explorer import server as explorer_server
from rasp_compiler.cli import main
from rasp_compiler.superposition.compressed_model import CompressedModel, CompressionInfo
from rasp_compiler.diagnostics.patterns import head_matrix, ideal_pattern
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.program_files import load_program, program_names
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.hooks import Slot

from picture_checks import assert_picture

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")

VIEWS = ("input", "plan", "circuit", "head", "residual", "selectors", "facts")
EVIL_LABEL = '</script><img src=x onerror="window.pwned=1">'
EVIL_SELECTOR = "<svg onload=window.pwned=2>"
EVIL_TOKENS = ("<b>", "&amp;", "'\"")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reverse():
    """The bundled `reverse` at 4 tokens, compiled as `rasp-compiler ... --max-seq-len 4`."""
    spec = load_program("reverse")
    return compile_program(spec.make(4), spec.vocab, 4)


@pytest.fixture(scope="module")
def saved_folder(reverse, tmp_path_factory):
    return reverse.save(tmp_path_factory.mktemp("saved") / "reverse")


@pytest.fixture(scope="module")
def loaded(saved_folder):
    """`reverse` saved and loaded: no program."""
    return CompiledModel.load(saved_folder)


def merge_tokens(model, first="a", second="b"):
    """`model` compressed by hand: tokens `first` and `second` share one dimension (W is the
    identity with their two columns added), so W W^T has exactly one off-diagonal 1 and the
    model cannot tell them apart. Known superposition, no training."""
    labels = model.residual_labels
    a, b = labels.index(f"tokens:{first}"), labels.index(f"tokens:{second}")
    W = np.delete(np.eye(len(labels), dtype=np.float32), b, axis=1)
    W[b, a] = 1.0
    info = CompressionInfo(
        d=W.shape[1], d_model=len(labels), seed=0, nonlinear=False, hidden=0, init="by hand",
        steps=0, max_steps=0, batch_size=1, learning_rate=0.0, output_weight=1.0,
        reconstruction_weight=1.0, exhaustive=False, training_inputs=0, stopped="budget",
        agreement=0.5, loss=0.0, output_loss=0.0, reconstruction_loss=0.0, seconds=0.0)
    return CompressedModel(model, W, None, info), (a, b)


@pytest.fixture(scope="module")
def merged(reverse):
    """`reverse` with tokens a and b merged (`merge_tokens`)."""
    return merge_tokens(reverse)


@pytest.fixture(scope="module")
def evil():
    """A program whose labels and tokens are HTML and script."""
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ).named(EVIL_SELECTOR)
    program = rasp.Aggregate(select, rasp.tokens).named(EVIL_LABEL)
    return compile_program(program, set(EVIL_TOKENS), 3)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from conftest import system_tool

    chromium, driver_path = system_tool("chromium", "chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explorer-screenshots")
    print(f"explorer screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def server(reverse):
    running = explorer_server.serve(reverse, "reverse", ["a", "b", "c"])
    yield running
    running.shutdown()
    running.server_close()


def load(browser, url: str) -> None:
    """Open `url`, wait until the page script has drawn it, and empty the logs."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def console_problems(browser) -> list:
    return [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


def requested_urls(browser) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def type_input(browser, text: str) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    box = browser.find_element("id", "tokens")
    box.clear()
    box.send_keys(text + Keys.ENTER)
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return !document.body.dataset.busy"))


def screenshot(browser, view: str, path: Path) -> None:
    """A picture of one view (section), whole: the window is made as tall as the page."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, max(1000, height + 50))
    browser.find_element("id", view).screenshot(str(path))
    browser.set_window_size(1400, 1000)


def text_of(browser, css: str) -> str:
    return browser.find_element("css selector", css).text


def table_rows(browser, css: str) -> dict[str, list[str]]:
    """A read-back table's rows by SOp: the text of its value cells (one per position)."""
    rows = {}
    for row in browser.find_elements("css selector", f"{css} tr[data-sop]"):
        cells = row.find_elements("css selector", "th, td")
        rows[cells[0].text] = [c.text for c in cells[2:]]
    return rows


def expected_read_back(model, tokens) -> dict[str, list[str]]:
    """Each readable SOp decoded right after its writing sublayer, by the schedule."""
    _, cache = model.run_with_cache([tokens], backend="numpy")
    time = model.compilation.schedule.time
    out = {}
    for label in model.readouts:
        hook = Slot.at(time.get(label, 0)).residual_after
        residual = (cache["hook_embed"] + cache["hook_pos_embed"] if hook == "hook_embed+pos"
                    else cache[hook])
        out[label] = [views.show(v) for v in model.decode(label, residual[0], len(tokens))]
    return out


# --------------------------------------------------------------------------- data, no browser


def test_write_times_agree_with_the_schedule(reverse):
    shuffle = compile_program(lib.make_shuffle_dyck(["()"]), ["(", ")"], 4)
    for model in (reverse, shuffle):  # shuffle_dyck reads free linear forms
        times = views.write_times(model)
        schedule = model.compilation.schedule.time
        assert {label: t for label, t in times.items() if label in schedule} == {
            label: schedule[label] for label in model.readouts if label in schedule}
        # free forms of the embeddings (is_open_()) are unscheduled: readable from the start
        assert all(times[label] == 0 for label in model.readouts if label not in schedule)


def test_input_view_is_what_the_model_and_evaluator_give(reverse):
    tokens = ["c", "a", "d"]
    view = views.input_view(reverse, "reverse", tokens)
    outputs, cache = reverse.run_with_cache([tokens], backend="numpy")  # what the page runs
    assert view["output"] == [views.show(v) for v in outputs[0]] == ["d", "a", "c"]
    assert view["expected"] == ["d", "a", "c"] and view["problems"] == []
    assert {s["label"]: s["values"] for s in view["sops"]} == expected_read_back(reverse, tokens)
    evaluation = evaluate_all(reverse.compilation.graph, tokens)
    for layer in reverse.info.layers:
        for head in layer.heads:
            got = np.array(view["heads"][head.name]["compiled"])
            pattern = cache[f"blocks.{layer.index}.attn.hook_pattern"][0, head.index, :4, :4]
            np.testing.assert_allclose(got, pattern, rtol=0, atol=1e-7)
            ideal = ideal_pattern(head.kind, head_matrix(reverse.compilation, head.label,
                                                         evaluation), 4)
            np.testing.assert_array_equal(view["heads"][head.name]["ideal"], ideal)
    final = cache[f"blocks.{reverse.depth - 1}.hook_resid_post"][0, :4]
    np.testing.assert_allclose(view["residual"][-1], final, atol=1e-5)


def test_a_corrupted_model_is_reported_loudly(reverse):
    import copy

    broken = copy.copy(reverse)
    broken.params = {k: dict(v) for k, v in reverse.params.items()}
    broken.params["layer_1/attn/key"]["w"] = broken.params["layer_1/attn/key"]["w"] * 0.02
    view = views.input_view(broken, "reverse", ["a", "b", "c", "d"])
    assert any(p.startswith("head L1H0 (reverse): its pattern is off the ideal") for p in view["problems"])
    # positions as the page numbers them: BOS 0, the first token 1
    assert "output at position 1 (a): the model's value is not clean" in view["problems"][0]


def test_bad_input_gets_the_cli_message(reverse, capsys):
    for words in (["a", "z"], ["a"] * 5):
        assert main(["run", "reverse", "--max-seq-len", "4", *words]) == 2
        cli_message = capsys.readouterr().err.strip().removeprefix("rasp-compiler: error: ")
        assert views.input_view(reverse, "reverse", words) == {"words": words,
                                                                  "error": cli_message}
    with pytest.raises(InvalidInputError, match="token 'z' is not in the vocab of reverse"):
        page.static_page(reverse, [["a", "z"]], owner="reverse")


def test_values_are_written_as_the_cli_writes_tokens_and_numbers_without_float_noise():
    assert [views.show(v) for v in ("a", 3, True, None, (1, 2))] == [
        "a", "3", "True", "None", "(1, 2)"]
    assert [views.show(v) for v in (8e-16, -1e-9, 2 / 3, 1.5, 1e7)] == [
        "0", "0", "0.666667", "1.5", "1e+07"]


def test_json_in_the_page_cannot_end_its_script_block():
    text = page.json_for_script({"label": EVIL_LABEL, "more": "<!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"label": EVIL_LABEL, "more": "<!-- & \u2028"}
    assert json.loads(page.json_for_script({"margin": float("inf")})) == {"margin": "inf"}


def test_the_server_serves_one_page_and_one_api_at_localhost_only(server):
    host, port = server.server_address
    assert host == "127.0.0.1"

    def request(method, path, body=None, headers=None):
        connection = http.client.HTTPConnection(host, port, timeout=20)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        result = response.status, response.read().decode("utf-8", "replace")
        connection.close()
        return result

    assert request("GET", "/")[0] == 200
    for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                 "/..%2f..%2fpyproject.toml", "/rasp_compiler/explorer.py", "/explorer.js",
                 "/api/run", "/index.html"):
        status, body = request("GET", path)
        assert status == 404 and "root:" not in body, path
    assert request("GET", "/", headers={"Host": "attacker.example:80"})[0] == 403
    assert request("POST", "/api/run", body=b"not json")[0] == 400
    for body in ({"text": 3}, {"words": "a"}, ["a"]):  # JSON, but not {"text": "..."}
        status, text = request("POST", "/api/run", body=json.dumps(body).encode())
        assert status == 400 and 'send JSON {"text": "the tokens"}' in text, body
    assert request("POST", "/api/run", body=b"x" * (explorer_server.MAX_REQUEST_BYTES + 1))[0] == 413
    assert request("POST", "/elsewhere", body=b"{}")[0] == 404
    status, body = request("POST", "/api/run", body=json.dumps({"text": "b  a"}).encode())
    assert status == 200 and json.loads(body)["output"] == ["a", "b"]


def raw_request(server, head: bytes, body: bytes = b"") -> tuple[int, str, float]:
    """Send bytes as they are (no client fixing up the headers) to the server on 127.0.0.1;
    (status, body, seconds to the answer), with a 10 s bound on everything."""
    import socket
    import time

    host, port = server.server_address
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(b"POST /api/run HTTP/1.1\r\nHost: %s:%d\r\n" % (host.encode(), port)
                           + head + b"\r\n" + body)
        connection.shutdown(socket.SHUT_WR)  # all sent: a short body ends here
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    head_text, _, text = response.decode("utf-8", "replace").partition("\r\n\r\n")
    return int(head_text.split()[1]), text, time.perf_counter() - started


@pytest.mark.parametrize("head, status, message", [
    (b"Content-Length: -1\r\n", 400,
     "Content-Length must be a number of bytes, 0 to 65536, got '-1'"),
    (b"Content-Length: abc\r\n", 400, "Content-Length must be a number of bytes"),
    (b"Content-Length: +5\r\n", 400, "Content-Length must be a number of bytes"),
    (b"Content-Length: 5\r\nContent-Length: 5\r\n", 400, "send one Content-Length header"),
    (b"", 411, "send the input with a Content-Length"),
    (b"Transfer-Encoding: chunked\r\n", 411, "not a Transfer-Encoding"),
    (b"Content-Length: 65537\r\n", 413,
     "an input is at most 65536 bytes, got a Content-Length of 65537"),
    (b"Content-Length: 99999999999999999999\r\n", 413, "an input is at most 65536 bytes"),
])
def test_a_bad_content_length_is_refused_before_the_body_is_read(server, head, status,
                                                                   message):
    # Content-Length: -1 used to read until the client closed (300 MB streamed, then 200).
    got, text, seconds = raw_request(server, head, b'{"text": "a b"}')
    assert (got, seconds < 5) == (status, True) and message in text, text


def test_a_client_streaming_past_a_negative_length_is_cut_off(server):
    import socket

    host, port = server.server_address
    sent = 0
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(b"POST /api/run HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: -1"
                           b"\r\n\r\n" % (host.encode(), port))
        assert connection.recv(12) == b"HTTP/1.0 400"  # answered before any body was sent
        with pytest.raises(OSError):  # then the server stops reading and closes
            while sent < 64 * 2**20:
                connection.sendall(bytes(65536))
                sent += 65536
    assert sent < 32 * 2**20  # socket buffers take a few MB; the old server read all 64 MB


def test_deeply_nested_json_is_a_clear_400_not_a_recursion_error(server, capsys):
    for body in (b"[" * 30_000, b'{"text": ' + b"[" * 30_000, b'{"a": ' * 5_000):
        status, text, _ = raw_request(server, b"Content-Length: %d\r\n" % len(body), body)
        assert status == 400 and "the JSON nests" in text and "(at most 32)" in text, text
    brackets_in_text = json.dumps({"text": "[" * 100 + " a"}).encode()
    status, text, _ = raw_request(server, b"Content-Length: %d\r\n" % len(brackets_in_text),
                                  brackets_in_text)
    assert status == 200 and "is not in the vocab" in json.loads(text)["error"]
    for body in (b"\xff\xfe", b'{"text": "a b"'):
        status, text, _ = raw_request(server, b"Content-Length: %d\r\n" % len(body), body)
        assert status == 400, text
    status, text, _ = raw_request(server, b"Content-Length: 40\r\n", b'{"text": "a"}')
    assert status == 400 and "the body ended after 13 of the 40 bytes" in text
    assert "Traceback" not in capsys.readouterr().err


def test_a_loaded_model_degrades_with_a_note(loaded):
    view = views.input_view(loaded, "the saved model", ["a", "b"])
    assert view["output"] == ["b", "a"] and view["expected"] is None
    assert all(h["ideal"] is None and h["margin"] is None for h in view["heads"].values())
    model = views.model_view(loaded, "the saved model")
    assert not model["has_program"] and model["nodes"] == []


def test_a_compressed_model_shows_its_interference_and_runs_compressed(merged, reverse):
    model, (a, b) = merged
    view = views.model_view(model, "reverse")
    compression = view["compression"]
    np.testing.assert_allclose(compression["interference"], model.W @ model.W.T, atol=1e-3)
    assert compression["pairs"] == [[a, b, "tokens:a", "tokens:b", 1.0]]  # the only one
    assert compression["max_interference"] == 1.0 and compression["d"] == model.d
    assert view["layers"] == views.model_view(reverse, "reverse")["layers"]
    assert views.model_view(reverse, "reverse")["compression"] is None

    words = ["b", "a", "c"]
    run = views.input_view(model, "reverse", words)
    assert run["output"] == [views.show(v) for v in model.run([words])[0]]
    assert run["exact_output"] == ["c", "a", "b"] == run["expected"]
    assert run["output"] != run["expected"]  # a and b are one feature now
    assert any(problem.startswith("output at position") and "the exact model" in problem
               for problem in run["problems"])
    _, cache = model.run_with_cache([words])
    embeddings = cache["hook_embed"][0] + cache["hook_pos_embed"][0]
    np.testing.assert_allclose(run["residual"][0], embeddings[:4] @ model.W.T, atol=1e-5)
    np.testing.assert_allclose(run["residual"][-1], cache["hook_readout_in"][0, :4], atol=1e-5)
    head = reverse.info.layers[-1].heads[0]
    np.testing.assert_allclose(
        run["heads"][head.name]["compiled"],
        cache[f"blocks.{len(reverse.info.layers) - 1}.attn.hook_pattern"][0, head.index, :4, :4],
        atol=1e-6)


# --------------------------------------------------------------------------- the circuit panel


def expected_example(model, example) -> dict:
    """What the panel shows for an edge's recorded pair: both inputs, the output of each
    (the corrupt one run here), and the clean run's output with the edge patched."""
    return {"clean": [views.show(t) for t in example.clean],
            "corrupt": [views.show(t) for t in example.corrupt],
            "clean_output": [views.show(v) for v in example.clean_output],
            "corrupt_output": [views.show(v) for v in model.run([list(example.corrupt)])[0]],
            "patched_output": [views.show(v) for v in example.patched_output]}


def test_the_circuit_panel_has_every_edge_and_the_functional_ones_marked(reverse, loaded,
                                                                          merged):
    most_freq = load_program("most_freq").compile()  # several heads in a layer
    for model in (reverse, loaded, merged[0], most_freq):
        view = views.model_view(model, "x")["circuit"]
        structural = circuit(model)  # a CompressedModel has no .circuit() method
        functional = circuit(model, functional=True, samples=CIRCUIT_PAIRS, seed=CIRCUIT_SEED)
        assert [e["name"] for e in view["edges"]] == list(structural.edge_names)
        assert [e["name"] for e in view["edges"] if e["functional"]] \
            == list(functional.edge_names) != []
        assert view["pairs"] == functional.pairs.describe() and len(functional.pairs) == 64
        assert [n["name"] for n in view["nodes"]] == [n.name for n in structural.model_nodes]
        assert {n["name"] for n in view["nodes"] if n["functional"]} == set(functional.nodes)
        assert {n["position"] for n in view["nodes"]} \
            <= {column["position"] for column in view["columns"]}
        for edge, shown in zip(structural.edges, view["edges"]):
            effect = functional.effects[edge]
            assert (shown["changed"], shown["tried"]) == (effect.changed, effect.tried)
            if shown["functional"]:
                assert shown["example"] == expected_example(model, effect.example)
                assert shown["example"]["patched_output"] != shown["example"]["clean_output"]
            else:
                assert shown["example"] is None and shown["changed"] == 0
    assert views.model_view(reverse, "reverse")["circuit"]["note"] == ""


def test_a_compressed_model_without_a_circuit_shows_its_base_models(reverse, merged):
    """Circuits need linear reads; a compressed model with a ReLU decoder per read (given
    one by hand here: only its circuit is taken) shows the exact model's, and says so."""
    model = merged[0]
    nonlinear = CompressedModel(reverse, model.W, {"reader": np.zeros((1, 1), np.float32)},
                                model.info)
    view = views.model_view(nonlinear, "reverse")["circuit"]
    assert view["note"].startswith("The circuit shown is the exact (uncompressed) model's: "
                                   "circuits of a compressed model need linear reads")
    assert view["edges"] == views.model_view(reverse, "reverse")["circuit"]["edges"]


# --------------------------------------------------------------------------- in the browser


def test_static_page_opens_offline_with_every_view(browser, reverse, tmp_path, screenshots):
    path = page.write_static_page(reverse, [["a", "b", "c"], ["d", "a"]], tmp_path / "p.html",
                                      owner="reverse")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    try:
        browser.get_log("performance")
        load(browser, path.as_uri())
        urls = requested_urls(browser)
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    assert urls == [path.as_uri()]  # the page itself, nothing else
    assert console_problems(browser) == []
    heads = [h.name for layer in reverse.info.layers for h in layer.heads]
    shown = [e.get_attribute("data-head") for e in
             browser.find_elements("css selector", "#plan .box.head")]
    assert shown == heads
    assert text_of(browser, "#output") == "c b a"
    browser.find_element("css selector", "button.saved[data-index='1']").click()
    assert text_of(browser, "#output") == "a d"
    for view in VIEWS:
        screenshot(browser, view, screenshots / f"static_{view}.png")
    for view in VIEWS:  # each view drew something: a PNG with more than a flat colour
        assert_picture(screenshots / f"static_{view}.png", 200, 50, min_colours=4)


def test_typing_an_input_shows_the_models_output_and_read_back(browser, server, reverse):
    load(browser, server.url)
    type_input(browser, "c a  d")
    assert text_of(browser, "#input-shown") == "c a d"
    assert text_of(browser, "#output") == " ".join(views.show(v) for v in
                                                   reverse.run([["c", "a", "d"]])[0])
    assert table_rows(browser, "#sop-values") == expected_read_back(reverse, ["c", "a", "d"])
    assert browser.find_element("id", "banner").is_displayed() is False
    assert console_problems(browser) == []


def test_clicking_a_head_shows_its_pattern_as_in_the_cache(browser, server, reverse, screenshots):
    load(browser, server.url)
    type_input(browser, "b d a a")
    _, cache = reverse.run_with_cache([["b", "d", "a", "a"]], backend="numpy")
    for layer in reverse.info.layers:
        for head in layer.heads:
            browser.find_element("css selector", f"#plan .box.head[data-head='{head.name}']").click()
            assert text_of(browser, "#head-title").startswith(f"{head.name}: {head.label}")
            cells = browser.find_elements("css selector", "table[data-which='compiled'] td")
            got = np.array([float(c.get_attribute("data-value")) for c in cells]).reshape(5, 5)
            pattern = cache[f"blocks.{layer.index}.attn.hook_pattern"][0, head.index, :5, :5]
            np.testing.assert_allclose(got, pattern, rtol=0, atol=1e-7)
            assert browser.find_elements("css selector", "table[data-which='ideal'] td")
            selected = browser.find_elements("css selector", "#selector-table tr.sel")
            assert [row.get_attribute("data-selector") for row in selected] == [head.selector]
    browser.find_element("css selector", "#residual-map th.group[data-sop='tokens']").click()
    assert browser.find_elements("css selector", "#plan .chip.sel[data-sop='tokens']")
    browser.find_element("css selector", "#residual .steps button[data-step='2']").click()
    assert "after layer 0 MLP" in text_of(browser, "#residual-map .caption")
    screenshot(browser, "head", screenshots / "server_head.png")
    screenshot(browser, "residual", screenshots / "server_residual.png")
    assert console_problems(browser) == []


def click_edge_on_the_drawing(browser, name: str) -> None:
    """A real mouse click on edge `name`'s curve in the circuit drawing, at a point of it
    where no other curve lies on top."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    hit = browser.find_element("css selector", f"#circuit-map path.hit[data-edge='{name}']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", hit)
    point = browser.execute_script("""
        const path = arguments[0], name = arguments[1], length = path.getTotalLength();
        for (const f of [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8]) {
            const at = path.getPointAtLength(f * length).matrixTransform(path.getScreenCTM());
            const top = document.elementFromPoint(at.x, at.y);
            if (top && top.dataset && top.dataset.edge === name) return [at.x, at.y];
        }
        return null;""", hit, name)
    assert point, f"no point of the curve of {name} can be clicked"
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(round(point[0]), round(point[1]))
    actions.pointer_action.click()
    actions.perform()


def test_clicking_a_circuit_edge_shows_its_example_pair(browser, reverse, server, tmp_path,
                                                        screenshots):
    structural = reverse.circuit()
    functional = reverse.circuit(functional=True, samples=CIRCUIT_PAIRS, seed=CIRCUIT_SEED)
    path = page.write_static_page(reverse, [["a", "b", "c"]], tmp_path / "p.html",
                                  owner="reverse")
    load(browser, path.as_uri())
    drawn = browser.find_elements("css selector", "#circuit-map path.edge")
    assert [e.get_attribute("data-edge") for e in drawn] == list(structural.edge_names)
    highlighted = browser.find_elements("css selector", "#circuit-map path.edge.functional")
    assert [e.get_attribute("data-edge") for e in highlighted] == list(functional.edge_names)
    assert functional.pairs.describe() in text_of(browser, "#circuit-pairs")
    assert "stops at 64 pairs" in text_of(browser, "#circuit-pairs")
    for edge in reversed(functional.edges):  # the first is shown on load: click the last first
        click_edge_on_the_drawing(browser, edge.name)
        assert text_of(browser, "#circuit-edge-title") == edge.name
        effect = functional.effects[edge]
        assert (f"changes the output on {effect.share:.0%} of the pairs ({effect.changed} of "
                f"{effect.tried})") in text_of(browser, "#circuit-edge")
        shown = {key: text_of(browser, f"#example-{key.replace('_', '-')}").split()
                 for key in ("clean", "corrupt", "clean_output", "corrupt_output",
                             "patched_output")}
        assert shown == expected_example(reverse, effect.example)
        selected = browser.find_elements("css selector", "#circuit-map path.edge.sel")
        assert [e.get_attribute("data-edge") for e in selected] == [edge.name]
    screenshot(browser, "circuit", screenshots / "static_circuit.png")
    assert console_problems(browser) == []

    load(browser, server.url)  # the served page: the same panel; the table selects too
    dropped = next(e for e in structural.edges if e not in set(functional.edges))
    browser.find_element("css selector", f"#circuit-edges tr[data-edge='{dropped.name}']").click()
    assert text_of(browser, "#circuit-edge-title") == dropped.name
    assert text_of(browser, "#circuit-no-example") == (
        "No pair to show: patching this edge alone changed the output on none of the 64 pairs "
        "tried.")
    assert console_problems(browser) == []


def test_bad_input_typed_in_the_page_gets_the_cli_message(browser, server, capsys):
    load(browser, server.url)
    for words in (["a", "z"], ["a"] * 5):
        assert main(["run", "reverse", "--max-seq-len", "4", *words]) == 2
        cli_message = capsys.readouterr().err.strip().removeprefix("rasp-compiler: error: ")
        type_input(browser, " ".join(words))
        error = browser.find_element("id", "input-error")
        assert error.is_displayed() and error.text == cli_message
    type_input(browser, "a b")
    assert not browser.find_element("id", "input-error").is_displayed()
    assert console_problems(browser) == []


def test_labels_and_tokens_are_shown_as_text_never_run(browser, evil, tmp_path):
    path = page.write_static_page(evil, [list(EVIL_TOKENS)], tmp_path / "evil.html")
    running = explorer_server.serve(evil, EVIL_LABEL, list(EVIL_TOKENS))
    try:
        for url in (path.as_uri(), running.url):
            load(browser, url)
            if url == running.url:
                type_input(browser, "'\" <b> &amp;")
                assert text_of(browser, "#output") == "'\" <b> &amp;"
            assert browser.execute_script("return window.pwned === undefined")
            # the one SVG is the circuit drawing, which the script builds (its labels as text)
            assert browser.find_elements("css selector", "img, svg:not(#circuit-map), b") == []
            assert len(browser.find_elements("css selector", "#circuit-map")) == 1
            assert EVIL_LABEL in text_of(browser, "#plan") and EVIL_SELECTOR in text_of(browser, "#selectors")
            assert browser.title == f"{EVIL_LABEL}: model explorer"
            assert console_problems(browser) == []  # no script ran, so CSP blocked nothing either
    finally:
        running.shutdown()
        running.server_close()


def test_causal_and_loaded_models_in_the_page(browser, loaded, tmp_path, screenshots):
    causal = compile_program(lib.make_frac_prevs(rasp.tokens == "x"), ["a", "x"], 4, causal=True)
    page.write_static_page(causal, [["a", "x", "x"]], tmp_path / "causal.html")
    page.write_static_page(loaded, [["a", "b"]], tmp_path / "loaded.html", "the saved model")
    load(browser, (tmp_path / "causal.html").as_uri())
    mask = browser.find_elements("css selector", "table[data-which='mask'] td")
    assert [c.get_attribute("data-value") for c in mask] == [
        str(int(k <= q)) for q in range(4) for k in range(4)]
    assert len(browser.find_elements("css selector", "table[data-which='compiled'] td.masked")) == 6
    screenshot(browser, "head", screenshots / "causal_head.png")
    load(browser, (tmp_path / "loaded.html").as_uri())
    assert browser.find_element("id", "no-program").is_displayed()
    assert "needs the program" in text_of(browser, "#head")
    assert text_of(browser, "#output") == "b a"
    assert console_problems(browser) == []


def test_a_compressed_model_in_the_page(browser, merged, tmp_path, screenshots):
    model, (a, b) = merged
    path = page.write_static_page(model, [["b", "a", "c"]], tmp_path / "c.html", "reverse")
    load(browser, path.as_uri())
    assert console_problems(browser) == []
    cells = browser.find_elements("css selector", "#interference-map td")
    width = model.d_model
    assert len(cells) == width * width
    values = np.array([float(c.get_attribute("data-value")) for c in cells]).reshape(width, width)
    np.testing.assert_allclose(values, model.W @ model.W.T, atol=1e-3)
    banner = browser.find_element("id", "banner")
    assert banner.is_displayed() and "expected" in banner.get_attribute("class")
    assert "Expected in superposition" in banner.text
    assert text_of(browser, "#exact-output") == "c a b"
    browser.find_element("css selector", f"#interference-map th.dim[data-dim='{a}']").click()
    marked = browser.find_elements("css selector", "#interference-map td.dim-sel")
    assert len(marked) == 2 * width - 1  # row a and column a
    assert browser.find_elements("css selector", f"#residual-map th.dim-sel[data-dim='{a}']")
    screenshot(browser, "interference", screenshots / "compressed_interference.png")
    assert_picture(screenshots / "compressed_interference.png", 200, 100)


# --------------------------------------------------------------------------- layout, in the browser

WIDE_FAST = ("dyck2", "most_freq")  # the widest plans and residuals: in the fast subset


def overflow(browser) -> dict:
    """How far the page, and each view, is wider than the window (0: it fits)."""
    return browser.execute_script("""
        const page = document.documentElement;
        const out = {page: page.scrollWidth - page.clientWidth};
        for (const s of document.querySelectorAll('section'))
            out[s.id] = Math.max(0, s.scrollWidth - s.clientWidth);
        return out;""")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[] if name in WIDE_FAST else [pytest.mark.slow])
    for name in program_names()])
def test_no_view_needs_horizontal_scrolling_at_1280_pixels(browser, name, tmp_path,
                                                            screenshots):
    """Every bundled program, on an input of max_seq_len tokens (the widest heatmaps and
    tables): the page is as wide as the window, and so is every view in it."""
    spec = load_program(name)
    model = spec.compile()
    longest = [str(spec.vocab[i % len(spec.vocab)]) for i in range(spec.max_seq_len)]
    path = page.write_static_page(model, [longest], tmp_path / f"{name}.html")
    browser.set_window_size(1280, 1000)
    try:
        load(browser, path.as_uri())
        assert browser.execute_script("return window.innerWidth") == 1280
        assert overflow(browser) == {"page": 0, **{view: 0 for view in VIEWS}}
        if name in WIDE_FAST:
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, height + 50)
            browser.save_screenshot(str(screenshots / f"{name}_1280.png"))
    finally:
        browser.set_window_size(1400, 1000)
    assert console_problems(browser) == []


def test_one_position_numbering_and_one_colour_convention_with_a_legend(browser, reverse,
                                                                         tmp_path):
    """BOS is position 0 everywhere (heatmaps, residual rows, read-back columns); a weight of
    1 is colours.POSITIVE, as in the matplotlib pictures, and each heatmap states the
    convention in a legend."""
    from matplotlib.colors import to_hex

    from rasp_compiler.diagnostics import colours

    path = page.write_static_page(reverse, [["c", "a", "d"]], tmp_path / "p.html")
    load(browser, path.as_uri())
    heads = browser.find_elements("css selector", "table[data-which='compiled'] tr:first-of-type th")
    assert [th.text for th in heads] == ["query \\ key", "0:BOS", "1:c", "2:a", "3:d"]
    rows = browser.find_elements("css selector", "#residual-map table tr th.pos")
    assert [th.text for th in rows][:4] == ["0:BOS", "1:c", "2:a", "3:d"]
    readback = browser.find_elements("css selector", "#sop-values tr:first-child th")
    assert [th.text for th in readback][2:] == ["1:c", "2:a", "3:d"]
    decoded = browser.find_elements("css selector", "#decoded tr:first-child th")
    assert [th.text for th in decoded][2:] == ["1:c", "2:a", "3:d"]
    one = browser.find_element("css selector", "table[data-which='compiled'] td[data-value='1']")
    rgb = [int(x) for x in one.value_of_css_property("background-color")[5:-1].split(",")[:3]]
    assert "#%02x%02x%02x" % tuple(rgb) == colours.POSITIVE
    assert to_hex(colours.weights_cmap()(1.0)) == colours.POSITIVE
    assert to_hex(colours.diverging_cmap()(0.0)) == colours.NEGATIVE
    assert to_hex(colours.diverging_cmap()(0.5)) == colours.ZERO
    legends = {e.get_attribute("data-kind"): e.text for e in
               browser.find_elements("css selector", ".colour-legend")}
    assert "white (none) to blue" in legends["weight"]
    assert "red negative, white 0, blue positive" in legends["signed"]
    assert "matplotlib pictures use the same colours" in legends["signed"]


def test_the_hover_readout_sits_next_to_the_cursor(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains

    load(browser, server.url)
    hover = browser.find_element("id", "hover")
    assert not hover.is_displayed()
    for css in ("table[data-which='compiled'] td[data-q='2'][data-k='1']",
                "#residual-map td[data-q='3'][data-dim='5']"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                               browser.find_element("css selector", css))
        cell = browser.find_element("css selector", css)
        ActionChains(browser).move_to_element(cell).perform()
        assert hover.is_displayed() and hover.text
        box, at = cell.rect, hover.rect
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        assert abs(at["x"] - cx) < 60 and abs(at["y"] - cy) < 60, (box, at)  # beside the pointer
    assert "query 2:b -> key 1:a" in hover.text or "position 3:c" in hover.text
    ActionChains(browser).move_to_element(browser.find_element("css selector", "header")).perform()
    assert not hover.is_displayed()


def test_a_bad_input_dims_the_previous_results(browser, server):
    load(browser, server.url)
    type_input(browser, "a b")
    results = ("run-result", "head-body", "residual-body")

    def dimmed():
        return {view: float(browser.find_element("id", view).value_of_css_property("opacity"))
                < 0.5 for view in results}

    assert dimmed() == {view: False for view in results}
    type_input(browser, "a z")
    assert browser.find_element("id", "input-error").is_displayed()
    note = browser.find_element("id", "stale-note")
    assert note.is_displayed() and "the previous input, a b" in note.text
    browser.execute_script("return new Promise(r => setTimeout(r, 300))")  # the fade
    assert dimmed() == {view: True for view in results}
    type_input(browser, "c d")
    assert dimmed() == {view: False for view in results} and not note.is_displayed()
    assert text_of(browser, "#output") == "d c"


def test_a_saved_program_is_found_again_and_compressed_disagreements_are_marked(
        browser, tmp_path):
    """`compile -o` / `compress -o` keep the program's name and reference: the page of the
    saved folder is titled by the program, has the ideal patterns and the evaluator, and
    a compressed model's outputs that differ from the exact model's are marked one by one."""
    model = load_program("reverse").compile(max_seq_len=4)
    folder = model.save(tmp_path / "reverse")
    loaded, note = views.load_saved(folder)
    assert note == "" and loaded.compilation is not None
    path = page.write_static_page(loaded, [["a", "b"]], tmp_path / "saved.html")
    load(browser, path.as_uri())
    assert browser.title == "reverse: model explorer"
    assert not browser.find_elements("id", "no-program")
    assert browser.find_elements("css selector", "table[data-which='ideal'] td")
    assert text_of(browser, "#expected") == "b a"

    small, _ = merge_tokens(model)
    tokens = ["b", "c", "a", "d"]
    compressed, note = views.load_saved(small.save(tmp_path / "small"))
    assert note == "" and compressed.name == "reverse"
    path = page.write_static_page(compressed, [tokens], tmp_path / "small.html")
    load(browser, path.as_uri())
    assert browser.title == "reverse: model explorer"
    got, want = small.run([tokens])[0], model.run([tokens])[0]
    marked = [int(e.get_attribute("data-position")) for e in
              browser.find_elements("css selector", "#output .tok.differs")]
    assert marked == [i + 1 for i, (g, w) in enumerate(zip(got, want)) if g != w] != []
    assert f"{len(marked)} of {len(tokens)} positions differ from the exact model" in text_of(
        browser, "#exact-diff")
    banner = browser.find_element("id", "banner")
    assert banner.is_displayed() and "differs from the exact model" in banner.text
    assert console_problems(browser) == []


# --------------------------------------------------------------------------- notebooks


def test_notebook_summaries_are_compact_html_with_every_label_escaped(evil, reverse, merged):
    for model in (reverse, evil, merged[0]):
        page = model._repr_html_()
        assert page.startswith("<div") and len(page) < 20_000
        depth = model.base.depth if hasattr(model, "base") else model.depth
        assert f"{depth} layer{'s' * (depth != 1)} (lower bound" in page
    assert EVIL_LABEL not in evil._repr_html_() and "&lt;/script&gt;" in evil._repr_html_()
    assert "compressed" in merged[0]._repr_html_() and "50.00%" in merged[0]._repr_html_()
    for report in (evil.selector_report(), evil.layer_plan_report()):
        text = report._repr_html_()
        assert EVIL_SELECTOR not in text and html.escape(EVIL_SELECTOR) in text
    assert "L1H0" in reverse.layer_plan_report()._repr_html_()
    assert "Selector report: 2 selectors" in reverse.selector_report()._repr_html_()


def test_model_show_renders_the_explorer_inline_in_one_iframe(browser, reverse, tmp_path,
                                                              screenshots):
    """What a notebook does with `model.show(tokens)`: its _repr_html_ placed in the page
    (here a 900-pixel output cell): one iframe whose srcdoc is the whole explorer, which
    runs in it, fits it, and requests nothing."""
    frame = reverse.show(["c", "a", "d"], ["b", "b"], height=600)
    cell = frame._repr_html_()
    assert cell.startswith("<iframe srcdoc=") and cell.count("<iframe") == 1
    assert "<script" not in cell.replace("&lt;script", "")  # the page is inside the attribute
    notebook = tmp_path / "notebook.html"
    notebook.write_text('<!DOCTYPE html><html><body><div style="width: 900px">'
                        f"{reverse._repr_html_()}{cell}</div></body></html>")
    browser.get_log("performance")
    browser.get(notebook.as_uri())
    iframe = browser.find_element("css selector", "iframe")
    assert iframe.size == {"height": 600, "width": 900}
    browser.switch_to.frame(iframe)
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 20).until(
            lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        assert text_of(browser, "#output") == "d a c"
        browser.find_element("css selector", "button.saved[data-index='1']").click()
        assert text_of(browser, "#output") == "b b"
        assert browser.find_elements("css selector", "#circuit-map path.edge.functional")
        assert overflow(browser)["page"] == 0
    finally:
        browser.switch_to.default_content()
    assert all(url.startswith(("file:", "about:", "data:")) for url in requested_urls(browser))
    assert console_problems(browser) == []
    browser.save_screenshot(str(screenshots / "notebook.png"))


def test_the_explore_command_serves_a_program_or_a_saved_model(monkeypatch, capsys,
                                                                saved_folder, merged, tmp_path):
    opened, answers = [], {}

    def serve_once(server):
        import threading

        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            connection = http.client.HTTPConnection(*server.server_address, timeout=20)
            connection.request("POST", "/api/run", body=json.dumps({"text": "d c"}))
            answers["run"] = json.loads(connection.getresponse().read())
            connection.request("GET", "/")
            answers["page"] = connection.getresponse().read().decode()
            connection.close()
        finally:
            server.shutdown()
            thread.join()
            server.server_close()

    monkeypatch.setattr(explorer_server, "run_until_interrupted", serve_once)
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert main(["explore", "reverse", "--max-seq-len", "4", "--input", "b", "a"]) == 0
    url = capsys.readouterr().out.split(" is at ")[1].split()[0]
    assert opened == [url] and url.startswith("http://127.0.0.1:")
    assert answers["run"]["output"] == ["c", "d"]
    assert '"words":["b","a"]' in answers["page"]
    assert main(["explore", "reverse", "--input", "z", "--no-browser"]) == 2
    assert "token 'z' is not in the vocab of reverse" in capsys.readouterr().err
    assert main(["explore", str(saved_folder), "--vocab", "a,b"]) == 2
    assert "is a saved model" in capsys.readouterr().err
    assert main(["explore", str(saved_folder), "--no-browser"]) == 0
    assert len(opened) == 1 and answers["run"]["output"] == ["c", "d"]
    assert '"has_program":false' in answers["page"]  # saved from Python: no program named
    assert "saved without the name of its program" in capsys.readouterr().err
    assert main(["compile", "reverse", "--max-seq-len", "4", "-o", str(tmp_path / "cli")]) == 0
    capsys.readouterr()
    assert main(["explore", str(tmp_path / "cli"), "--no-browser"]) == 0
    out = capsys.readouterr().out
    assert "the program: reverse (compiled again, the same weights as saved)" in out
    assert "the model explorer for reverse is at" in out
    assert '"has_program":true' in answers["page"] and '"title":"reverse"' in answers["page"]
    assert answers["run"]["expected"] == ["c", "d"]  # the evaluator, found again
    compressed = merged[0].save(tmp_path / "compressed")
    assert main(["explore", str(compressed), "--no-browser"]) == 0
    assert answers["run"]["output"] == merged[0].run([["d", "c"]])[0]
    assert answers["run"]["exact_output"] == ["c", "d"]
    assert '"interference":[[' in answers["page"]
