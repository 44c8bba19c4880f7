"""The model explorer: linked views of a compiled model in a browser page.

One page, two ways to get it:
- `static_page(model, inputs)` / `write_static_page`: a self-contained HTML file
  (`inspect --html`) holding the views for a fixed set of inputs; it opens offline
  and makes no network request (its Content-Security-Policy forbids any).
- `serve(model)` (`rasp-compiler explore`): a local server on 127.0.0.1 that runs
  any input typed into the page.

Python computes everything (`model_view` once, `input_view` per input) and hands
the page JSON; the page's script (assets/explorer.js) only draws it and
links the views. So the page shows exactly what `model.run`, `run_with_cache`
(the numpy forward, `backend="numpy"`: no XLA compilation per input length),
`read_back` and the evaluator give, and user-controlled strings (program labels,
tokens) only ever reach the page as JSON data that the script writes as text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import socket
import sys
import threading
import time
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rasp_compiler.diagnostics import colours
from rasp_compiler.diagnostics.evaluation import residual_hook, sublayer_name
from rasp_compiler.diagnostics.glossary import TERMS
from rasp_compiler.diagnostics.layer_plan import layer_plan_report as layout
from rasp_compiler.diagnostics.layer_plan import residual_map
from rasp_compiler.diagnostics.patterns import (
    DEFAULT_PATTERN_TOLERANCE,
    head_matrix,
    ideal_pattern,
    pattern_stats,
)
from rasp_compiler.errors import (
    EvaluationError,
    InvalidInputError,
    RaspCompilerError,
    SaveError,
    counted,
)
from rasp_compiler.model.encoding import Unclean
from rasp_compiler.model.hooks import Slot, hook
from rasp_compiler.verify.checker import values_match

NO_PROGRAM_NOTE = (
    "This model was loaded from disk without its RASP program, so the views that compare "
    "with the program (ideal patterns, logit margins, BOS leak, the evaluator's values, "
    "where each node of the program lives) are not available; compile the program in this "
    "session (rasp-compiler explore PROGRAM) to see them."
)
SAVED_OWNER = "the saved model"  # how messages name a saved model whose program is unknown
MAX_REQUEST_BYTES = 64 * 1024  # a typed input is a few tokens; refuse anything bigger
MAX_JSON_DEPTH = 32  # {"text": "..."} nests 1 deep; Python's json recurses once per level
REQUEST_TIMEOUT = 30  # seconds a connection may sit idle (e.g. a body shorter than announced)
DRAIN_SECONDS = 0.5  # after refusing a body unread, how long to drop what the client still sends


# --------------------------------------------------------------------------- values


def show(value: Any) -> str:
    """How the page writes a token or an SOp value: str() as the CLI prints tokens;
    floats to 6 decimals and 6 significant digits (float32 noise such as 8e-16 reads as
    0); an unclean position as its repr."""
    if isinstance(value, Unclean):
        return repr(value)
    if isinstance(value, float):
        return f"{round(value, 6) + 0.0:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _number(x: float, digits: int | None = None) -> float | str:
    """A float JSON can carry: non-finite numbers become their name ('inf', '-inf', 'nan')."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return round(x, digits) if digits is not None else x


def _matrix(array: np.ndarray, digits: int | None = None) -> list[list]:
    return [[_number(x, digits) for x in row] for row in np.asarray(array, dtype=np.float64)]


def write_times(model) -> dict[str, int]:
    """The schedule time (0 embeddings, 2l+1 layer l attention, 2l+2 layer l MLP) after which
    each readable SOp can be read, from the model's own info (a loaded model has no
    schedule): a head writes its label's dimensions, an MLP part its outputs', the
    embeddings the rest; a readout (a free linear form reads several owners) is ready when
    the last of the dimensions it reads is written. The first writer counts (a later BOS
    clean-up only tidies a head's output)."""
    owners: dict[str, int] = {}
    for layer in model.info.layers:
        for head in layer.heads:
            owners.setdefault(head.label, Slot.attention(layer.index).time)
        for part in layer.mlp:
            for output in part.outputs:
                owners.setdefault(output, Slot.mlp(layer.index).time)
    dims = model.layout.dims
    return {label: max((owners.get(dims[i].sop, 0) for i in readout.indices), default=0)
            for label, readout in model.readouts.items()}


