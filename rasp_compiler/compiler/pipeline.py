"""compile_program: a RASP program to an exact dm-haiku transformer, stage by stage.

    graph     -> build_graph          one node per expression
    values    -> infer_values         every value each SOp can take
    rewrite   -> rewrite              embeddings, heads, MLP units, linear forms
    schedule  -> schedule             layers at minimal depth, fused MLPs
    size      -> check_size           refuse, before allocating, past max_parameters
    safety    -> check_categorical_aggregates   (on the schedule's live SOps)
    lower     -> lower                weights over named residual dimensions
    precision -> check_precision      float32 error bounds; refuse past tolerance
    assemble  -> assemble             dense haiku parameters
"""

from __future__ import annotations

import math
import time
import warnings
from numbers import Integral, Real
from typing import Any, Iterable

from rasp_compiler.compiler.assemble import assemble
from rasp_compiler.compiler.lexicographic import expand_lexicographic_selects
from rasp_compiler.compiler.linear_lookup import with_numerical_copies
from rasp_compiler.compiler.lower import DEFAULT_ATTENTION_PRECISION, FLOAT32_PRECISION_FLOOR, lower
from rasp_compiler.compiler.precision import check_magnitudes, check_precision
from rasp_compiler.compiler.rewrite import rewrite, width_hidden_label
from rasp_compiler.compiler.safety import check_categorical_aggregates
from rasp_compiler.compiler.schedule import DEFAULT_MAX_FUSED_INPUT_SPACE, Schedule, schedule
from rasp_compiler.compiler.selectors import (
    DEFAULT_MAX_HEADS_PER_SELECTOR,
    DEFAULT_MAX_SELECTOR_DIMS,
)
from rasp_compiler.compiler.size import DEFAULT_MAX_PARAMETERS, check_size
from rasp_compiler.compiler.values import (
    DEFAULT_MAX_NUMERICAL_VALUE_SET_SIZE,
    DEFAULT_MAX_SEQUENCE_MAP_PAIRS,
    DEFAULT_MAX_VALUE_SET_SIZE,
    infer_values,
)
from rasp_compiler.errors import (
    CompilationError,
    CompileWarning,
    InvalidProgramError,
    UnsafeAggregateError,
)
from rasp_compiler.lang import rasp
from rasp_compiler.lang.causal import check_invariance
from rasp_compiler.lang.graph import assign_ids, build_graph
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.records import (
    CompilationRecord,
    HeadInfo,
    LayerInfo,
    MLPPartInfo,
    ModelInfo,
    SelectorEntry,
)


