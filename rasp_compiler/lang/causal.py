"""Causal (decoder-only) models: is the program's meaning the same under the mask?

A causally masked model computes every SOp at position i from the tokens up to
i (the evaluator's `causal=True` mode). For some programs that is the program's
ordinary meaning (running sums, `frac_prevs`, `shift_by`); for others it is not
(`length` is i + 1, `reverse` reverses each prefix). tracr applies the mask and
leaves users to find out; here compilation searches for an input on which the
two meanings differ and records the verdict in `model.info`.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Iterator

from rasp_compiler.lang.batch_evaluator import by_length, first_causal_difference
from rasp_compiler.lang.graph import ProgramGraph

DEFAULT_INVARIANCE_BUDGET = 400  # inputs tried at most
INVARIANCE_COST_LIMIT = 150_000  # and at most this sum of squared lengths


@dataclass(frozen=True)
class InvarianceCheck:
    """Whether the causal meaning equalled the bidirectional one on every input tried."""

    invariant: bool
    inputs_tried: int
    counterexample: tuple | None = None  # (input, position, bidirectional, causal)

    def describe(self) -> str:
        if self.invariant:
            return (f"causally invariant on the {self.inputs_tried} inputs tried: the masked "
                    f"model computes the program's ordinary (bidirectional) meaning")
        xs, position, full, masked = self.counterexample
        return (f"not causally invariant: on input {list(xs)} position {position} the program "
                f"gives {full!r} but a causal model computes {masked!r} (it sees only the "
                f"first {position + 1} tokens)")


def check_invariance(graph: ProgramGraph, vocab: tuple, max_seq_len: int, *,
                     budget: int = DEFAULT_INVARIANCE_BUDGET, seed: int = 0) -> InvarianceCheck:
    """Search short inputs exhaustively, then random longer ones, for a difference: the
    first in that order, as `evaluator.causal_invariance` would find input by input (the
    batched evaluator does all at once)."""
    inputs = list(short_then_random(vocab, max_seq_len, budget, seed, INVARIANCE_COST_LIMIT))
    first = None
    for places, ids in by_length(inputs, vocab):
        found = first_causal_difference(graph, ids, vocab, places)
        if found is not None and (first is None or found[0] < first[0]):
            first = found
    if first is not None:
        return InvarianceCheck(False, first[0] + 1, first[1])
    return InvarianceCheck(True, len(inputs))


def short_then_random(vocab: tuple, max_seq_len: int, budget: int, seed: int,
                      cost_limit: int) -> Iterator[tuple]:
    """Every input up to the length that fits half the budget, then random longer ones,
    stopping when the sum of squared lengths (evaluation is quadratic) passes cost_limit."""
    cost = 0
    for xs in _unbounded(vocab, max_seq_len, budget, seed, cost_limit):
        cost += len(xs) ** 2
        if cost > cost_limit:
            return
        yield xs


def _unbounded(vocab: tuple, max_seq_len: int, budget: int, seed: int,
               cost_limit: int) -> Iterator[tuple]:
    """The inputs in search order; a random length whose square alone passes `cost_limit`
    ends them before its tokens are drawn (at max_seq_len 10^7 one such input took 5 s
    to build, only to be dropped)."""
    used = 0
    for n in range(1, max_seq_len + 1):
        count = len(vocab) ** n
        if used + count > budget // 2:
            break
        yield from itertools.product(vocab, repeat=n)
        used += count
    rng = random.Random(seed)
    for _ in range(budget - used):
        n = rng.randint(1, max_seq_len)
        if n * n > cost_limit:
            return
        yield tuple(rng.choice(vocab) for _ in range(n))
