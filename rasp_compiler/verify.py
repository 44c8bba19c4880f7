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
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from dataclasses import dataclass
from numbers import Real
from typing import Any, Iterable, Iterator, Sequence

from rasp_compiler import rasp
from rasp_compiler.errors import EvaluationError, InvalidProgramError
from rasp_compiler.evaluator import causal_invariance, evaluate_all
from rasp_compiler.graph import build_graph
from rasp_compiler.identity import same_value

RTOL = 1e-4
ATOL = 1e-4  # absolute floor: within 1e-4, relative (rtol) above magnitude 1
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class Mismatch:
    tokens: tuple
    position: int
    expected: Any
    got: Any

    def __str__(self) -> str:
        return f"input {list(self.tokens)} position {self.position}: expected {self.expected!r}, got {self.got!r}"


@dataclass(frozen=True)
class VerificationReport:
    inputs_checked: int
    positions_checked: int
    undefined: int  # inputs on which the evaluator raised (no reference answer)
    mismatch_count: int
    mismatches: tuple[Mismatch, ...]  # the first few
    max_numerical_error: float
    seconds: float
    devices: int = 1  # JAX devices the batches were sharded over
    causal: bool = False  # the model is causal: compared with the causal meaning
    invariance_counterexample: tuple | None = None  # (input, position, ordinary, causal)

    @property
    def causally_invariant(self) -> bool | None:
        """Causal models: did the causal meaning equal the ordinary one on every input
        checked? None for a bidirectional model."""
        return (self.invariance_counterexample is None) if self.causal else None

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0 and self.inputs_checked > 0

    def __str__(self) -> str:
        verdict = "OK" if self.ok else f"{self.mismatch_count} MISMATCHED positions"
        lines = [
            f"{verdict}: {self.inputs_checked} inputs, {self.positions_checked} positions, "
            f"{self.undefined} undefined, max numerical error {self.max_numerical_error:.2e}, "
            f"{self.seconds:.2f}s on {self.devices} device{'s' * (self.devices != 1)}"
        ]
        lines += [f"  {m}" for m in self.mismatches]
        if self.causal:
            if self.invariance_counterexample is None:
                lines.append("causal model; causally invariant on every input checked")
            else:
                xs, position, full, masked = self.invariance_counterexample
                lines.append(f"causal model; NOT causally invariant: input {list(xs)} position "
                             f"{position}: the program gives {full!r}, the causal model "
                             f"{masked!r}")
        return "\n".join(lines)


def values_match(got: Any, expected: Any, rtol: float = RTOL, atol: float = ATOL,
                 categorical: bool = False) -> bool:
    """Equal, or numbers within atol + rtol * |expected|; a categorical output must be
    the same value (equal and of one type: identity.same_value), as it decodes exactly."""
    if categorical:
        return same_value(got, expected)
    if isinstance(expected, Real) and isinstance(got, Real) and not (
            isinstance(expected, bool) and isinstance(got, bool)):
        # numbers (a numerical SOp may hold bools: True reads back as 1.0)
        return abs(float(got) - float(expected)) <= atol + rtol * abs(float(expected))
    return bool(got == expected)


def all_inputs(vocab: Sequence, max_length: int, min_length: int = 1) -> Iterator[tuple]:
    """Every token sequence of min_length..max_length tokens, shortest first."""
    for n in range(min_length, max_length + 1):
        yield from itertools.product(vocab, repeat=n)


def random_inputs(vocab: Sequence, max_seq_len: int, count: int, seed: int = 0) -> Iterator[tuple]:
    """`count` random sequences with lengths uniform in 1..max_seq_len."""
    rng = random.Random(seed)
    vocab = list(vocab)
    for _ in range(count):
        yield tuple(rng.choice(vocab) for _ in range(rng.randint(1, max_seq_len)))