def compile_program(
    program: rasp.SOp,
    vocab: Iterable[Any],
    max_seq_len: int,
    *,
    bos: Any = "BOS",
    pad: Any = "PAD",
    allow_unsafe_aggregates: bool = False,
    attention_precision: float = DEFAULT_ATTENTION_PRECISION,
    max_fused_input_space: int = DEFAULT_MAX_FUSED_INPUT_SPACE,
    max_value_set_size: int = DEFAULT_MAX_VALUE_SET_SIZE,
    max_numerical_value_set_size: int = DEFAULT_MAX_NUMERICAL_VALUE_SET_SIZE,
    max_sequence_map_pairs: int = DEFAULT_MAX_SEQUENCE_MAP_PAIRS,
    max_selector_dims: int = DEFAULT_MAX_SELECTOR_DIMS,
    max_heads_per_selector: int = DEFAULT_MAX_HEADS_PER_SELECTOR,
    max_parameters: int = DEFAULT_MAX_PARAMETERS,
    causal: bool = False,
) -> CompiledModel:
    """Compile `program` for inputs of 1..max_seq_len tokens from `vocab`.

    Options:
      causal: a decoder-only model: attention masked to keys at or before the
        query. Same weights; it computes the program's causal meaning
        (`evaluate(..., causal=True)`), and `model.info.causal_invariance` says
        whether that equals the ordinary meaning, with a counterexample if not.
      allow_unsafe_aggregates: compile (with a warning) a categorical Aggregate for
        which an input is known where it mixes values; the model flags those
        positions as `Unclean` at run time. Default: refuse with that input.
      attention_precision: largest attention mass a head may leak, a number in
        [1e-9, 1) (sets the softmax coldness; heads feeding close-valued steps get less).
      max_fused_input_space: largest input space of one fused MLP block.
      max_value_set_size / max_numerical_value_set_size / max_sequence_map_pairs:
        limits past which value sets are refused as too large.
      max_selector_dims / max_heads_per_selector: caps on what a Boolean selector
        (&, |, ~) may cost; past them compilation stops, naming the selector, its
        cost and the cheaper constructions.
      max_parameters: largest model to build (default 200 million parameters, 0.8 GB
        of float32: see rasp_compiler.compiler.size). The size is bounded right after
        scheduling, before any weight is allocated; past it compilation stops with
        ModelTooLargeError naming the part responsible and a cheaper formulation.
    """
    started = time.perf_counter()
    if not isinstance(causal, bool):
        raise InvalidProgramError(f"causal must be True or False, got {causal!r}")
    if not isinstance(program, rasp.SOp):
        raise InvalidProgramError(
            f"compile_program takes the program's output SOp, got {type(program).__name__} "
            f"{program!r}"
        )
    _check_options(
        attention_precision=attention_precision,
        allow_unsafe_aggregates=allow_unsafe_aggregates,
        max_fused_input_space=max_fused_input_space,
        max_value_set_size=max_value_set_size,
        max_numerical_value_set_size=max_numerical_value_set_size,
        max_sequence_map_pairs=max_sequence_map_pairs,
        max_selector_dims=max_selector_dims,
        max_heads_per_selector=max_heads_per_selector,
        max_parameters=max_parameters,
    )
    assign_ids(program)  # before any stage reads a label: tracr's ids, so tracr's labels
    vocab = list(vocab)  # read twice: a generator would be empty the second time
    _check_special_tokens(bos, pad, vocab)
    value_limits = dict(max_value_set_size=max_value_set_size,
                        max_numerical_value_set_size=max_numerical_value_set_size,
                        max_sequence_map_pairs=max_sequence_map_pairs)
    compiled_program, rewrites = expand_lexicographic_selects(
        program, vocab, max_seq_len, max_pairs=max_sequence_map_pairs, **value_limits)
    graph = build_graph(compiled_program)
    values = infer_values(
        graph, vocab, max_seq_len,
        max_value_set_size=max_value_set_size,
        max_numerical_value_set_size=max_numerical_value_set_size,
        max_sequence_map_pairs=max_sequence_map_pairs,
    )
    ops = rewrite(graph, values, max_selector_dims=max_selector_dims,
                  max_heads_per_selector=max_heads_per_selector)
    plan = schedule(ops, max_fused_input_space=max_fused_input_space)
    # Linear lookups read numerical copies of their inputs where that saves weights; if
    # float32 cannot keep a copy exact enough (precision.py), they read the one-hots.
    readings = [with_numerical_copies(ops, plan, max_fused_input_space=max_fused_input_space),
                (ops, plan)]
    readings = [reading for reading in readings if reading is not None]
    for attempt, (ops, plan) in enumerate(readings):
        check_size(ops, plan, int(max_parameters))
        selectors = _selector_entries(ops, plan)
        messages, checks = _check_aggregates(ops, plan.live, allow_unsafe_aggregates, causal)
        check_magnitudes(ops, plan.live)
        try:
            lowered = lower(ops, plan, attention_precision=attention_precision)
            check_precision(ops, plan, lowered)
        except CompilationError:
            if attempt + 1 == len(readings):
                raise
            continue
        break
    params, shape = assemble(lowered, causal=causal)
    invariance = check_invariance(graph, values.vocab, max_seq_len) if causal else None
    info = ModelInfo(
        output=ops.output,
        layers=_layer_infos(lowered, ops),
        lower_bound=plan.lower_bound,
        fusion_notes=plan.fusion_notes,
        rewrites=rewrites,
        folded=dict(ops.folded),
        warnings=tuple(messages),
        aggregate_checks=tuple((c.label, c.status, c.reason) for c in checks),
        selectors=selectors,
        causal=causal,
        causal_invariance=invariance.describe() if invariance else "",
        causally_invariant=invariance.invariant if invariance else None,
        compile_seconds=time.perf_counter() - started,
    )
    for text in messages:
        warnings.warn(text, CompileWarning, stacklevel=2)
    return CompiledModel(
        params=params,
        shape=shape,
        vocab=values.vocab,
        max_seq_len=max_seq_len,
        bos=bos,
        pad=pad,
        layout=lowered.layout,
        readouts=lowered.readouts,
        info=info,
        compilation=CompilationRecord(program=program, ops=ops, schedule=plan, lowered=lowered),
    )


