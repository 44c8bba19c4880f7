"""Running a model and the evaluator side by side on the same inputs: what the pattern
check and the read-backs compare. One path, so the checks cannot disagree about inputs,
causal masking or undefined programs."""

from __future__ import annotations

from rasp_compiler.errors import EvaluationError
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.model.hooks import Slot
from rasp_compiler.model.records import CompilationRecord


def values_of(label: str, evaluation) -> list:
    """An SOp's values on an evaluated input (the inputs even when the program never names them)."""
    if label in evaluation.values:
        return evaluation[label]
    if label == "tokens":
        return list(evaluation.inputs)
    if label == "indices":
        return list(range(len(evaluation.inputs)))
    return [None] * len(evaluation.inputs)


def run_and_evaluate(model, record: CompilationRecord, inputs, backend: str):
    """The inputs as lists, the model's activation cache, and the evaluator's values
    (None for an input on which the program is undefined)."""
    inputs = [list(x) for x in inputs]
    _, cache = model.run_with_cache(inputs, backend=backend)
    evaluations = []
    for xs in inputs:
        try:
            evaluations.append(evaluate_all(record.graph, xs, causal=model.causal))
        except EvaluationError:
            evaluations.append(None)
    return inputs, cache, evaluations
