"""The explorer's view-model: everything the page shows, computed in Python as JSON-ready
data (`model_view` once per model, `input_view` per input).

Why Python and not the page: the page then shows exactly what `model.run`,
`run_with_cache` (the numpy forward, `backend="numpy"`: no XLA compilation per input
length), `read_back` and the evaluator give, and user-controlled strings (program
labels, tokens) only ever reach the page as JSON data that the script writes as text.
page.py puts these views in an HTML page, server.py serves them; the circuit panel's
data is circuit_view.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rasp_compiler.diagnostics import colours
from rasp_compiler.diagnostics.glossary import TERMS
from rasp_compiler.diagnostics.layer_plan import layer_plan_report, residual_map
from rasp_compiler.diagnostics.patterns import (
    DEFAULT_PATTERN_TOLERANCE,
    head_matrix,
    ideal_pattern,
    pattern_stats,
)
from rasp_compiler.errors import EvaluationError, RaspCompilerError, counted
from rasp_compiler.model.encoding import Unclean
from rasp_compiler.model.hooks import Slot, hook
from rasp_compiler.verify.report import values_match

NO_PROGRAM_NOTE = (
    "This model was loaded from disk without its RASP program, so the views that compare "
    "with the program (ideal patterns, logit margins, BOS leak, the evaluator's values, "
    "where each node of the program lives) are not available; compile the program in this "
    "session (rasp-compiler explore PROGRAM) to see them."
)
SAVED_OWNER = "the saved model"  # how messages name a saved model whose program is unknown


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
    hook = Slot.at(time).residual_after
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
    from rasp_compiler.program_files import reload_program
    from rasp_compiler.superposition.compressed_files import load_saved_model
    from rasp_compiler.superposition.compressed_model import CompressedModel

    model = load_saved_model(folder)
    if isinstance(model, CompressedModel):
        base, note = reload_program(model.base)
        return CompressedModel(base, model.W, model.readers, model.info), note
    return reload_program(model)


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
    matrix (`compression`). `circuit` is the circuit panel's data (circuit_view.py)."""
    from rasp_compiler.explorer.circuit_view import circuit_view

    view = _structure_view(model, owner, program_note)
    view["circuit"] = circuit_view(model)
    return view


def _structure_view(model, owner: str, program_note: str) -> dict:
    """model_view without the circuit: the layer plan, residual layout, selectors, facts."""
    if is_compressed(model):
        view = _structure_view(model.base, owner, program_note)
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
    sops = [{"label": label, "time": time, "written_after": Slot.at(time).name,
             "numerical": model.readouts[label].numerical}
            for label, time in sorted(times.items(), key=lambda item: item[1])]
    record = model.compilation
    nodes, not_in_residual = [], []
    if record is not None:
        places = layer_plan_report(model).nodes
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
        "steps": [Slot.at(t).name for t in range(2 * model.depth + 1)],
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

    steps, sops, decoded = _sop_views(model, compressed, cache, tokens, evaluation, problems, at)
    heads = _head_views(model, cache, length, evaluation, problems)
    return {
        "words": words, "tokens": words, "positions": ["BOS"] + words,
        "output": [show(v) for v in output_row],
        "exact_output": None if exact_output is None else [show(v) for v in exact_output],
        "expected": None if expected is None else [show(v) for v in expected],
        "evaluator_error": evaluator_error, "problems": problems, "sops": sops,
        "decoded": decoded, "residual": [_matrix(step, 5) for step in steps], "heads": heads,
    }


def _head_views(model, cache, length: int, evaluation, problems: list[str]) -> dict:
    """Each head's pattern and logits on one input and, when the program is known, its
    ideal pattern with the margin, the BOS leak and the deviation (adding a problem when
    the deviation passes the pattern check's tolerance)."""
    record = model.compilation
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
    return heads


def _sop_views(model, compressed, cache, tokens: list, evaluation, problems: list[str], at):
    """The residual after every sublayer, and every SOp decoded where it is written (and,
    for the page's step slider, after every sublayer), against the evaluator when the
    program is known (adding a problem per disagreeing position). A compressed model's
    residual is read back as its frozen weights read it."""
    length = len(tokens) + 1
    if compressed is None:
        steps = [residual_at(cache, t)[0, :length] for t in range(2 * model.depth + 1)]

        def decode(label, residual):
            return model.decode(label, residual, len(tokens))
    else:
        from rasp_compiler.superposition.compressed_forward import decode_nearest

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
                        f"{label} after {Slot.at(time).name}, at {at(position)}: the model "
                        f"gives {show(got[position])}, the evaluator {show(want[position])}")
        sops.append({"label": label, "values": [show(v) for v in got],
                     "expected": None if want is None else [show(v) for v in want],
                     "agree": agree})
    decoded = [{label: [show(v) for v in decode(label, step)] for label in times}
               for step in steps]

    return steps, sops, decoded


def default_inputs(model, examples: Sequence = ()) -> list[list[str]]:
    """The inputs a static page holds when none are given: the examples the model can run
    (compiled with a smaller --max-seq-len or --vocab, some do not fit), else the vocab
    (cut to max_seq_len)."""
    vocab = {str(t) for t in model.vocab}
    inputs = [[str(t) for t in example] for example in examples]
    fitting = [xs for xs in inputs if 0 < len(xs) <= model.max_seq_len and set(xs) <= vocab]
    return fitting or [[str(t) for t in model.vocab[: model.max_seq_len]]]



def json_safe(data: Any) -> Any:
    """`data` with every non-finite float written as its name: JSON has no Infinity/NaN."""
    if isinstance(data, float):
        return _number(data)
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data

