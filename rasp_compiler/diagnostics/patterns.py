"""The attention pattern check: every head's pattern against the exact normalised selector
matrix from the evaluator (BOS column included), with the deviation, the logit margin and
the BOS leak. Axis names: b input, h head, q query position, k key position (0 is BOS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rasp_compiler.diagnostics.evaluation import run_and_evaluate, values_of
from rasp_compiler.lang.identity import ValueMap
from rasp_compiler.model.hooks import hook
from rasp_compiler.model.records import CompilationRecord, require_compilation

DEFAULT_PATTERN_TOLERANCE = 1e-3


@dataclass(frozen=True)
class HeadCheck:
    head: str  # L{layer}H{index}
    label: str
    selector: str
    max_deviation: float
    min_margin: float  # smallest logit gap between intended and other keys
    max_bos_leak: float  # largest BOS weight where BOS should get none
    passed: bool
    worst_input: tuple | None
    worst_query: int | None  # 1-based token position (0 = BOS)


@dataclass(frozen=True)
class PatternReport:
    tolerance: float
    heads: tuple[HeadCheck, ...]

    @property
    def passed(self) -> bool:
        return all(h.passed for h in self.heads)

    def failed(self) -> list[HeadCheck]:
        return [h for h in self.heads if not h.passed]

    def __str__(self) -> str:
        lines = [f"attention pattern check (tolerance {self.tolerance:g}): "
                 f"{'PASS' if self.passed else 'FAIL'}"]
        for h in self.heads:
            verdict = "pass" if h.passed else (
                f"FAIL at input {list(h.worst_input)}, query position {h.worst_query}")
            lines.append(f"  {h.head} {h.label:<18} max dev {h.max_deviation:.2e}  margin "
                         f"{h.min_margin:7.2f}  BOS leak {h.max_bos_leak:.1e}  {verdict}")
        return "\n".join(lines)


def ideal_pattern(kind: str, matrix: np.ndarray, length: int,
                  bos_share: float = 1.0) -> np.ndarray:
    """The exact attention pattern [T, T] a head implementing `matrix` ([n, n]) should have.

    Row 0 (BOS query) attends to BOS. An Aggregate spreads evenly over the selected
    keys, or puts everything on BOS when none is selected; a SelectorWidth gives BOS
    `bos_share` times what each selected key gets (`AttentionOp.bos_share`, widths.py).
    Padding positions stay zero.
    """
    n = matrix.shape[0]
    pattern = np.zeros((length, length))
    pattern[0, 0] = 1.0
    for q in range(n):
        selected = np.flatnonzero(matrix[q]) + 1
        if kind == "width":
            pattern[q + 1, 0] = bos_share / (len(selected) + bos_share)
            pattern[q + 1, selected] = 1.0 / (len(selected) + bos_share)
        elif len(selected):
            pattern[q + 1, selected] = 1.0 / len(selected)
        else:
            pattern[q + 1, 0] = 1.0
    return pattern


def head_matrix(record: CompilationRecord, label: str, evaluation) -> np.ndarray:
    """The exact boolean selection [n, n] of head `label` on one evaluated input."""
    op = record.ops.attention[label]
    n = len(evaluation.inputs)
    whole = (op.selector in evaluation.values
             and label in (op.source, f"{op.source}.attn"))
    if whole:
        return np.array(evaluation[op.selector], dtype=bool).reshape(n, n)
    matrix = np.ones((n, n), dtype=bool)
    for atom in op.atoms:
        q_index = ValueMap((v, i) for i, v in enumerate(atom.query_values))  # 0 is not 0.0
        k_index = ValueMap((v, i) for i, v in enumerate(atom.key_values))
        queries = values_of(atom.query, evaluation)
        keys = values_of(atom.key, evaluation)
        for q in range(n):
            for k in range(n):
                i, j = q_index.get(queries[q]), k_index.get(keys[k])
                matrix[q, k] &= i is not None and j is not None and bool(atom.relation[i, j])
    return matrix


@dataclass(frozen=True)
class PatternStats:
    """How one head's pattern on one input compares with its ideal pattern."""

    max_deviation: float
    worst_query: int  # the query row (0 = BOS) with the largest deviation
    min_margin: float  # inf where every key of every row is intended
    max_bos_leak: float


def pattern_stats(ideal: np.ndarray, got: np.ndarray, logits: np.ndarray) -> PatternStats:
    """Deviation, logit margin (intended keys against the rest) and BOS leak (BOS weight
    where the ideal gives BOS none) of one head on one input; all arrays [T, T]."""
    deviation = np.abs(got - ideal)
    worst_query = int(np.unravel_index(np.argmax(deviation), deviation.shape)[0])
    margin, leak = np.inf, 0.0
    for q in range(ideal.shape[0]):
        intended = ideal[q] > 0
        if (~intended).any():
            margin = min(margin, float(logits[q][intended].min() - logits[q][~intended].max()))
        if ideal[q, 0] == 0:
            leak = max(leak, float(got[q, 0]))
    return PatternStats(float(deviation.max()), worst_query, margin, leak)


def check_patterns(model, inputs: Sequence[Sequence], tolerance: float = DEFAULT_PATTERN_TOLERANCE,
                   *, backend: str = "jax") -> PatternReport:
    """Compare every head's attention with the exact normalised selector matrix
    (the model run by `backend`, "jax" or "numpy")."""
    record = require_compilation(model, "check_patterns")
    inputs, cache, evaluations = run_and_evaluate(model, record, inputs, backend)
    checks = []
    for layer in model.info.layers:
        patterns = cache[hook(layer.index, "attn.hook_pattern")]
        scores = cache[hook(layer.index, "attn.hook_attn_scores")]
        for head in layer.heads:
            worst = (0.0, None, None)
            margin, leak = np.inf, 0.0
            for b, (xs, evaluation) in enumerate(zip(inputs, evaluations)):
                if evaluation is None:
                    continue
                length = len(xs) + 1
                matrix = head_matrix(record, head.label, evaluation)
                ideal = ideal_pattern(head.kind, matrix, length,
                                      record.ops.attention[head.label].bos_share)
                stats = pattern_stats(ideal,
                                      patterns[b, head.index, :length, :length],
                                      scores[b, head.index, :length, :length])
                if stats.max_deviation > worst[0]:
                    worst = (stats.max_deviation, tuple(xs), stats.worst_query)
                margin = min(margin, stats.min_margin)
                leak = max(leak, stats.max_bos_leak)
            checks.append(HeadCheck(
                head=head.name, label=head.label, selector=head.selector,
                max_deviation=worst[0], min_margin=margin, max_bos_leak=leak,
                passed=worst[0] <= tolerance,
                worst_input=worst[1] if worst[0] > tolerance else None,
                worst_query=worst[2] if worst[0] > tolerance else None,
            ))
    return PatternReport(tolerance, tuple(checks))
