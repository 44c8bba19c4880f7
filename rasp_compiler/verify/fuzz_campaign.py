"""The fuzz campaign: compile many random programs (verify/fuzz.py draws them) and check
each against the evaluator, sorting the outcomes into matched, refused (grouped by
reason), mismatch, crash and slow. scripts/fuzz_campaign.py runs it at scale; the
tests run small campaigns."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import RaspCompilerError
from rasp_compiler.lang import rasp
from rasp_compiler.verify.checker import verify
from rasp_compiler.verify.fuzz import (
    HUGE_LENGTH_SECONDS,
    HUGE_LENGTHS,
    FuzzConfig,
    random_program,
)


def refusal_reason(detail: str) -> str:
    """A refusal message with what varies between programs blanked out (labels, the
    SOp's values and inputs, numbers), so refusals group by kind."""
    text = re.sub(r"\b[a-z_]+_\d+\b", "X", detail)
    text = re.sub(r"\b(tokens|indices)\b", "X", text)
    text = re.sub(r"\([^()]*\)", "(..)", text)
    text = re.sub(r"-?\b\d[\d,.]*(e[+-]?\d+)?\b|\binf\b|\bnan\b|\bTrue\b|-?\d+\.\d+", "N", text)
    return text[:110]


@dataclass
class FuzzOutcome:
    seed: int
    status: str  # "matched", "refused", "mismatch", "crash" or "slow" (a huge length)
    detail: str = ""


@dataclass
class FuzzReport:
    outcomes: list

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def problems(self) -> list:
        """Silent mismatches, crashes and slow huge-length compiles: the outcomes that are bugs."""
        return [o for o in self.outcomes if o.status in ("mismatch", "crash", "slow")]

    def summary(self) -> str:
        slow = self.count("slow")
        lines = [f"{len(self.outcomes)} programs: {self.count('matched')} matched the evaluator, "
                 f"{self.count('refused')} refused with a compile error, "
                 f"{self.count('mismatch')} mismatched, {self.count('crash')} crashed"
                 + (f", {slow} too slow at a huge max_seq_len" if slow else "")]
        reasons: dict[str, int] = {}
        for o in self.outcomes:
            if o.status == "refused":
                reasons[refusal_reason(o.detail)] = reasons.get(refusal_reason(o.detail), 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  refused x{n}: {reason}")
        for o in self.problems:
            lines.append(f"  {o.status.upper()} seed {o.seed}: {o.detail}")
        return "\n".join(lines)


def campaign(count: int, seed: int = 0, *, vocab=(0, 1, 2, 3), max_seq_len: int = 4,
             config: FuzzConfig | None = None, samples: int = 30,
             causal: bool = False) -> FuzzReport:
    """Compile `count` random programs; each must match the evaluator or be refused clearly.

    With `causal=True` the models are decoder-only and checked against the
    evaluator's causal meaning.

    Checks every input of up to 3 tokens plus `samples` random ones, with the
    numpy forward (no XLA compilation per program). A few programs
    (`huge_length_rate`, with `extreme_numbers`) are compiled at a huge max_seq_len
    instead (HUGE_LENGTHS); they must be refused or compiled within
    HUGE_LENGTH_SECONDS (else "slow"), and are checked on the short inputs only.
    """
    import time

    outcomes = []
    for program_seed in range(seed, seed + count):
        rng = random.Random(program_seed)
        cfg = config or FuzzConfig(size=rng.randint(2, 7))
        program = random_program(rng, cfg)
        length = max_seq_len
        if cfg.extreme_numbers and rng.random() < cfg.huge_length_rate:
            length = rng.choice(HUGE_LENGTHS)
        started = time.perf_counter()
        outcome = _compile_and_check(program, program_seed, vocab, length, causal,
                                     samples if length == max_seq_len else None)
        elapsed = time.perf_counter() - started
        if (length != max_seq_len and elapsed > HUGE_LENGTH_SECONDS
                and outcome.status in ("matched", "refused")):
            outcome = FuzzOutcome(program_seed, "slow", f"at max_seq_len {length:,} it was "
                                  f"{outcome.status} after {elapsed:.1f} s: {outcome.detail}")
        outcomes.append(outcome)
    return FuzzReport(outcomes)


def _compile_and_check(program: rasp.SOp, program_seed: int, vocab, max_seq_len: int,
                       causal: bool, samples: int | None) -> FuzzOutcome:
    import traceback
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = compile_program(program, vocab, max_seq_len, allow_unsafe_aggregates=True,
                                    causal=causal)
        report = verify(program, model, exhaustive_up_to=min(3, max_seq_len),
                        samples=samples, seed=program_seed, backend="numpy")
    except RaspCompilerError as error:
        return FuzzOutcome(program_seed, "refused", f"{type(error).__name__}: {error}")
    except Exception:  # anything else is a compiler bug: keep the traceback
        return FuzzOutcome(program_seed, "crash", traceback.format_exc(limit=3))
    if report.mismatch_count:
        return FuzzOutcome(program_seed, "mismatch", str(report))
    return FuzzOutcome(program_seed, "matched")