def _check_options(*, attention_precision, allow_unsafe_aggregates, **limits) -> None:
    """Refuse option values that would fail (or mislead) deep inside a later stage."""
    if not isinstance(allow_unsafe_aggregates, bool):
        raise InvalidProgramError(
            f"allow_unsafe_aggregates must be True or False, got {allow_unsafe_aggregates!r}"
        )
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise InvalidProgramError(f"{name} must be a positive int, got {value!r}")
    eps = attention_precision
    if isinstance(eps, bool) or not isinstance(eps, Real) or math.isnan(eps):
        raise InvalidProgramError(
            f"attention_precision must be a number, the largest attention mass a head may "
            f"leak (default {DEFAULT_ATTENTION_PRECISION:g}), got {eps!r}"
        )
    if eps <= 0:
        raise InvalidProgramError(
            f"attention_precision must be greater than 0, got {eps!r}: a softmax always leaks "
            f"some attention; the smallest leak float32 resolves is {FLOAT32_PRECISION_FLOOR:g}"
        )
    if eps < FLOAT32_PRECISION_FLOOR:
        raise InvalidProgramError(
            f"attention_precision {eps!r} is below {FLOAT32_PRECISION_FLOOR:g}, finer than "
            f"float32 softmax resolves; use a value in [{FLOAT32_PRECISION_FLOOR:g}, 1)"
        )
    if eps >= 1:
        raise InvalidProgramError(
            f"attention_precision must be below 1 (it is the attention mass a head may leak "
            f"away from the keys it selects), got {eps!r}; the default is "
            f"{DEFAULT_ATTENTION_PRECISION:g}"
        )


def _check_special_tokens(bos, pad, vocab: list) -> None:
    """bos and pad must be tokens a saved model holds (str, int, finite float, bool, or
    tuples of them), different from each other and from every vocab token even under ==
    (1 and True count as one here, though a vocab may hold both: tracr's apply finds BOS
    and PAD with ==, and so do export and load). Checked on entry: bos="X", pad="X" (or 1
    and True) compiled and saved, then load() refused; bos=["X"] compiled, then apply
    raised a raw TypeError."""
    for name, token in (("bos", bos), ("pad", pad)):
        if not _storable(token):
            raise InvalidProgramError(
                f"{name} must be a token a saved model can hold: a str, int, finite float, "
                f"bool or a tuple of them, got {type(token).__name__} {token!r}"
                + ("; None is RASP's 'no value'" if token is None else ""))
        try:
            inside = token in vocab  # at C speed: a vocab may be long
        except Exception:  # a token that cannot be compared: refused later by the vocab checks
            inside = False
        for other in vocab if inside else ():
            if _equal(token, other):
                raise InvalidProgramError(
                    f"the {name} token {token!r} is also in the vocab"
                    + ("" if type(other) is type(token) else
                       f" as {type(other).__name__} {other!r}, which Python counts as equal")
                    + f"; choose another {name}=")
    if _equal(bos, pad):
        raise InvalidProgramError(
            f"bos and pad must be different tokens, got bos={bos!r} and pad={pad!r}"
            + ("" if type(bos) is type(pad) else
               f" ({type(bos).__name__} and {type(pad).__name__}, which == counts as equal: "
               f"tracr's apply and loading could not tell them apart)")
            + "; choose another pad=")


def _storable(token) -> bool:
    kind = type(token)
    if kind in (str, int, bool):
        return True
    if kind is float:
        return math.isfinite(token)
    return kind is tuple and all(item is None or _storable(item) for item in token)


def _equal(a, b) -> bool:
    """a == b as the encoder's dicts see it (False for values that cannot be compared)."""
    try:
        return bool(a == b)
    except Exception:  # e.g. an array token: refused later by the vocab checks
        return False


