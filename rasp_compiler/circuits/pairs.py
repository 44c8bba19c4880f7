"""The inputs a functional circuit is measured on: (clean, corrupt) pairs of one length.

Resample ablation patches a clean run with activations from a corrupted input of the
same length (so the length, and every position-only quantity, is unchanged: heads that
only count the length drop out of the functional circuit). Zero and mean ablation need
clean inputs only.

Defaults: every ordered pair of distinct same-length inputs when there are at most
EXHAUSTIVE_PAIRS of them (every input, at most EXHAUSTIVE_INPUTS, for zero and mean),
else DEFAULT_SAMPLES random pairs drawn with `seed`: a length uniform in 1..max_seq_len,
then both inputs uniform over the vocab, the corrupt one drawn again (up to 16 times)
while it equals the clean one. `samples=n` asks for n random pairs (or inputs) however
few there are in all. `PairSample.describe()` states which.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rasp_compiler.errors import InvalidInputError

ABLATIONS = ("resample", "zero", "mean")
DEFAULT_SAMPLES = 256
EXHAUSTIVE_PAIRS = 2048
EXHAUSTIVE_INPUTS = 2048
REDRAWS = 16


@dataclass(frozen=True)
class PairSample:
    """The inputs tried: `clean[i]` patched with activations of `corrupt[i]` (None for
    zero and mean ablation). `how` is "every pair", "every input", "sampled", "given",
    or "given inputs, sampled corruptions"; `seed` the random seed where one was used."""

    clean: tuple[tuple, ...]
    corrupt: tuple[tuple, ...] | None
    how: str
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.clean)

    def describe(self) -> str:
        n = len(self)
        what = "pairs" if self.corrupt is not None else "inputs"
        if self.how == "every pair":
            return f"every ordered pair of distinct same-length inputs ({n:,} pairs)"
        if self.how == "every input":
            return f"every input ({n:,})"
        if self.how == "sampled":
            kind = "same-length pairs" if self.corrupt is not None else "inputs"
            return (f"{n:,} random {kind} (lengths uniform in 1..max_seq_len, tokens uniform; "
                    f"seed {self.seed})")
        if self.how == "given inputs, sampled corruptions":
            return (f"{n:,} given inputs, each with a random same-length corrupt input "
                    f"(seed {self.seed})")
        return f"{n:,} given {what}"


def check_ablation(ablation) -> str:
    if ablation not in ABLATIONS:
        raise InvalidInputError(
            f"ablation must be one of {', '.join(map(repr, ABLATIONS))}, got {ablation!r}: "
            f"'resample' takes the source's output on a corrupted input of the same length, "
            f"'zero' sets it to 0, 'mean' to its mean over the tried inputs of that length"
        )
    return ablation


def make_pairs(model, inputs=None, corrupt=None, *, ablation: str = "resample",
               samples: int | None = None, seed: int = 0) -> PairSample:
    """The pairs (or inputs) a functional circuit or a method is measured on; see the
    module doc. `model` is the CompiledModel that encodes them (vocab, max_seq_len)."""
    check_ablation(ablation)
    for name, value, low in (("samples", samples, 1), ("seed", seed, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
    exhaustive = samples is None  # every pair (or input) allowed when there are few
    samples = DEFAULT_SAMPLES if samples is None else samples
    vocab, n_max = model.vocab, model.max_seq_len
    rng = np.random.default_rng(seed)
    if corrupt is not None and ablation != "resample":
        raise InvalidInputError(
            f"corrupt inputs are used by resample ablation only; {ablation} ablation needs "
            f"clean inputs alone (drop corrupt=, or use ablation='resample')"
        )
    if inputs is None and corrupt is not None:
        raise InvalidInputError("corrupt= needs inputs= beside it: corrupt[i] corrupts inputs[i]")
    if inputs is not None:
        clean = _checked(model, inputs, "inputs")
        if ablation != "resample":
            return PairSample(clean, None, "given")
        if corrupt is None:
            drawn = tuple(_draw_other(rng, vocab, row) for row in clean)
            return PairSample(clean, drawn, "given inputs, sampled corruptions", seed)
        bad = _checked(model, corrupt, "corrupt")
        if len(bad) != len(clean):
            raise InvalidInputError(
                f"corrupt has {len(bad)} inputs and inputs has {len(clean)}; give one corrupt "
                f"input per clean input (corrupt[i] corrupts inputs[i])"
            )
        for i, (a, b) in enumerate(zip(clean, bad)):
            if len(a) != len(b):
                raise InvalidInputError(
                    f"inputs[{i}] has {len(a)} tokens and corrupt[{i}] {len(b)}; a pair must "
                    f"have one length (patching swaps activations position by position)"
                )
        return PairSample(clean, bad, "given")
    v = len(vocab)
    if ablation != "resample":
        if exhaustive and sum(v ** n for n in range(1, n_max + 1)) <= EXHAUSTIVE_INPUTS:
            every = tuple(row for n in range(1, n_max + 1)
                          for row in itertools.product(vocab, repeat=n))
            return PairSample(every, None, "every input")
        return PairSample(tuple(_draw(rng, vocab, n_max) for _ in range(samples)), None,
                          "sampled", seed)
    if exhaustive and sum(v ** n * (v ** n - 1) for n in range(1, n_max + 1)) <= EXHAUSTIVE_PAIRS:
        clean_rows, corrupt_rows = [], []
        for n in range(1, n_max + 1):
            rows = list(itertools.product(vocab, repeat=n))
            for a, b in itertools.permutations(rows, 2):
                clean_rows.append(a)
                corrupt_rows.append(b)
        return PairSample(tuple(clean_rows), tuple(corrupt_rows), "every pair")
    clean_rows, corrupt_rows = [], []
    for _ in range(samples):
        row = _draw(rng, vocab, n_max)
        clean_rows.append(row)
        corrupt_rows.append(_draw_other(rng, vocab, row))
    return PairSample(tuple(clean_rows), tuple(corrupt_rows), "sampled", seed)


def _checked(model, rows, name: str) -> tuple[tuple, ...]:
    if isinstance(rows, np.ndarray):
        rows = rows.tolist()
    try:
        rows = [tuple(row) for row in rows]
    except TypeError:
        raise InvalidInputError(f"{name} must be a list of token sequences, got {rows!r}") from None
    if not rows:
        raise InvalidInputError(f"{name} is empty; give at least one token sequence")
    try:
        model.encode([list(row) for row in rows])
    except InvalidInputError as error:
        raise InvalidInputError(f"{name}: {error}") from None
    return tuple(rows)


def _draw(rng, vocab: Sequence, n_max: int) -> tuple:
    n = int(rng.integers(1, n_max + 1))
    return tuple(vocab[i] for i in rng.integers(len(vocab), size=n))


def _draw_other(rng, vocab: Sequence, row: tuple) -> tuple:
    """A random input of row's length, drawn again while it is the same input."""
    for _ in range(REDRAWS):
        other = tuple(vocab[i] for i in rng.integers(len(vocab), size=len(row)))
        if other != row:
            break
    return other