def verify(
    program: rasp.SOp,
    model,
    *,
    exhaustive_up_to: int | None = None,
    samples: int | None = None,
    inputs: Iterable[Sequence] | None = None,
    seed: int = 0,
    chunk: int = 512,
    rtol: float = RTOL,
    atol: float = ATOL,
    progress: bool = False,
    backend: str = "jax",
) -> VerificationReport:
    """Compare `model` with the evaluator on the chosen inputs, in batches of `chunk`.

    Inputs are generated lazily, so exhaustive runs over millions of inputs stay
    in constant memory; each batch is sharded over every JAX device. With
    `progress=True` a progress bar is drawn on stderr.
    """
    if exhaustive_up_to is None and samples is None and inputs is None:
        raise InvalidProgramError("say what to check: exhaustive_up_to=, samples= or inputs=")
    streams: list[Iterable[Sequence]] = []
    total: int | None = 0
    if exhaustive_up_to is not None:
        if exhaustive_up_to > model.max_seq_len:
            raise InvalidProgramError(
                f"exhaustive_up_to={exhaustive_up_to} exceeds the model's max_seq_len "
                f"{model.max_seq_len}"
            )
        streams.append(all_inputs(model.vocab, exhaustive_up_to))
        total += sum(len(model.vocab) ** n for n in range(1, exhaustive_up_to + 1))
    if samples is not None:
        streams.append(random_inputs(model.vocab, model.max_seq_len, samples, seed))
        total += samples
    if inputs is not None:
        inputs = list(inputs)
        streams.append(inputs)
        total += len(inputs)
    bar = ProgressBar(total) if progress else None
    graph = build_graph(program)
    categorical = rasp.is_categorical(graph.output_expr)
    started = time.perf_counter()
    checked = positions = undefined = mismatch_count = 0
    mismatches: list[Mismatch] = []
    max_error = 0.0
    causal = bool(getattr(model, "causal", False))
    invariance_counterexample = None
    stream = itertools.chain.from_iterable(streams)
    while True:
        batch = [tuple(xs) for xs in itertools.islice(stream, chunk)]
        if not batch:
            break
        outputs = model.run([list(xs) for xs in batch], backend=backend)
        for xs, got_row in zip(batch, outputs):
            try:
                expected_row = evaluate_all(graph, list(xs), causal=causal).output_values
            except EvaluationError:
                undefined += 1
                continue
            if causal and invariance_counterexample is None:
                invariance_counterexample = causal_invariance(graph, [list(xs)])
            checked += 1
            for position, (got, expected) in enumerate(zip(got_row, expected_row)):
                positions += 1
                if isinstance(expected, Real) and not isinstance(expected, bool) \
                        and isinstance(got, Real):
                    max_error = max(max_error, abs(float(got) - float(expected)))
                if not values_match(got, expected, rtol, atol, categorical):
                    mismatch_count += 1
                    if len(mismatches) < MAX_EXAMPLES:
                        mismatches.append(Mismatch(xs, position, expected, got))
        if bar:
            bar.advance(len(batch), mismatch_count)
    if bar:
        bar.close()
    import jax

    return VerificationReport(
        inputs_checked=checked,
        positions_checked=positions,
        undefined=undefined,
        mismatch_count=mismatch_count,
        mismatches=tuple(mismatches),
        max_numerical_error=max_error,
        seconds=time.perf_counter() - started,
        devices=jax.device_count() if backend == "jax" else 1,
        causal=causal,
        invariance_counterexample=invariance_counterexample,
    )


class ProgressBar:
    """A one-line text progress bar on stderr (no dependency)."""

    WIDTH = 30

    def __init__(self, total: int, stream=None):
        self.total = max(total, 1)
        self.done = 0
        self.started = time.perf_counter()
        self.stream = stream or sys.stderr

    def advance(self, count: int, mismatches: int = 0) -> None:
        self.done += count
        fraction = min(self.done / self.total, 1.0)
        filled = int(self.WIDTH * fraction)
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done:,}/{self.total:,} "
            f"inputs ({fraction:.0%}), {rate:,.0f}/s, {mismatches} mismatched"
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