def residual_at(cache, time: int) -> np.ndarray:
    """The residual [B, T, D] right after sublayer `time` (0: the embeddings)."""
    hook = residual_hook(time)
    if hook == "hook_embed+pos":
        return np.asarray(cache["hook_embed"]) + np.asarray(cache["hook_pos_embed"])
    return np.asarray(cache[hook])


def read_at(cache, time: int, depth: int) -> np.ndarray:
    """A compressed model's residual [B, T, D] right after sublayer `time`, as the frozen
    weights read it back from the compressed stream (the next read's hook: the attention
    or MLP input, or the readout's)."""
    if time == Slot.mlp(depth - 1).time:
        return np.asarray(cache["hook_readout_in"])
    following = Slot.at(time + 1)  # the sublayer that reads this residual
    return np.asarray(cache[hook(following.layer, f"hook_{following.sublayer}_in")])


# --------------------------------------------------------------------------- model view


def _owners_read(model, leaves: Sequence[str]) -> list[str]:
    """The residual owners an MLP part reads: its leaves, free linear forms expanded to
    the SOps they sum (known only with the program; a loaded model lists the leaf)."""
    owners = model.layout.ranges()
    forms = {} if model.compilation is None else model.compilation.ops.forms
    out: list[str] = []
    for leaf in leaves:
        for sop in (sorted(forms[leaf].sops()) if leaf in forms else [leaf]):
            if sop in owners and sop not in out:
                out.append(sop)
    return out


def is_compressed(model) -> bool:
    """A CompressedModel (compression.py): the compiled model run through a learnt
    projection. Its structure is its base model's; what it computes is not exact."""
    return hasattr(model, "base") and hasattr(model, "interference")


def base_model(model):
    """The compiled model itself: a compressed model's base, or the model."""
    return model.base if is_compressed(model) else model


def owner_of(model) -> str:
    """How messages name the model: its program's name, or "the saved model"."""
    base = base_model(model)
    if base.source is not None:
        return base.source.name
    return base.output if base.compilation is not None else SAVED_OWNER


def load_saved(folder) -> tuple[Any, str]:
    """A folder saved by `compile -o` (CompiledModel.save) or `compress -o`, loaded and
    checked, with its program found again where the save names it
    (`program_files.reload_program`): (model, note), the note saying why the program
    could not be found ("" when it was)."""
    from rasp_compiler.model.compiled import CompiledModel
    from rasp_compiler.program_files import reload_program
    from rasp_compiler.superposition import compression

    folder = Path(folder)
    if (folder / compression.CONFIG_FILE).exists():
        model = compression.CompressedModel.load(folder)
        base, note = reload_program(model.base)
        return compression.CompressedModel(base, model.W, model.readers, model.info), note
    return reload_program(CompiledModel.load(folder))


def compression_view(model, pairs: int = 12) -> dict:
    """A compressed model's interference, as JSON-ready data: W @ W.T over the original
    features (entry (i, j): how much reading feature i picks up of feature j), each
    feature's norm, and the strongest off-diagonal pairs (at most `pairs`, none that
    round to 0)."""
    matrix = np.asarray(model.interference(), np.float64)
    off = matrix - np.diag(np.diag(matrix))
    upper = np.triu_indices(matrix.shape[0], k=1)
    order = np.argsort(-np.abs(off[upper]), kind="stable")[:pairs]
    order = [k for k in order if abs(off[upper][k]) >= 5e-4]  # what rounds to 0 is no pair
    labels = model.residual_labels
    info = model.info
    return {
        "d": model.d, "d_model": model.d_model,
        "reads": f"nonlinear (a ReLU decoder of width {info.hidden} per read)"
                 if model.readers else "linear (W.T)",
        "agreement": _number(info.agreement, 4), "steps": info.steps,
        "interference": _matrix(matrix, 3),
        "norms": [_number(x, 3) for x in np.diag(matrix)],
        "max_interference": _number(np.abs(off).max() if off.size else 0.0, 3),
        "mean_interference": _number(np.abs(off[upper]).mean() if upper[0].size else 0.0, 4),
        "pairs": [[int(upper[0][k]), int(upper[1][k]), labels[upper[0][k]], labels[upper[1][k]],
                   _number(off[upper[0][k], upper[1][k]], 3)] for k in order],
    }


