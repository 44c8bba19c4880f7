"""What verification says: the `VerificationReport` (counts, the first mismatches with
their inputs and positions, causal invariance, the worst raw deviation) and the rule by
which one output matches the evaluator's (`values_match`)."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any

from rasp_compiler.lang.identity import same_value
from rasp_compiler.model.constants import ATOL, RAW_TOLERANCE, RTOL


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
    strict: bool = False  # raw readout columns judged too (see RAW_TOLERANCE)
    raw_tolerance: float = RAW_TOLERANCE  # strict: the bound on a one-hot column's deviation
    max_raw_deviation: float = 0.0  # strict: the worst |raw column - exact one-hot| (numerical:
    #                                 |got - expected|, judged by atol and rtol as always)
    raw_excess_count: int = 0  # strict: defined positions whose raw columns are past the bound
    worst_raw: tuple | None = None  # strict: (input, position, expected) at the worst deviation
    numerical_output: bool = False  # the output is numerical (its raw value is the number)

    @property
    def causally_invariant(self) -> bool | None:
        """Causal models: did the causal meaning equal the ordinary one on every input
        checked? None for a bidirectional model."""
        return (self.invariance_counterexample is None) if self.causal else None

    @property
    def ok(self) -> bool:
        return (self.mismatch_count == 0 and self.inputs_checked > 0
                and not (self.strict and self.raw_excess_count))

    def __str__(self) -> str:
        if self.strict and self.raw_excess_count and not self.mismatch_count:
            verdict = (f"{self.raw_excess_count} positions PAST THE RAW BOUND "
                       f"{self.raw_tolerance:.0e}")
        else:
            verdict = "OK" if self.ok else f"{self.mismatch_count} MISMATCHED positions"
        lines = [
            f"{verdict}: {self.inputs_checked} inputs, {self.positions_checked} positions, "
            f"{self.undefined} undefined, max numerical error {self.max_numerical_error:.2e}, "
            f"{self.seconds:.2f}s on {self.devices} device{'s' * (self.devices != 1)}"
        ]
        lines += [f"  {m}" for m in self.mismatches]
        if self.strict and self.numerical_output:
            lines.append(f"strict: max raw deviation {self.max_raw_deviation:.2e} (a numerical "
                         f"output is read raw: within atol + rtol x |value| as above)")
        elif self.strict:
            line = (f"strict: max raw deviation {self.max_raw_deviation:.2e} (bound "
                    f"{self.raw_tolerance:.0e} on one-hot columns")
            line += ")" if self.worst_raw is None else (
                f"; worst at input {list(self.worst_raw[0])} position {self.worst_raw[1]}, "
                f"expected {self.worst_raw[2]!r})")
            lines.append(line)
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
