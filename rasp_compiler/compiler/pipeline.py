"""compile_program: a RASP program to an exact dm-haiku transformer, stage by stage.

`compile_program` is the list of stages in the order they run, each one call into its
own module (docs/compiler.md describes each):

    keys       expand_lexicographic_selects   lexicographic.py   tie-broken keys compared as parts
    graph      build_graph                    lang/graph.py      one node per expression
    values     infer_values                   values.py          every value each SOp can take
    rewrite    rewrite                        rewrite.py         embeddings, heads, MLP units, linear forms
    schedule   schedule                       schedule.py        layers at minimal depth, fused MLPs
    copies     with_numerical_copies          numerical_copies.py  linear lookups read numbers
    reading    first_exact_reading            (here)             the first reading that is exact in float32:
      size       check_size                   size.py            refuse, before allocating, past max_parameters
      safety     refuse_unsafe_aggregates     safety.py          categorical Aggregates proven, refused or flagged
      magnitudes check_magnitudes             precision.py       numbers float32 can hold
      lower      lower_model                  lower.py, mlp.py   weights over named residual dimensions
      precision  check_float32_precision      precision.py       float32 error bounds; refuse past tolerance
    assemble   assemble                       assemble.py        dense haiku parameters

The numerical-copies pass gives a second reading of the program (its OpGraph and
Schedule); `first_exact_reading` runs the checks and lowering on each reading in
turn, and its docstring says why that is a loop.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rasp_compiler.compiler.assemble import assemble
from rasp_compiler.compiler.info import layer_infos, selector_entries
from rasp_compiler.compiler.lexicographic import expand_lexicographic_selects
from rasp_compiler.compiler.lower import DEFAULT_ATTENTION_PRECISION, LoweredModel, lower_model
from rasp_compiler.compiler.numerical_copies import with_numerical_copies
from rasp_compiler.compiler.ops import OpGraph
from rasp_compiler.compiler.options import check_program_and_options, check_special_tokens
from rasp_compiler.compiler.precision import check_float32_precision, check_magnitudes
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.safety import AggregateCheck, refuse_unsafe_aggregates
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
from rasp_compiler.errors import CompilationError, CompileWarning
from rasp_compiler.lang import rasp
from rasp_compiler.lang.causal import check_invariance
from rasp_compiler.lang.graph import assign_ids, build_graph
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.records import CompilationRecord, ModelInfo, SelectorEntry


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
    check_program_and_options(
        program,
        causal=causal,
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
    check_special_tokens(bos, pad, vocab)
    value_limits = dict(max_value_set_size=max_value_set_size,
                        max_numerical_value_set_size=max_numerical_value_set_size,
                        max_sequence_map_pairs=max_sequence_map_pairs)

    compiled_program, rewrites = expand_lexicographic_selects(
        program, vocab, max_seq_len, max_pairs=max_sequence_map_pairs, **value_limits)
    graph = build_graph(compiled_program)
    values = infer_values(graph, vocab, max_seq_len, **value_limits)
    ops = rewrite(graph, values, max_selector_dims=max_selector_dims,
                  max_heads_per_selector=max_heads_per_selector)
    scheduled = schedule(ops, max_fused_input_space=max_fused_input_space)
    copied = with_numerical_copies(ops, scheduled, max_fused_input_space=max_fused_input_space)
    built = first_exact_reading(
        [reading for reading in (copied, (ops, scheduled)) if reading is not None],
        max_parameters=int(max_parameters), allow_unsafe_aggregates=allow_unsafe_aggregates,
        causal=causal, attention_precision=attention_precision)
    params, shape = assemble(built.lowered, causal=causal)

    invariance = check_invariance(graph, values.vocab, max_seq_len) if causal else None
    info = ModelInfo(
        output=built.ops.output,
        layers=layer_infos(built.lowered, built.ops),
        lower_bound=built.schedule.lower_bound,
        fusion_notes=built.schedule.fusion_notes,
        rewrites=rewrites,
        folded=dict(built.ops.folded),
        warnings=tuple(built.warnings),
        aggregate_checks=tuple((c.label, c.status, c.reason) for c in built.aggregate_checks),
        selectors=built.selectors,
        causal=causal,
        causal_invariance=invariance.describe() if invariance else "",
        causally_invariant=invariance.invariant if invariance else None,
        compile_seconds=time.perf_counter() - started,
    )
    for text in built.warnings:
        warnings.warn(text, CompileWarning, stacklevel=2)
    return CompiledModel(
        params=params,
        shape=shape,
        vocab=values.vocab,
        max_seq_len=max_seq_len,
        bos=bos,
        pad=pad,
        layout=built.lowered.layout,
        readouts=built.lowered.readouts,
        info=info,
        compilation=CompilationRecord(program=program, ops=built.ops, schedule=built.schedule,
                                      lowered=built.lowered),
    )


@dataclass(frozen=True, eq=False)
class Built:
    """One reading of the program, checked and lowered: its ops and schedule, the lowered
    weights, the selector report, the aggregate verdicts and the warnings to give."""

    ops: OpGraph
    schedule: Schedule
    lowered: LoweredModel
    selectors: tuple[SelectorEntry, ...]
    aggregate_checks: tuple[AggregateCheck, ...]
    warnings: tuple[str, ...]


def first_exact_reading(readings: Sequence[tuple[OpGraph, Schedule]], *, max_parameters: int,
                        allow_unsafe_aggregates: bool, causal: bool,
                        attention_precision: float) -> Built:
    """Check and lower each reading in turn, the first one float32 computes exactly.

    A reading is the program as scheduled operations (OpGraph, Schedule); the pipeline
    gives two when the numerical-copies pass found one (linear lookups reading numerical
    copies of their inputs, fewer weights) and the one-hot reading always. Each reading
    is checked for size, unsafe aggregates and magnitudes (a refusal there ends
    compilation: the readings agree on what it checks), then lowered and bounded in
    float32. Whether a copy is exact enough is known only then, from the lowered
    weights (the copy carries the attention's error through its decoder's slope, and
    the steps reading it may then cross a kink), so this is a loop and not a decision
    made beforehand: a CompilationError from lowering or precision moves on to the next
    reading, and the last reading's error is raised (`readings` holds at least one).
    """
    for attempt, (ops, scheduled) in enumerate(readings):
        check_size(ops, scheduled, max_parameters)
        selectors = selector_entries(ops, scheduled)
        messages, checks = refuse_unsafe_aggregates(ops, scheduled.live,
                                                    allow_unsafe_aggregates, causal)
        check_magnitudes(ops, scheduled.live)
        try:
            lowered = lower_model(ops, scheduled, attention_precision=attention_precision)
            check_float32_precision(ops, scheduled, lowered)
        except CompilationError:
            if attempt + 1 == len(readings):
                raise
            continue
        return Built(ops, scheduled, lowered, selectors, tuple(checks), tuple(messages))