def _check_aggregates(ops, live, allow_unsafe: bool, causal: bool) -> tuple[list[str], list]:
    """Refuse provably mixing categorical Aggregates; warn about unproven ones."""
    checks = check_categorical_aggregates(ops, live, causal=causal)
    messages = []
    for check in checks:
        if check.status == "unsafe":
            text = (
                f"{check.label}: this categorical Aggregate selects positions holding different "
                f"values on the input {list(check.counterexample)} (query position "
                f"{check.position}), so no head can copy one value there"
            )
            if not allow_unsafe:
                raise UnsafeAggregateError(
                    f"{text}. Make its selector pick a single value (e.g. break ties with "
                    f"indices), make it numerical to average, or pass "
                    f"allow_unsafe_aggregates=True if such inputs are out of scope (the model "
                    f"then marks those positions as Unclean)"
                )
            messages.append(text + "; compiled anyway (allow_unsafe_aggregates=True)")
        elif check.status == "unproven":
            messages.append(
                f"{check.label}: could not prove this categorical Aggregate always selects a "
                f"single value: {check.reason}. The model marks any position where it does "
                f"not as Unclean"
            )
    return messages, checks


def _selector_entries(ops, plan: Schedule) -> tuple[SelectorEntry, ...]:
    """The selector report, with the layers each construction's MLPs really cost."""
    entries = []
    for choice in ops.selector_choices:
        heads = [h for h in choice.heads if h in plan.time]
        if not heads:
            continue  # its user is dead code
        chosen = choice.chosen
        helpers = {t.label for t in chosen.tuples} | {f.label for f in chosen.features}
        extra = 0
        for head in heads:
            # When could this head run if its helper SOps cost nothing?
            base: set[str] = set()
            for label in ops.attention[head].reads:
                base |= set(ops.units[label].inputs) if label in helpers else {label}
            ready = max((plan.time[b] for b in base), default=0)
            ideal = ready + 1 if ready % 2 == 0 else ready + 2
            extra = max(extra, (plan.time[head] - ideal) // 2)
        actual = max(plan.time[h] for h in heads)
        if len(chosen.heads) > 1 and choice.used_by in ops.units:
            extra += (plan.time[choice.used_by] - (actual + 1)) // 2
        entries.append(SelectorEntry(
            selector=choice.selector,
            used_by=choice.used_by,
            written=choice.written,
            normal_form=choice.normal_form,
            construction=chosen.name,
            cost=str(chosen.cost),
            alternatives=tuple((o.name, str(o.cost)) for o in choice.alternatives),
            flags=choice.flags(extra_layers=max(0, extra)),
            heads=tuple(heads),
            score=chosen.cost.score,
        ))
    return tuple(entries)


def _head_expression(ops, op, written: dict[str, str]) -> str:
    text = written.get(op.selector, f"{op.selector} (built in)")
    if op.label not in (op.source, width_hidden_label(op.source)):
        text += f" [inclusion-exclusion part: {' & '.join(a.name() for a in op.atoms)}]"
    return text


def _layer_infos(lowered, ops) -> tuple[LayerInfo, ...]:
    written = {p.selector: p.written for p in ops.selector_choices}
    layers = []
    for heads, mlp in zip(lowered.heads, lowered.mlps):
        head_infos = []
        for h in heads:
            op = ops.attention[h.label]
            head_infos.append(HeadInfo(
                label=h.label, source=op.source, selector=op.selector, kind=op.kind,
                layer=h.layer, index=h.index, coldness=h.coldness, leak_bound=h.leak_bound,
                atoms=tuple(atom.describe() for atom in op.atoms),
                key_size=h.key_size, value_size=h.value_size,
                expression=_head_expression(ops, op, written),
                queries=op.queries, keys=op.keys, values=op.values,
            ))
        ranges = mlp.part_ranges()
        parts = tuple(
            MLPPartInfo(
                label=p.label, construction=p.construction, units=p.units, leaves=p.leaves,
                outputs=p.outputs, start=ranges[p.label][0], stop=ranges[p.label][1],
            )
            for p in mlp.parts
        )
        layers.append(LayerInfo(mlp.layer, tuple(head_infos), parts, mlp.hidden))
    return tuple(layers)
