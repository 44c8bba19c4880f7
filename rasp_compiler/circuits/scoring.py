"""Scoring a discovery method's per-edge scores against a true circuit.

`score_circuit(edge_scores, truth)`: the edges of `truth` are the positives, every
other candidate edge of the model (the complete graph at the truth's granularity) a
negative, as auto-circuit and ACDC score. Keys are our edges (`Edge`, a
(source, destination, input) tuple or `source->destination[input]`), or auto-circuit's
edge names (`Resid Start->A1.0.V`) for a head-granularity truth, which is then taken
over auto-circuit's graph of the TransformerLens export (embed and pos_embed merged
into `Resid Start`, every layer padded to the widest head count, with an MLP). An edge
the dict leaves out scores `missing` (0). A higher score means "more likely in the
circuit". With `among="structural"` only the truth's structural edges are scored: a
method must then tell the functional edges from the other edges the weights allow
(every method scores an edge outside the structural circuit exactly 0, since its patch
adds exactly 0, so the complete graph rewards that for free).

ROC AUC is the Mann-Whitney probability that a random positive outscores a random
negative (ties count one half): 1 for perfect scores, 0 for reversed, 0.5 for constant.
Average precision is the sum over score thresholds (from the highest) of the recall
gained times the precision there. Precision, recall and F1 are those of "score >=
threshold", at the threshold with the best F1 and at a given one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from rasp_compiler.circuits.network import Edge, parse_edge
from rasp_compiler.diagnostics.pictures import _pyplot
from rasp_compiler.errors import InvalidInputError, SaveError, UnknownNameError


@dataclass(frozen=True)
class CircuitScore:
    """How well per-edge scores find a circuit (see the module doc); `roc` holds the ROC
    curve's points (false positive rate, true positive rate, threshold), from (0, 0)."""

    roc_auc: float
    average_precision: float
    best_threshold: float
    best_precision: float
    best_recall: float
    best_f1: float
    positives: int
    negatives: int
    roc: tuple[tuple[float, float, float], ...]
    names: str  # "ours" or "auto-circuit"
    threshold: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None

    def picture(self, path: str | Path, title: str | None = None) -> Path:
        """A PNG (or SVG, by suffix) of the ROC curve (needs matplotlib: the plots extra)."""

        plt = _pyplot()
        path = Path(path)
        figure, axes = plt.subplots(figsize=(4, 4))
        try:
            fpr = [p[0] for p in self.roc]
            tpr = [p[1] for p in self.roc]
            axes.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
            axes.plot(fpr, tpr, marker="o", markersize=3, drawstyle="default")
            axes.set_xlim(-0.02, 1.02)
            axes.set_ylim(-0.02, 1.02)
            axes.set_xlabel("false positive rate")
            axes.set_ylabel("true positive rate")
            axes.set_title(title or f"ROC AUC {self.roc_auc:.3f} "
                           f"({self.positives} in circuit, {self.negatives} not)", fontsize=9)
            figure.tight_layout()
            try:
                figure.savefig(path)
            except OSError as error:
                raise SaveError(f"cannot write the ROC picture to {path}: {error}") from None
        finally:
            plt.close(figure)
        return path

    def __str__(self) -> str:
        text = (f"ROC AUC {self.roc_auc:.3f}, average precision {self.average_precision:.3f}; "
                f"best F1 {self.best_f1:.3f} at threshold {self.best_threshold:.4g} "
                f"(precision {self.best_precision:.3f}, recall {self.best_recall:.3f}); "
                f"{self.positives} edges in the circuit, {self.negatives} not")
        if self.threshold is not None:
            text += (f"; at threshold {self.threshold:.4g}: precision {self.precision:.3f}, "
                     f"recall {self.recall:.3f}, F1 {self.f1:.3f}")
        return text


