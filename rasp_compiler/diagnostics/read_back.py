"""The read-backs: every SOp read from the residual stream right after the sublayer that
writes it, against the evaluator; the first divergence is the bug.

- `read_back(model, inputs)`: decoded values.
- `raw_read_back(model, inputs)`: the raw residual dimensions, not decoded, against the
  exact encoding of the evaluator's value (one-hot within 1e-3, numbers within
  verification's tolerance), from the sublayer that writes them to the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rasp_compiler.diagnostics.evaluation import run_and_evaluate
from rasp_compiler.diagnostics.layer_plan import layer_plan_report
from rasp_compiler.lang.identity import identity_key
from rasp_compiler.model.constants import ATOL, RAW_TOLERANCE, RTOL
from rasp_compiler.model.encoding import readout_numbers
from rasp_compiler.model.hooks import Slot, hook
from rasp_compiler.model.records import require_compilation
from rasp_compiler.verify.report import values_match


@dataclass(frozen=True)
class SOpReadBack:
    label: str
    written_after: str  # sublayer name
    positions: int
    mismatches: int
    first: str | None  # the first mismatch, described


@dataclass(frozen=True)
class ReadBackReport:
    sops: tuple[SOpReadBack, ...]
    not_in_residual: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def agrees(self) -> bool:
        return all(s.mismatches == 0 for s in self.sops)

    @property
    def first_divergence(self) -> SOpReadBack | None:
        """The earliest SOp (in execution order) whose read-back disagrees."""
        for sop in self.sops:
            if sop.mismatches:
                return sop
        return None

    def __str__(self) -> str:
        first = self.first_divergence
        lines = ["value read-back: " + ("every SOp agrees with the evaluator" if first is None
                 else f"first divergence: {first.label} after {first.written_after}")]
        for s in self.sops:
            status = "ok" if not s.mismatches else f"{s.mismatches} wrong; first {s.first}"
            lines.append(f"  {s.label:<20} after {s.written_after:<20} {status}")
        for label, why in self.not_in_residual:
            lines.append(f"  {label:<20} not in the residual: {why}")
        return "\n".join(lines)


def read_back(model, inputs: Sequence[Sequence], *, backend: str = "jax") -> ReadBackReport:
    """Decode every SOp right after the sublayer that writes it; compare with the evaluator
    (the model run by `backend`, "jax" or "numpy")."""
    record = require_compilation(model, "read_back")
    inputs, cache, evaluations = run_and_evaluate(model, record, inputs, backend)
    residuals = {"hook_embed+pos": cache["hook_embed"] + cache["hook_pos_embed"]}
    time = record.schedule.time
    labels = _labels_by_write_time(model, record)
    results = []
    for label in labels:
        hook = Slot.at(time[label]).residual_after
        residual = residuals[hook] if hook in residuals else cache[hook]
        mismatches, positions, first = 0, 0, None
        for b, (xs, evaluation) in enumerate(zip(inputs, evaluations)):
            if evaluation is None or label not in evaluation.values:
                continue
            got = model.decode(label, residual[b], len(xs))
            categorical = not model.readouts[label].numerical  # 0 is not 0.0 (identity.py)
            for position, (value, expected) in enumerate(zip(got, evaluation[label])):
                positions += 1
                if not values_match(value, expected, categorical=categorical):
                    mismatches += 1
                    if first is None:
                        first = (f"input {xs} position {position}: expected {expected!r}, "
                                 f"got {value!r}")
        results.append(SOpReadBack(label, Slot.at(time[label]).name, positions, mismatches, first))
    missing = []
    place = {n.label: n for n in layer_plan_report(model).nodes}
    for label in record.graph.sops():
        if label not in model.readouts and label in place:
            missing.append((label, place[label].where))
    return ReadBackReport(tuple(results), tuple(missing))


# --------------------------------------------------------------------------- raw read-back


@dataclass(frozen=True)
class SOpRawCheck:
    """How far one SOp's residual dimensions are from the exact encoding of its value."""

    label: str
    written_after: str  # sublayer name
    numerical: bool
    positions: int  # token positions checked (BOS and padding are not)
    max_deviation: float  # categorical: max |dim - one-hot|; numerical: max |read - value|
    over: int  # positions past the bound
    first: str | None  # the first position past the bound, described

    @property
    def passed(self) -> bool:
        return self.over == 0


