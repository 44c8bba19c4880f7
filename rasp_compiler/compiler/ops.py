"""The operations a transformer runs: the rewrite stage's result, read by every later stage.

`OpGraph` holds the program as embeddings (`Embedding`), heads (`AttentionOp`), MLP
units (`MLPUnit`) and linear forms, keyed by the label of the SOp each writes, with
the value sets and encodings of every SOp, hidden ones included. rewrite.py builds
it from the program graph; schedule, size, safety, lowering and precision read it,
and the numerical-copies pass makes a new one beside it. The types live here, apart
from the rules that make them, so that a later stage imports what it reads and not
the rewriter.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from rasp_compiler.compiler.atoms import Atom
from rasp_compiler.compiler.linear_forms import LinearLookup
from rasp_compiler.compiler.selectors import FeatureSpec, SelectorChoice
from rasp_compiler.lang import rasp
from rasp_compiler.lang.graph import ProgramGraph
from rasp_compiler.lang.identity import ValueMap
from rasp_compiler.model.residual import BOS, ONE, Dim, LinearForm

WIDTH_SUFFIX = ".attn"


@dataclass(frozen=True, eq=False)
class AttentionOp:
    """One attention head: scores from `atoms` (all must hold), values by `ov`."""

    label: str  # the SOp it writes (for SelectorWidth: the hidden `label.attn`)
    kind: str  # "aggregate" or "width"
    source: str  # the Aggregate / SelectorWidth as written
    selector: str
    atoms: tuple[Atom, ...]
    ov: tuple[tuple[Dim, Dim, float], ...]  # (read dim, written dim, weight)
    bos_writes: tuple[tuple[Dim, float], ...]  # what the head writes at the BOS query position
    encoding: rasp.Encoding
    bos_share: float = 1.0  # a width head's BOS key weighs like this many keys (widths.py)

    @property
    def queries(self) -> tuple[str, ...]:
        """SOps the query side reads."""
        return tuple(dict.fromkeys(a.query for a in self.atoms if a.relation.size))

    @property
    def keys(self) -> tuple[str, ...]:
        """SOps the key side reads."""
        return tuple(dict.fromkeys(a.key for a in self.atoms if a.relation.size))

    @property
    def values(self) -> tuple[str, ...]:
        """SOps the value side reads (`bos` alone for defaults and widths)."""
        return tuple(dict.fromkeys(d.sop for d, _, _ in self.ov if d not in (ONE, BOS)))

    @property
    def reads(self) -> set[str]:
        return set(self.queries) | set(self.keys) | set(self.values)


@dataclass(frozen=True, eq=False)
class MLPUnit:
    """One elementwise function of some SOps; the scheduler fuses units into MLPs."""

    label: str
    inputs: tuple[str, ...]
    fn: Callable[..., Any]
    encoding: rasp.Encoding
    kind: str  # "Map", "SequenceMap", "SelectorWidth", "Tuple", "ClauseFeature", ...
    none_aware: bool = False  # fn is called on None inputs too (tuples keep the None)
    feature: FeatureSpec | None = None  # set for an OR clause's feature (multi-hot output)
    linear: LinearLookup | None = None  # f is a function of one linear form (linear_forms.py)


@dataclass(frozen=True)
class Embedding:
    """An SOp written by the embeddings: by token (tokens, Full) or by position."""

    label: str
    by: str  # "token" or "position"
    encoding: rasp.Encoding
    # token -> value (by token; a ValueMap: the tokens 1 and True are two keys) or
    # index -> value (by position); given as a mapping or as (key, value) pairs
    table: Mapping[Any, Any]

    def __post_init__(self) -> None:
        table = ValueMap(self.table) if self.by == "token" else MappingProxyType(dict(self.table))
        object.__setattr__(self, "table", table)


@dataclass(frozen=True)
class OpGraph:
    """The program as transformer operations, keyed by the label of the SOp each writes."""

    graph: ProgramGraph
    vocab: tuple
    max_seq_len: int
    values: Mapping[str, tuple]  # value sets, including hidden SOps
    encodings: Mapping[str, rasp.Encoding]
    order: tuple[str, ...]  # topological, including hidden SOps
    output: str
    embeddings: Mapping[str, Embedding]
    attention: Mapping[str, AttentionOp]
    units: Mapping[str, MLPUnit]
    forms: Mapping[str, LinearForm]  # numerical SOps that are linear in the residual
    folded: Mapping[str, tuple[str, ...]]  # Map -> the heads and Selects it is folded into
    selector_choices: tuple[SelectorChoice, ...]
    position: Mapping[str, int]  # index of each label in `order`
    magnitudes: Mapping[str, float]  # largest |value| of each numerical SOp (0 if none)

    def is_numerical(self, label: str) -> bool:
        return self.encodings[label] is rasp.Encoding.NUMERICAL

    def inputs_of(self, label: str) -> set[str]:
        """The SOps whose residual dimensions (or forms) this SOp's computation reads."""
        if label in self.attention:
            return self.attention[label].reads
        if label in self.units:
            return set(self.units[label].inputs)
        if label in self.forms:
            return self.forms[label].sops()
        return set()


def width_hidden_label(label: str) -> str:
    """The hidden numerical SOp a SelectorWidth's head writes (s / (s + width), widths.py)."""
    return f"{label}{WIDTH_SUFFIX}"