def model_view(model, owner: str, program_note: str = "") -> dict:
    """Everything the page shows that does not depend on the input, as JSON-ready data.

    `owner` names the model in messages about typed tokens, as the CLI does (the
    program's name, or "the saved model"); `program_note` says why a loaded model has no
    program. A compressed model shows its base model's structure plus its interference
    matrix (`compression`)."""
    if is_compressed(model):
        view = model_view(model.base, owner, program_note)
        compression = compression_view(model)
        view["compression"] = compression
        view["facts"] = [
            ["compression", f"residual {model.d_model} -> {model.d} dimensions, "
                            f"{compression['reads']} reads, {model.info.steps:,} steps; "
                            f"agreement with the exact model {model.info.agreement:.2%} "
                            f"in training"],
            ["interference", f"largest |W W^T| off the diagonal {compression['max_interference']}"
                             f", mean {compression['mean_interference']}"],
        ] + view["facts"]
        return view
    selectors = {entry.selector: asdict(entry) for entry in model.selector_report()}
    ranges = model.layout.ranges()
    layers = []
    for layer in model.info.layers:
        heads = []
        for head in layer.heads:
            reads = list(dict.fromkeys(s for s in (*head.queries, *head.keys, *head.values)
                                       if s in ranges))
            heads.append({
                "name": head.name, "label": head.label, "source": head.source,
                "selector": head.selector, "kind": head.kind, "expression": head.expression,
                "queries": list(head.queries), "keys": list(head.keys),
                "values": list(head.values), "reads": reads,
                "writes": [head.label] if head.label in ranges else [],
                "coldness": _number(head.coldness, 3), "leak_bound": _number(head.leak_bound),
                "atoms": list(head.atoms), "key_size": head.key_size,
                "value_size": head.value_size,
                "selector_entry": selectors.get(head.selector),
                "hook": hook(layer.index, "attn.hook_pattern"),
            })
        parts = []
        for part in layer.mlp:
            parts.append({
                "id": f"L{layer.index}MLP[{part.start}:{part.stop}]",
                "construction": part.construction, "units": list(part.units),
                "leaves": list(part.leaves), "reads": _owners_read(model, part.leaves),
                "writes": [o for o in part.outputs if o in ranges],
                "start": part.start, "stop": part.stop,
            })
        layers.append({"index": layer.index, "heads": heads, "mlp": parts,
                       "mlp_hidden": layer.mlp_hidden})
    groups = [{"sop": e.owner, "start": e.start, "stop": e.stop, "written_by": e.written_by,
               "read_by": list(e.read_by)} for e in residual_map(model).entries]
    dims = [{"sop": d.sop, "value": "" if d.is_numerical else show(d.value), "label": str(d)}
            for d in model.layout.dims]
    times = write_times(model)
    sops = [{"label": label, "time": time, "written_after": sublayer_name(time),
             "numerical": model.readouts[label].numerical}
            for label, time in sorted(times.items(), key=lambda item: item[1])]
    record = model.compilation
    nodes, not_in_residual = [], []
    if record is not None:
        places = layout(model).nodes
        nodes = [asdict(node) for node in places]
        not_in_residual = [[n.label, n.where] for n in places
                           if n.label not in model.readouts and n.place != "selector"]
    info = model.info
    facts = [
        ["depth", f"{counted(model.depth, 'layer')} (lower bound {model.lower_bound})"],
        ["heads per layer", ", ".join(str(len(layer.heads)) for layer in info.layers) or "-"],
        ["MLP widths", ", ".join(str(layer.mlp_hidden) for layer in info.layers) or "-"],
        ["residual width", str(model.layout.width)],
        ["vocab", ", ".join(str(t) for t in model.vocab)],
        ["max_seq_len", str(model.max_seq_len)],
        ["parameters", f"{model.parameter_count():,}"],
        ["attention", "causal (each query sees keys at or before it)" if model.causal
         else "bidirectional"],
    ]
    if info.causal_invariance:
        facts.append(["causal invariance", info.causal_invariance])
    facts += [["warning", w] for w in info.warnings]
    facts += [["rewrite", note] for note in info.rewrites]
    facts += [["fusion", note] for note in info.fusion_notes]
    return {
        "title": model.name, "owner": owner, "output": model.output,
        "has_program": record is not None,
        "no_program_note": NO_PROGRAM_NOTE + (f" Why: {program_note}." if program_note else ""),
        "causal": model.causal, "depth": model.depth, "lower_bound": model.lower_bound,
        "max_seq_len": model.max_seq_len, "vocab": [str(t) for t in model.vocab],
        "facts": facts, "layers": layers, "dims": dims, "groups": groups, "sops": sops,
        "steps": [sublayer_name(t) for t in range(2 * model.depth + 1)],
        "selectors": list(selectors.values()), "nodes": nodes,
        "not_in_residual": not_in_residual, "tolerance": DEFAULT_PATTERN_TOLERANCE,
        "compression": None, "colours": colours.as_json(), "glossary": dict(TERMS),
    }


