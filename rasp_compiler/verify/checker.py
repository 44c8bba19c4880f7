"""Verification: does a compiled model equal the reference evaluator, position by position?

`verify(program, model, exhaustive_up_to=3)` checks every input of 1..3 tokens;
`verify(program, model, samples=500)` checks random inputs of 1..max_seq_len
tokens. Inputs on which the evaluator itself has no answer (a categorical
Aggregate mixing values) are counted as `undefined`, not compared.
A causal model is compared with the causal meaning (`evaluate(..., causal=True)`),
and the report also says whether that equalled the ordinary meaning on every
input checked (causal invariance), with the first input where it did not.
Numerical outputs agree when |got - expected| <= atol + rtol * |expected| (both 1e-4);
categorical outputs must be the same value: equal and of one type (1 is not True).
`strict=True` also judges the raw readout columns before decoding: a categorical
output's columns must be within `raw_tolerance` (RAW_TOLERANCE, 1e-3) of the exact
one-hot of the expected value (all zero for None), not merely within the decoder's
0.1; the report gives the worst raw deviation (docs/verification.md derives the bound).

Everything runs on arrays: inputs are made as token-id arrays (an exhaustive
input from its index by arithmetic, a random one as random.Random's draws made on
arrays), grouped by length, run through the model (`Runtime.readout_columns`,
sharded over every JAX device; from SPARSE_MIN_INPUTS inputs its sparse forward,
sparse_forward.py, on a worker thread while the evaluator runs), decoded all at once
(`encoding.decode_indices`) and compared with the batched evaluator
(batch_evaluator.py, held equal to the scalar one by the tests). Python objects
are made only for the mismatches the report shows.
"""

from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from numbers import Real
from typing import Iterable, Iterator, Sequence

import numpy as np

from rasp_compiler.errors import InvalidInputError, InvalidProgramError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.batch_evaluator import evaluate_batch, first_causal_difference
from rasp_compiler.lang.coded import Numbers, as_coded
from rasp_compiler.lang.graph import ProgramGraph, build_graph
from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.constants import ATOL, RAW_TOLERANCE, RTOL  # noqa: F401 (verify's names)
from rasp_compiler.model.encoding import EMPTY, decode_indices, decode_readout, readout_numbers
from rasp_compiler.progress import ProgressBar
from rasp_compiler.verify.inputs import (
    DEFAULT_CHUNK,
    Block,
    check_seed,
    exhaustive_chunks,
    random_chunks,
    row_chunks,
)
from rasp_compiler.verify.report import Mismatch, VerificationReport, values_match

MAX_EXAMPLES = 10
PROGRESS_CHUNK = 8192  # the same with a progress bar
FORWARD_TOKENS = 1 << 17  # tokens per jitted forward call, at most (rows are a power of two)
MIN_FORWARD_BATCH = 8
SPARSE_MIN_INPUTS = 20_000  # forward="auto": fewer inputs run the dense forward
EVALUATION_CELLS = 1 << 22  # batch x length x length per batched evaluation, at most
NO_COLUMN = -3  # an expected value the readout has no column for: nothing decodes to it


