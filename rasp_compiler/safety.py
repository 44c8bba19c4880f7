"""Can a categorical Aggregate mix values? Prove it cannot, or find an input where it does.

A head copying a categorical value averages the one-hots of every selected key;
if those keys hold different values the output is a blend no decoder can read.
tracr compiles such programs silently. Here each categorical Aggregate is:

- proven safe when one of its selector's atoms selects, for every query value,
  at most one key value, and either the keys are `indices` (so at most one
  position) or the values are read from the key SOp itself (so every selected
  position holds the same value); or when it can only ever output one value;
- unsafe when the evaluator finds an input where it mixes values (exhaustive
  over short inputs, then random ones): the compiler refuses, showing that input;
- unproven otherwise: compiled with a warning, and the decoder flags any
  position whose output is not a clean one-hot.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from rasp_compiler import rasp
from rasp_compiler.errors import EvaluationError
from rasp_compiler.evaluator import evaluate_all
from rasp_compiler.residual import BOS
from rasp_compiler.rewrite import AttentionOp, OpGraph

DEFAULT_SEARCH_BUDGET = 400  # inputs tried at most
SEARCH_COST_LIMIT = 150_000  # and at most this sum of squared lengths (evaluation is quadratic)


@dataclass(frozen=True)
class AggregateCheck:
    label: str
    status: str  # "proven", "unsafe" or "unproven"
    reason: str
    counterexample: tuple | None = None
    position: int | None = None


def check_categorical_aggregates(
    ops: OpGraph, live: frozenset[str], *, budget: int = DEFAULT_SEARCH_BUDGET, seed: int = 0,
    causal: bool = False,
) -> list[AggregateCheck]:
    """One verdict per live categorical Aggregate, in program order.

    For a causal model the search evaluates the causal meaning (the proofs below
    only use facts that masking keys cannot break).
    """
    checks: dict[str, AggregateCheck] = {}
    unproven: list[str] = []
    for label in ops.order:
        op = ops.attention.get(label)
        if op is None or label not in live or op.kind != "aggregate":
            continue
        if op.encoding is not rasp.Encoding.CATEGORICAL:
            continue
        reason = _proof(op)
        if reason:
            checks[label] = AggregateCheck(label, "proven", reason)
        else:
            unproven.append(label)
    if unproven:
        found, tried = _search(ops, set(unproven), budget, seed, causal)
        for label in unproven:
            if label in found:
                xs, position = found[label]
                checks[label] = AggregateCheck(
                    label, "unsafe", f"mixes values at query position {position} of input {list(xs)}",
                    tuple(xs), position,
                )
            else:
                checks[label] = AggregateCheck(
                    label, "unproven",
                    f"no proof that its selector picks one value; {tried} inputs showed no mixing",
                )
    return [checks[label] for label in ops.order if label in checks]


def _proof(op: AttentionOp) -> str:
    outputs = {out for read, out, _ in op.ov if read != BOS}
    if len(outputs) <= 1:
        return "it can output only one value"
    sources = {read.sop for read, _, _ in op.ov if read != BOS}
    for atom in op.atoms:
        functional = bool((atom.relation.sum(axis=1) <= 1).all())
        if not functional:
            continue
        if atom.key == "indices":
            return f"{atom.select} selects at most one position per query"
        if sources == {atom.key}:
            return f"{atom.select} selects only positions holding one value of {atom.key}"
    return ""


def _search(ops: OpGraph, labels: set[str], budget: int, seed: int,
            causal: bool) -> tuple[dict, int]:
    """Inputs on which the evaluator finds these aggregates mixing values."""
    found: dict[str, tuple[tuple, int]] = {}
    tried = cost = 0
    for xs in _inputs(ops.vocab, ops.max_seq_len, budget, seed):
        cost += len(xs) ** 2
        if cost > SEARCH_COST_LIMIT:
            break
        tried += 1
        try:
            evaluate_all(ops.graph, xs, causal=causal)
        except EvaluationError as error:
            if error.label in labels and error.label not in found:
                found[error.label] = (tuple(xs), error.position)
                if len(found) == len(labels):
                    break
    return found, tried


def _inputs(vocab: tuple, max_seq_len: int, budget: int, seed: int):
    """Every input up to the length that fits half the budget, then random longer ones."""
    used = 0
    for n in range(1, max_seq_len + 1):
        count = len(vocab) ** n
        if used + count > budget // 2:
            break
        for xs in itertools.product(vocab, repeat=n):
            yield xs
        used += count
    rng = random.Random(seed)
    for _ in range(budget - used):
        n = rng.randint(1, max_seq_len)
        yield tuple(rng.choice(vocab) for _ in range(n))