# --------------------------------------------------------------------------- input view


def input_view(model, owner: str, words: Sequence[str]) -> dict:
    """One input's run, as JSON-ready data: output, every SOp's value per position, each
    head's pattern, the residual stream at every step, and every disagreement with the
    evaluator. A bad input (an unknown token, too many tokens, none) gives
    {"error": message}: the message the CLI prints for it."""
    from rasp_compiler.lang.tokens import parse_tokens  # the CLI's parser too: one message for both

    words = [str(w) for w in words]
    compressed = model if is_compressed(model) else None
    exact = model.base if compressed is not None else model  # the structure, the readouts
    try:
        tokens = parse_tokens(owner, words, model.vocab)
        # A compiled model runs its numpy forward: the same weights and hooks as the jitted
        # one (equal to float32 rounding), with no XLA compilation for each new input
        # length, which cost 0.5 to 2 s per length typed into `explore`.
        outputs, cache = (model.run_with_cache([tokens]) if compressed is not None
                          else model.run_with_cache([tokens], backend="numpy"))
    except RaspCompilerError as exc:
        return {"words": words, "error": str(exc)}
    length = len(tokens) + 1
    model = exact
    record = model.compilation
    evaluation, evaluator_error = None, None
    if record is not None:
        from rasp_compiler.lang.evaluator import evaluate_all

        try:
            evaluation = evaluate_all(record.graph, tokens, causal=model.causal)
        except EvaluationError as exc:
            evaluator_error = str(exc)
    problems: list[str] = []
    output_readout = model.readouts[model.output]
    expected = None
    if evaluation is not None:
        expected = evaluation[model.output] if model.output in evaluation.values else None
    output_row = outputs[0]
    exact_output = exact.run([tokens], backend="numpy")[0] if compressed is not None else None

    def at(position: int) -> str:  # positions as the page numbers them: BOS 0, tokens from 1
        return f"position {position + 1} ({words[position]})"

    for position, value in enumerate(output_row):
        if isinstance(value, Unclean):
            problems.append(f"output at {at(position)}: the model's value is not clean "
                            f"({show(value)})")
        elif exact_output is not None:  # compressed: the exact model is the reference
            if not values_match(value, exact_output[position],
                                categorical=not output_readout.numerical):
                problems.append(f"output at {at(position)}: the compressed model gives "
                                f"{show(value)}, the exact model {show(exact_output[position])}")
        elif expected is not None and not values_match(
                value, expected[position], categorical=not output_readout.numerical):
            problems.append(f"output at {at(position)}: the model gives {show(value)}, the "
                            f"evaluator {show(expected[position])}")

    if compressed is None:
        steps = [residual_at(cache, t)[0, :length] for t in range(2 * model.depth + 1)]

        def decode(label, residual):
            return model.decode(label, residual, len(tokens))
    else:
        from rasp_compiler.superposition.compression import decode_nearest

        steps = [read_at(cache, t, model.depth)[0, :length] for t in range(2 * model.depth + 1)]

        def decode(label, residual):
            readout = model.readouts[label]
            return decode_nearest(readout, residual[1:, list(readout.indices)])
    times = write_times(model)
    sops = []
    for label, time in sorted(times.items(), key=lambda item: item[1]):
        got = decode(label, steps[time])
        want = None
        if evaluation is not None and label in evaluation.values:
            want = evaluation[label]
        agree = None
        if want is not None:
            categorical = not model.readouts[label].numerical
            agree = [values_match(g, w, categorical=categorical) for g, w in zip(got, want)]
            for position, ok in enumerate(agree):
                if not ok:
                    problems.append(
                        f"{label} after {sublayer_name(time)}, at {at(position)}: the model "
                        f"gives {show(got[position])}, the evaluator {show(want[position])}")
        sops.append({"label": label, "values": [show(v) for v in got],
                     "expected": None if want is None else [show(v) for v in want],
                     "agree": agree})
    decoded = [{label: [show(v) for v in decode(label, step)] for label in times}
               for step in steps]

    heads = {}
    for layer in model.info.layers:
        patterns = np.asarray(cache[hook(layer.index, "attn.hook_pattern")])[0]
        scores = np.asarray(cache[hook(layer.index, "attn.hook_attn_scores")])[0]
        for head in layer.heads:
            got = patterns[head.index, :length, :length]
            logits = scores[head.index, :length, :length]
            view = {"compiled": _matrix(got), "scores": _matrix(logits, 4), "ideal": None,
                    "margin": None, "bos_leak": None, "max_deviation": None}
            if evaluation is not None:
                ideal = ideal_pattern(head.kind, head_matrix(record, head.label, evaluation),
                                      length, record.ops.attention[head.label].bos_share)
                stats = pattern_stats(ideal, got, logits)
                view.update(ideal=_matrix(ideal), margin=_number(stats.min_margin, 4),
                            bos_leak=_number(stats.max_bos_leak),
                            max_deviation=_number(stats.max_deviation))
                if stats.max_deviation > DEFAULT_PATTERN_TOLERANCE:
                    problems.append(
                        f"head {head.name} ({head.label}): its pattern is off the ideal by "
                        f"{stats.max_deviation:.3g} at query position {stats.worst_query} "
                        f"(tolerance {DEFAULT_PATTERN_TOLERANCE:g})")
            heads[head.name] = view
    return {
        "words": words, "tokens": words, "positions": ["BOS"] + words,
        "output": [show(v) for v in output_row],
        "exact_output": None if exact_output is None else [show(v) for v in exact_output],
        "expected": None if expected is None else [show(v) for v in expected],
        "evaluator_error": evaluator_error, "problems": problems, "sops": sops,
        "decoded": decoded, "residual": [_matrix(step, 5) for step in steps], "heads": heads,
    }


# --------------------------------------------------------------------------- the page


def _asset(name: str) -> str:
    return (resources.files("rasp_compiler.explorer") / "assets" / name).read_text("utf-8")


def json_safe(data: Any) -> Any:
    """`data` with every non-finite float written as its name: JSON has no Infinity/NaN."""
    if isinstance(data, float):
        return _number(data)
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


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


def default_inputs(model, examples: Sequence = ()) -> list[list[str]]:
    """The inputs a static page holds when none are given: the examples the model can run
    (compiled with a smaller --max-seq-len or --vocab, some do not fit), else the vocab
    (cut to max_seq_len)."""
    vocab = {str(t) for t in model.vocab}
    inputs = [[str(t) for t in example] for example in examples]
    fitting = [xs for xs in inputs if 0 < len(xs) <= model.max_seq_len and set(xs) <= vocab]
    return fitting or [[str(t) for t in model.vocab[: model.max_seq_len]]]


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


# --------------------------------------------------------------------------- the server


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