def verify(
    program: rasp.SOp,
    model,
    *,
    exhaustive_up_to: int | None = None,
    samples: int | None = None,
    inputs: Iterable[Sequence] | None = None,
    seed: int = 0,
    chunk: int | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
    progress: bool = False,
    backend: str = "jax",
    forward: str = "auto",
    strict: bool = False,
    raw_tolerance: float = RAW_TOLERANCE,
) -> VerificationReport:
    """Compare `model` with the evaluator on the chosen inputs, `chunk` inputs at a time
    (default DEFAULT_CHUNK, or PROGRESS_CHUNK with a progress bar).

    Inputs are generated lazily, so exhaustive runs over millions of inputs stay
    in constant memory; each forward batch is sharded over every JAX device. With
    `progress=True` a progress bar is drawn on stderr.

    `forward` (backend "jax"): "sparse" runs the model's forward on its non-zero
    weights alone (sparse_forward.py: planned from `model.params` as they are, the
    same function up to float summation order), "dense" the model's own dense
    forward; "auto" (default) the sparse one for SPARSE_MIN_INPUTS inputs or more,
    where its longer XLA compilation pays for itself.

    `strict=True` also reads the output's raw readout columns: a categorical position
    whose columns are farther than `raw_tolerance` from the exact one-hot of the
    expected value (all zero for None) fails, even where it decodes to the right value
    (the decoder accepts up to 0.1); the report gives the worst raw deviation. Numerical
    outputs are compared raw always (atol, rtol). Needs a CompiledModel.
    """
    chunk = _check_options(model, exhaustive_up_to, samples, inputs, chunk, rtol, atol,
                           progress, forward, strict, raw_tolerance)
    seed = check_seed(seed)
    streams, total = _input_streams(model, exhaustive_up_to, samples, inputs, seed, chunk)
    sparse = forward == "sparse" or (forward == "auto" and total >= SPARSE_MIN_INPUTS)
    checker = _Checker(build_graph(program), model, rtol, atol, backend,
                       forward_batch=_forward_batch(total, chunk, model.max_seq_len),
                       sparse=sparse and backend == "jax",
                       raw_tolerance=float(raw_tolerance) if strict else None)
    bar = ProgressBar(total) if progress else None
    started = time.perf_counter()
    try:
        # One chunk ahead: chunk k + 1 is drawn and its forward queued before chunk k is
        # evaluated, so the forward thread never waits for this one.
        def finish(queued) -> None:
            checker.finish(queued)
            if bar:
                bar.advance(sum(len(b.order) for b in queued[0]), checker.mismatch_count)

        pending = None
        for blocks in itertools.chain.from_iterable(streams):
            queued = checker.start(blocks)
            if pending is not None:
                finish(pending)
            pending = queued
        if pending is not None:
            finish(pending)
    finally:
        checker.close()
        if bar:  # also on Ctrl-C: what is printed next starts on a line of its own
            bar.close()
    return checker.report(time.perf_counter() - started)


def _check_options(model, exhaustive_up_to, samples, inputs, chunk, rtol, atol, progress,
                   forward, strict, raw_tolerance) -> int:
    """Refuse bad options before any work, each by name; the chunk size to use."""
    if not isinstance(strict, bool):
        raise InvalidProgramError(f"strict must be True or False, got {strict!r}")
    if strict and not (isinstance(raw_tolerance, Real) and not isinstance(raw_tolerance, bool)
                       and 0 < raw_tolerance < 1):
        raise InvalidProgramError(
            f"raw_tolerance must be a number between 0 and 1 (the largest deviation of a "
            f"one-hot column from 0 or 1), got {raw_tolerance!r}")
    if strict and not (hasattr(model, "runtime") and hasattr(model, "_readout")):
        raise InvalidProgramError(
            f"strict=True reads the raw readout columns of a CompiledModel; this "
            f"{type(model).__name__} gives only decoded outputs")
    if forward not in ("auto", "sparse", "dense"):
        raise InvalidProgramError(f"forward must be 'auto', 'sparse' or 'dense', got {forward!r}")
    if exhaustive_up_to is None and samples is None and inputs is None:
        raise InvalidProgramError("say what to check: exhaustive_up_to=, samples= or inputs=")
    if chunk is None:  # a progress bar moves at least every PROGRESS_CHUNK inputs
        chunk = PROGRESS_CHUNK if progress else DEFAULT_CHUNK
    for name, value in (("chunk", chunk), ("samples", samples),
                        ("exhaustive_up_to", exhaustive_up_to)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):  # 0 or -5 used to check nothing, silently
            raise InvalidProgramError(f"{name} must be a positive int, got {value!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
                or value < 0:
            raise InvalidProgramError(f"{name} must be a finite number >= 0, got {value!r}")
    return chunk


def _input_streams(model, exhaustive_up_to, samples, inputs, seed: int,
                   chunk: int) -> tuple[list[Iterator[list[Block]]], int]:
    """The chosen inputs as lazy streams of same-length blocks, in order (exhaustive, then
    random samples, then the given inputs), and how many there are."""
    vocab_size = len(model.vocab)
    streams: list[Iterator[list[Block]]] = []
    total = 0
    if exhaustive_up_to is not None:
        if exhaustive_up_to > model.max_seq_len:
            raise InvalidProgramError(
                f"exhaustive_up_to={exhaustive_up_to} exceeds the model's max_seq_len "
                f"{model.max_seq_len}"
            )
        count = sum(vocab_size ** n for n in range(1, exhaustive_up_to + 1))
        streams.append(exhaustive_chunks(vocab_size, exhaustive_up_to, chunk, total))
        total += count
    if samples is not None:
        streams.append(random_chunks(vocab_size, model.max_seq_len, samples, seed, chunk,
                                      total))
        total += samples
    if inputs is not None:
        rows = _encode(model, [list(xs) for xs in inputs])
        streams.append(row_chunks(rows, chunk, total))
        total += len(rows)
    return streams, total


def _encode(model, inputs: list[list]) -> list[list[int]]:
    """Token ids of `inputs`: the model's own encoder, or (a model without one) each token
    looked up as itself in `model.vocab` (identity.py)."""
    if hasattr(model, "encode"):
        return model.encode(inputs)
    index = {identity_key(token): i for i, token in enumerate(model.vocab)}
    rows = []
    for b, xs in enumerate(inputs):
        try:
            rows.append([index[identity_key(token)] for token in xs])
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"input {b} ({xs!r}) holds a token that is not in the vocab {list(model.vocab)}"
            ) from None
    return rows