@dataclass(frozen=True)
class RawReadBackReport:
    tolerance: float  # on a categorical SOp's one-hot dims
    atol: float  # numerical SOps: within atol + rtol * |value|
    rtol: float
    sops: tuple[SOpRawCheck, ...]

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.sops)

    @property
    def max_deviation(self) -> float:
        """The worst deviation of any categorical SOp's one-hot dims."""
        return max((s.max_deviation for s in self.sops if not s.numerical), default=0.0)

    def failed(self) -> list[SOpRawCheck]:
        return [s for s in self.sops if not s.passed]

    def __str__(self) -> str:
        lines = [f"raw read-back (one-hot dims within {self.tolerance:g} of exact, numbers within "
                 f"{self.atol:g} + {self.rtol:g} x |value|): "
                 f"{'PASS' if self.passed else 'FAIL'}"]
        for s in self.sops:
            verdict = "ok" if s.passed else f"{s.over} past the bound; first {s.first}"
            lines.append(f"  {s.label:<20} after {s.written_after:<20} max dev "
                         f"{s.max_deviation:.2e}  {verdict}")
        return "\n".join(lines)


def exact_encoding(readout, values: Sequence) -> np.ndarray:
    """The exact readout columns [n, k] of `values` (a categorical readout: the value's
    one-hot, all zero for None; NaN where a value has no column, which nothing matches).
    Numerical readouts have no columns to compare: use their form (readout_numbers)."""
    columns = {identity_key(value): i for i, value in enumerate(readout.values)}
    exact = np.zeros((len(values), len(readout.indices)))
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            exact[position, columns[identity_key(value)]] = 1.0
        except (KeyError, TypeError):
            exact[position] = np.nan
    return exact


def raw_deviation(readout, columns: np.ndarray, values: Sequence) -> np.ndarray:
    """Per position [n], how far the raw columns [n, k] are from the exact encoding of
    `values`: max |column - one-hot| (categorical; inf for a value with no column), or
    |form - value| (numerical; 0 where the value is None)."""
    columns = np.asarray(columns, dtype=np.float64)
    if readout.numerical:
        expected = np.array([np.nan if v is None else float(v) for v in values])
        deviation = np.abs(readout_numbers(readout, columns) - expected)
        return np.where(np.isnan(expected), 0.0, np.where(np.isnan(deviation), np.inf, deviation))
    exact = exact_encoding(readout, values)
    if not exact.shape[1]:
        return np.zeros(len(values))
    deviation = np.abs(columns - exact).max(axis=1)
    return np.where(np.isnan(deviation), np.inf, deviation)


def raw_read_back(model, inputs: Sequence[Sequence], tolerance: float = RAW_TOLERANCE, *,
                  backend: str = "jax") -> RawReadBackReport:
    """Every SOp's raw residual dimensions at every token position, from right after the
    sublayer that writes it to the end of the model (nothing else writes them), against
    the exact encoding of the evaluator's value: a categorical SOp's one-hot within
    `tolerance`, a numerical one within verification's atol + rtol x |value|. No
    decoding: a model whose one-hots are 0.92 fails here, while the decoder (0.1) and
    read_back accept it."""
    record = require_compilation(model, "raw_read_back")
    inputs, cache, evaluations = run_and_evaluate(model, record, inputs, backend)
    points = [(0, cache["hook_embed"] + cache["hook_pos_embed"])]
    for layer in range(model.depth):
        points.append((2 * layer + 1, cache[hook(layer, "hook_resid_mid")]))
        points.append((2 * layer + 2, cache[hook(layer, "hook_resid_post")]))
    time = record.schedule.time
    labels = _labels_by_write_time(model, record)
    results = []
    for label in labels:
        readout = model.readouts[label]
        indices = list(readout.indices)
        worst, positions, over, first = 0.0, 0, 0, None
        for b, (xs, evaluation) in enumerate(zip(inputs, evaluations)):
            if evaluation is None or label not in evaluation.values:
                continue
            expected = evaluation[label]
            n = len(xs)
            positions += n
            if readout.numerical:
                sizes = np.array([0.0 if v is None else abs(float(v)) for v in expected])
                allowed = ATOL + RTOL * sizes
            else:
                allowed = np.full(n, float(tolerance))
            past = np.zeros(n, dtype=bool)
            for at, residual in points:
                if at < time[label]:
                    continue
                deviation = raw_deviation(readout, residual[b, 1: n + 1][:, indices], expected)
                worst = max(worst, float(deviation.max()))
                beyond = deviation > allowed
                if beyond.any() and first is None:
                    position = int(np.argmax(beyond))
                    first = (f"input {xs} position {position} after {Slot.at(at).name}: "
                             f"expected {expected[position]!r}, off by "
                             f"{float(deviation[position]):.3g}")
                past |= beyond
            over += int(past.sum())
        results.append(SOpRawCheck(label, Slot.at(time[label]).name, readout.numerical,
                                   positions, worst, over, first))
    return RawReadBackReport(float(tolerance), ATOL, RTOL, tuple(results))


def _labels_by_write_time(model, record) -> list[str]:
    """The program's SOps that have a readout, in the order the model writes them."""
    time, graph = record.schedule.time, record.graph.graph
    return sorted((l for l in model.readouts if l in time and l in graph),
                  key=lambda l: (time[l], record.ops.position[l]))
