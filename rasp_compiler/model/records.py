"""What a compiled model knows about itself: the info records, and the compilation record.

The info records (`ModelInfo` and the `LayerInfo`, `HeadInfo`, `MLPPartInfo`,
`SelectorEntry` inside it) explain the model without the RASP program; they are
saved with it (persistence.py's codec reads their type hints, so a new field here
is saved and checked with no new code there).

The `CompilationRecord` holds what exists only for a model compiled in this
session: the program and the compiler's intermediate results. A loaded model has
none (`model.compilation is None`); code that needs it calls
`require_compilation`, which says so clearly instead of failing on a None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from rasp_compiler.errors import InvalidInputError, UnknownNameError
from rasp_compiler.model.html import selector_report_html

if TYPE_CHECKING:  # annotations only: the model layer never runs compiler code
    from rasp_compiler.compiler.lower import LoweredModel
    from rasp_compiler.compiler.ops import OpGraph
    from rasp_compiler.compiler.schedule import Schedule
    from rasp_compiler.lang import rasp
    from rasp_compiler.lang.graph import ProgramGraph


@dataclass(frozen=True)
class ProgramSource:
    """Where a model's program came from, kept with the model when it is saved: its name
    (a bundled program's, or the file's stem) and the reference that loads it again
    (`load_program(reference)`: the bundled name, or `/absolute/path.py:factory`)."""

    name: str
    reference: str

    def __str__(self) -> str:
        return self.name if self.reference == self.name else f"{self.name} ({self.reference})"


@dataclass(frozen=True)
class HeadInfo:
    """What one head implements; enough to explain it without the RASP program."""

    label: str
    source: str
    selector: str
    kind: str
    layer: int
    index: int
    coldness: float
    leak_bound: float
    atoms: tuple[str, ...]
    key_size: int
    value_size: int
    expression: str = ""  # the selector as written (an inclusion-exclusion part says so)
    queries: tuple[str, ...] = ()  # SOps the query side reads
    keys: tuple[str, ...] = ()  # SOps the key side reads
    values: tuple[str, ...] = ()  # SOps the value side reads

    @property
    def name(self) -> str:
        """TransformerLens-style position: L{layer}H{index} (head `index` of `blocks.{layer}`)."""
        return f"L{self.layer}H{self.index}"


@dataclass(frozen=True)
class MLPPartInfo:
    label: str
    construction: str
    units: tuple[str, ...]
    leaves: tuple[str, ...]
    outputs: tuple[str, ...]
    start: int
    stop: int


@dataclass(frozen=True)
class LayerInfo:
    index: int  # from 0, as in the parameters (layer_0/...) and hooks (blocks.0...)
    heads: tuple[HeadInfo, ...]
    mlp: tuple[MLPPartInfo, ...]
    mlp_hidden: int


@dataclass(frozen=True)
class SelectorEntry:
    """One selector that reaches a head: how it was written, normalised and built."""

    selector: str
    used_by: str
    written: str
    normal_form: str
    construction: str
    cost: str
    alternatives: tuple[tuple[str, str], ...]  # (construction, its cost)
    flags: tuple[str, ...]
    heads: tuple[str, ...]
    score: float = 0.0


class SelectorReport(tuple):
    """The selector report: one `SelectorEntry` per selector; prints as a table."""

    def flagged(self) -> list[SelectorEntry]:
        return [entry for entry in self if entry.flags]

    def entry(self, selector: str) -> SelectorEntry:
        for entry in self:
            if entry.selector == selector:
                return entry
        raise UnknownNameError(f"no selector {selector!r} in this model; have "
                               f"{[e.selector for e in self]}")

    def __str__(self) -> str:
        lines = []
        for e in self:
            lines.append(f"{e.selector} (used by {e.used_by}; heads {', '.join(e.heads)})")
            lines.append(f"  written:      {e.written}")
            lines.append(f"  normal form:  {e.normal_form}")
            lines.append(f"  construction: {e.construction}: {e.cost}")
            for name, cost in e.alternatives:
                lines.append(f"  alternative:  {name}: {cost}")
            for flag in e.flags:
                lines.append(f"  FLAG {flag}")
        return "\n".join(lines) if lines else "(no selectors)"

    def _repr_html_(self) -> str:
        return selector_report_html(self)


@dataclass(frozen=True)
class ModelInfo:
    """The compiler's account of the model: layer plan, depth, bounds, warnings."""

    output: str
    layers: tuple[LayerInfo, ...]
    lower_bound: int
    fusion_notes: tuple[str, ...] = ()
    rewrites: tuple[str, ...] = ()  # program rewrites made before compiling, in words
    folded: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    aggregate_checks: tuple[tuple[str, str, str], ...] = ()  # (label, status, reason)
    selectors: tuple[SelectorEntry, ...] = ()
    causal: bool = False  # attention masked to keys at or before the query
    causal_invariance: str = ""  # causal models: the invariance verdict, in words
    causally_invariant: bool | None = None  # None: not checked (bidirectional model)
    compile_seconds: float = 0.0

    @property
    def depth(self) -> int:
        return len(self.layers)


@dataclass(frozen=True, eq=False)
class CompilationRecord:
    """The program and the compiler's intermediate results, for a model compiled in
    this session only (never saved: a loaded model has none). Diagnostics that
    compare the model with the program read it through `require_compilation`."""

    program: rasp.SOp
    ops: OpGraph  # the program as transformer operations
    schedule: Schedule  # which layer computes each op
    lowered: LoweredModel  # the weights over named residual dimensions

    @property
    def graph(self) -> ProgramGraph:
        """The program's expression graph (one node per expression)."""
        return self.ops.graph


def require_compilation(model, what: str,
                        does: str = "compares the model with the RASP program") -> CompilationRecord:
    """`model.compilation`, or an InvalidInputError saying that `what` (which `does` ...)
    needs the program and this model was loaded without it."""
    record = model.compilation
    if record is None:
        raise InvalidInputError(
            f"{what} {does}, but this model was loaded from disk without it; compile the "
            f"program in this session to use {what}"
        )
    return record