def score_circuit(edge_scores: Mapping, truth, *, threshold: float | None = None,
                  missing: float = 0.0, among: str = "all") -> CircuitScore:
    """Score `edge_scores` (edge -> number) against the circuit `truth`, over every
    candidate edge (`among="all"`) or the structural circuit's (`"structural"`); see the
    module doc."""
    if not isinstance(edge_scores, Mapping) or not edge_scores:
        raise InvalidInputError(
            f"edge_scores must be a non-empty mapping from edges to numbers, got "
            f"{type(edge_scores).__name__}"
        )
    if among not in ("all", "structural"):
        raise InvalidInputError(f"among must be 'all' (every candidate edge) or 'structural' "
                                f"(the structural circuit's edges), got {among!r}")
    names, universe, positives = _universe(edge_scores, truth)
    if among == "structural":
        kept = (set(truth.structural_edges) if names == "ours" else
                {truth.auto_circuit_names()[edge] for edge in truth.structural_edges})
        universe = [edge for edge in universe if edge in kept]
    scores = {edge: float(missing) for edge in universe}
    for key, value in edge_scores.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise InvalidInputError(f"the score of {key!s} is {value!r}; scores must be finite numbers")
        edge = _resolve(key, names, truth)
        if edge in scores:
            scores[edge] = number
    labels = np.array([edge in positives for edge in universe], bool)
    values = np.array([scores[edge] for edge in universe], np.float64)
    return score_labels(labels, values, names=names, threshold=threshold)


def score_labels(labels, scores, *, names: str = "ours", threshold: float | None = None
                 ) -> CircuitScore:
    """The scores of `scores` against the Boolean `labels` (one per edge)."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, np.float64)
    p, n = int(labels.sum()), int((~labels).sum())
    distinct = np.unique(scores)[::-1]  # thresholds, highest first
    tp = np.array([int((labels & (scores >= t)).sum()) for t in distinct])
    fp = np.array([int((~labels & (scores >= t)).sum()) for t in distinct])
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / p if p else np.zeros(len(distinct))
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(
        precision + recall, 1e-300), 0.0)
    best = int(np.argmax(f1)) if len(f1) else 0
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision)) if p else math.nan
    roc = [(0.0, 0.0, math.inf)] + [(fp[i] / n if n else 0.0, tp[i] / p if p else 0.0,
                                     float(distinct[i])) for i in range(len(distinct))]
    result = dict(roc_auc=roc_auc(labels, scores), average_precision=ap,
                  best_threshold=float(distinct[best]), best_precision=float(precision[best]),
                  best_recall=float(recall[best]), best_f1=float(f1[best]), positives=p,
                  negatives=n, roc=tuple((float(a), float(b), c) for a, b, c in roc),
                  names=names)
    if threshold is not None:
        predicted = scores >= float(threshold)
        hits = int((predicted & labels).sum())
        prec = hits / int(predicted.sum()) if predicted.any() else 0.0
        rec = hits / p if p else 0.0
        result.update(threshold=float(threshold), precision=prec, recall=rec,
                      f1=2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return CircuitScore(**result)


def roc_auc(labels, scores) -> float:
    """P(a random positive outscores a random negative), ties one half; nan without both."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, np.float64)
    p, n = int(labels.sum()), int((~labels).sum())
    if not p or not n:
        return math.nan
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - p * (p + 1) / 2) / (p * n))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start: stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def _universe(edge_scores: Mapping, truth):
    """Which names the keys use, the candidate edges in those names, and the positives."""
    first = next(iter(edge_scores))
    ours = _our_edge(first, truth) is not None
    if ours or truth.granularity != "head":
        return "ours", list(truth.candidates), set(truth.edges)
    universe = truth.auto_circuit_candidates()
    return "auto-circuit", universe, truth.auto_circuit_edges()


def _our_edge(key, truth) -> Edge | None:
    edge = key if isinstance(key, Edge) else (
        Edge(*key) if isinstance(key, tuple) and len(key) == 3 else parse_edge(key))
    return edge if edge is not None and edge in truth._candidate_set else None


def _resolve(key, names: str, truth):
    if names == "ours":
        edge = _our_edge(key, truth)
        if edge is not None:
            return edge
    elif isinstance(key, str) and key in set(truth.auto_circuit_candidates()):
        return key
    example = truth.candidates[0].name if truth.candidates else "embed->output[in]"
    also = (" or, every key alike, auto-circuit's names (e.g. 'Resid Start->Resid End')"
            if truth.granularity == "head" else "")
    raise UnknownNameError(
        f"edge score key {key!r} names no edge of this model ({names} names, "
        f"{truth.granularity} granularity); keys are our edges, e.g. {example!r}{also}"
    )