def _forward_batch(total: int, chunk: int, max_seq_len: int) -> int:
    """Rows per jitted forward call: a power of two holding the chunk (or every input,
    if fewer), at most FORWARD_TOKENS tokens; fixed for the run so each length bucket
    compiles one shape."""
    cap = 1 << max(0, (FORWARD_TOKENS // (max_seq_len + 1)).bit_length() - 1)
    wanted = 1 << max(0, math.ceil(math.log2(max(min(total, chunk), 1))))
    return max(MIN_FORWARD_BATCH, min(cap, wanted))


class _Checker:
    """Runs the model and the batched evaluator on blocks of inputs and keeps the tally."""

    def __init__(self, graph: ProgramGraph, model, rtol: float, atol: float, backend: str,
                 forward_batch: int, sparse: bool = False, raw_tolerance: float | None = None):
        self.graph = graph
        self.raw_tolerance = raw_tolerance  # None: not strict
        self.max_raw = 0.0
        self.raw_excess = 0
        self.worst_raw: tuple | None = None  # (deviation, order, tokens, position, expected)
        self.model = model
        self.rtol, self.atol = rtol, atol
        self.backend = backend
        self.forward_batch = forward_batch
        self.categorical = rasp.is_categorical(graph.output_expr)
        self.causal = bool(getattr(model, "causal", False))
        # A CompiledModel is read on arrays; any other object with `run` (a wrapped or
        # converted model) through its decoded outputs, position by position.
        self.arrays = hasattr(model, "runtime") and hasattr(model, "_readout")
        self.readout = model._readout(model.output) if self.arrays else None
        self.readout_keys = {}
        for i, value in enumerate(self.readout.values if self.arrays else ()):
            self.readout_keys.setdefault(identity_key(value), i)
        # Planned once from the weights as they are for this run (None: the dense forward).
        self.sparse_forward = model.runtime.sparse_jit(model.params, self.readout) \
            if sparse and self.arrays else None
        self.checked = self.positions = self.undefined = self.mismatch_count = 0
        self.max_error = 0.0
        self.examples: list[tuple[int, int, Mismatch]] = []  # (order, position, mismatch)
        self.invariance: tuple | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-forward")

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def start(self, blocks: list[Block]):
        """Queue the model's forward on these blocks (its own thread: XLA releases the
        GIL; on a CPU it may execute a call in the thread that dispatches it). `finish`
        evaluates and compares them; starting the next chunk first keeps the forward
        busy while this thread evaluates."""
        if not self.arrays:
            return blocks, None
        return blocks, self.pool.submit(
            self.model.runtime.readout_columns, self.model.params,
            [block.ids for block in blocks], self.readout, backend=self.backend,
            batch=self.forward_batch, sparse_forward=self.sparse_forward)

    def finish(self, queued) -> None:
        blocks, forward = queued
        if forward is None:
            for block in blocks:
                self._check_decoded(block)
            return
        parts = []
        for i, block in enumerate(blocks):
            n = block.ids.shape[1]
            step = max(1, EVALUATION_CELLS // (n * n))
            for start in range(0, len(block.ids), step):
                part = Block(block.ids[start: start + step], block.order[start: start + step])
                expected = evaluate_batch(self.graph, part.ids, self.model.vocab,
                                          causal=self.causal)
                parts.append((i, start, part, expected))
        columns = forward.result()
        first_difference = None
        for i, start, part, expected in parts:
            found = self._compare(part, expected, columns[i][start: start + len(part.ids)])
            if found is not None and (first_difference is None or found[0] < first_difference[0]):
                first_difference = found
        if first_difference is not None and self.invariance is None:
            self.invariance = first_difference[1]

    def _check_decoded(self, block: Block) -> None:
        """A model without a Runtime: its `run` outputs against the batched evaluator."""
        vocab = self.model.vocab
        outputs = self.model.run([[vocab[i] for i in row] for row in block.ids.tolist()],
                                 backend=self.backend)
        expected = evaluate_batch(self.graph, block.ids, vocab, causal=self.causal)
        wanted = expected.lists(self.graph.output)
        self.undefined += int(expected.undefined.sum())
        for row, (got_row, want_row) in enumerate(zip(outputs, wanted)):
            if expected.undefined[row]:
                continue
            self.checked += 1
            for position, (got, want) in enumerate(zip(got_row, want_row)):
                self.positions += 1
                if isinstance(want, Real) and not isinstance(want, bool) and isinstance(got, Real):
                    self.max_error = max(self.max_error, abs(float(got) - float(want)))
                if not values_match(got, want, self.rtol, self.atol, self.categorical):
                    self.mismatch_count += 1
                    self.examples.append((int(block.order[row]), position,
                                          Mismatch(expected.tokens(row), position, want, got)))
        self.examples.sort(key=lambda e: (e[0], e[1]))
        del self.examples[MAX_EXAMPLES:]
        if self.causal and self.invariance is None:
            found = first_causal_difference(self.graph, block.ids, vocab, block.order,
                                            masked=expected)
            self.invariance = found[1] if found is not None else None

    def _compare(self, block: Block, expected, columns: np.ndarray):
        """Compare one block; returns (order, counterexample) of its first causal
        difference when one is still being looked for."""
        defined = ~expected.undefined
        n = block.ids.shape[1]
        self.undefined += int(expected.undefined.sum())
        self.checked += int(defined.sum())
        self.positions += int(defined.sum()) * n
        output = expected.values[self.graph.output]
        if self.readout.numerical:
            matches = self._numerical_matches(output, columns, defined)
            if self.raw_tolerance is not None:
                self.max_raw = max(self.max_raw, self.max_error)
        else:
            matches = self._categorical_matches(output, columns, block, expected, defined)
        wrong = ~matches & defined[:, None]
        count = int(wrong.sum())
        if count:
            self.mismatch_count += count
            rows, positions = np.nonzero(wrong)
            for row, position in zip(rows[:MAX_EXAMPLES].tolist(), positions[:MAX_EXAMPLES].tolist()):
                got = decode_readout(self.readout, columns[row])[position]
                want = expected.row_value(self.graph.output, row, position)
                self.examples.append((int(block.order[row]), position,
                                      Mismatch(expected.tokens(row), position, want, got)))
            self.examples.sort(key=lambda e: (e[0], e[1]))
            del self.examples[MAX_EXAMPLES:]
        if self.causal and self.invariance is None:
            return first_causal_difference(self.graph, block.ids, self.model.vocab, block.order,
                                           masked=expected)
        return None

    def _categorical_matches(self, output, columns: np.ndarray, block: Block, expected,
                             defined: np.ndarray) -> np.ndarray:
        """bool [B, n]: the decoded value is the expected one (the same value: identity).
        Strict: also the raw columns' largest deviation from the expected one-hot."""
        got = decode_indices(self.readout, columns)
        coded = as_coded(output)
        wanted = np.array([EMPTY if value is None else self._column_of(value)
                           for value in coded.table], dtype=np.int64)
        want = wanted[coded.codes]
        if self.raw_tolerance is not None:
            self._raw_check(columns, want, block, expected, defined)
        return got == want

    def _raw_check(self, columns: np.ndarray, want: np.ndarray, block: Block, expected,
                   defined: np.ndarray) -> None:
        """strict: |raw column - exact one-hot of the expected value| per position [B, n]
        (an expected value with no column: its missing 1, at least)."""
        k = columns.shape[-1]
        exact = (np.arange(k) == want[..., None]).astype(np.float64)
        with np.errstate(invalid="ignore"):
            deviation = (np.abs(columns.astype(np.float64) - exact).max(axis=-1) if k
                         else np.zeros(want.shape))
        deviation = np.where(want == NO_COLUMN, np.maximum(deviation, 1.0), deviation)
        deviation = np.where(np.isnan(deviation), np.inf, deviation)
        deviation = np.where(defined[:, None], deviation, 0.0)
        self.raw_excess += int((deviation > self.raw_tolerance).sum())
        worst = float(deviation.max()) if deviation.size else 0.0
        if worst > self.max_raw or (self.worst_raw is None and worst > 0):
            row, position = np.unravel_index(int(np.argmax(deviation)), deviation.shape)
            self.max_raw = max(self.max_raw, worst)
            self.worst_raw = (worst, expected.tokens(int(row)), int(position),
                              expected.row_value(self.graph.output, int(row), int(position)))

    def _column_of(self, value) -> int:
        try:
            return self.readout_keys.get(identity_key(value), NO_COLUMN)
        except TypeError:  # unhashable: no decoded value is it
            return NO_COLUMN

    def _numerical_matches(self, output, columns: np.ndarray, defined: np.ndarray) -> np.ndarray:
        got = readout_numbers(self.readout, columns)
        if isinstance(output, Numbers):
            with np.errstate(invalid="ignore", over="ignore"):
                error = np.abs(got - output.values)
                matches = ~output.none & (error <= self.atol + self.rtol * np.abs(output.values))
                counted = error[defined[:, None] & ~output.none]
                counted = counted[~np.isnan(counted)]
            if counted.size:
                self.max_error = max(self.max_error, float(counted.max()))
            return matches
        # Values that are not all floats (the compiler refuses such programs): one by one.
        objects = output.objects()
        matches = np.zeros(objects.shape, dtype=bool)
        for b, position in np.argwhere(np.broadcast_to(defined[:, None], objects.shape)).tolist():
            value, number = objects[b, position], float(got[b, position])
            if isinstance(value, Real) and not isinstance(value, bool):
                self.max_error = max(self.max_error, abs(number - float(value)))
            matches[b, position] = values_match(number, value, self.rtol, self.atol)
        return matches

    def report(self, seconds: float) -> VerificationReport:
        import jax

        return VerificationReport(
            inputs_checked=self.checked,
            positions_checked=self.positions,
            undefined=self.undefined,
            mismatch_count=self.mismatch_count,
            mismatches=tuple(m for _, _, m in self.examples),
            max_numerical_error=self.max_error,
            seconds=seconds,
            devices=jax.device_count() if self.backend == "jax" else 1,
            causal=self.causal,
            invariance_counterexample=self.invariance,
            strict=self.raw_tolerance is not None,
            raw_tolerance=RAW_TOLERANCE if self.raw_tolerance is None else self.raw_tolerance,
            max_raw_deviation=self.max_raw,
            raw_excess_count=self.raw_excess,
            worst_raw=None if self.worst_raw is None else self.worst_raw[1:],
            numerical_output=bool(self.arrays and self.readout.numerical),
        )
