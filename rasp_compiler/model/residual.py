"""The residual stream: named dimensions, linear forms over them, and the layout.

Glossary (used by every later stage):
- `Dim(sop, value)`: one residual dimension. A categorical SOp `x` owns one
  dimension per possible value, `Dim("x", v)`, holding its one-hot encoding
  (values told apart as identity.py says: `0`, `0.0` and `False` own three); a
  numerical SOp owns `Dim("x")` holding the number. `ONE` is 1 at every position,
  `BOS` is 1 at position 0 only.
- `LinearForm`: a weighted sum of dimensions. Numerical SOps that are linear in
  the residual (a numerical Map of a categorical SOp, a LinearSequenceMap) are
  never written anywhere: their readers use the form directly.
- `ResidualLayout`: the ordered dimensions of a compiled model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from rasp_compiler.lang.identity import identity_key


class _Numerical:
    """Marks a numerical dimension: `Dim("x")` holds the number itself."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NUMERICAL"

    def __reduce__(self):
        return (_Numerical, ())


NUMERICAL = _Numerical()


class Dim(tuple):
    """One residual dimension: an SOp label and, for categorical SOps, one of its values.

    Two dims are one dimension when their SOps are the same and their values are the
    same value (identity.py): `Dim("m", 0)`, `Dim("m", 0.0)` and `Dim("m", False)` are
    three dimensions, as an SOp that can take all three has three. The tuple holds the
    value's `identity_key` beside it, so comparing and hashing stay at C speed.
    """

    __slots__ = ()

    def __new__(cls, sop: str, value: Any = NUMERICAL) -> "Dim":
        return tuple.__new__(cls, (sop, value, None if value is NUMERICAL else identity_key(value)))

    def __getnewargs__(self) -> tuple:
        return (self[0], self[1])

    @property
    def sop(self) -> str:
        return self[0]

    @property
    def value(self) -> Any:
        return self[1]

    @property
    def is_numerical(self) -> bool:
        return self[1] is NUMERICAL

    def __repr__(self) -> str:
        return f"Dim(sop={self[0]!r}, value={self[1]!r})"

    def __str__(self) -> str:
        return self.sop if self.is_numerical else f"{self.sop}:{self.value}"


ONE = Dim("one")
BOS = Dim("bos")
SPECIAL_DIMS = (ONE, BOS)


@dataclass(frozen=True)
class LinearForm:
    """sum(coefficient * dimension); how a numerical quantity is read from the residual."""

    terms: tuple[tuple[Dim, float], ...]

    @staticmethod
    def of(mapping: Mapping[Dim, float]) -> "LinearForm":
        return LinearForm(tuple((dim, float(c)) for dim, c in mapping.items() if c != 0))

    @staticmethod
    def single(dim: Dim) -> "LinearForm":
        return LinearForm(((dim, 1.0),))

    def as_dict(self) -> dict[Dim, float]:
        out: dict[Dim, float] = {}
        for dim, coefficient in self.terms:
            out[dim] = out.get(dim, 0.0) + coefficient
        return out

    def __add__(self, other: "LinearForm") -> "LinearForm":
        total = self.as_dict()
        for dim, coefficient in other.terms:
            total[dim] = total.get(dim, 0.0) + coefficient
        return LinearForm.of(total)

    def scaled(self, factor: float) -> "LinearForm":
        return LinearForm.of({dim: factor * c for dim, c in self.as_dict().items()})

    def sops(self) -> set[str]:
        """The SOps whose dimensions this form reads (not `one` or `bos`)."""
        return {dim.sop for dim, _ in self.terms if dim not in SPECIAL_DIMS}

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        return " + ".join(f"{c:g}*{dim}" for dim, c in self.terms)


def constant_form(value: float) -> LinearForm:
    """`value` at every token position and 0 at BOS: value * (one - bos)."""
    return LinearForm.of({ONE: value, BOS: -value})


@dataclass(frozen=True)
class ResidualLayout:
    """The residual stream's dimensions in order, and who owns which."""

    dims: tuple[Dim, ...]
    index: Mapping[Dim, int] = field(init=False, repr=False, compare=False)  # dim -> position

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", MappingProxyType({d: i for i, d in enumerate(self.dims)}))

    @property
    def width(self) -> int:
        return len(self.dims)

    def dims_of(self, sop: str) -> list[Dim]:
        return [dim for dim in self.dims if dim.sop == sop]

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Each owner's [start, stop) range (dimensions of one SOp are contiguous)."""
        out: dict[str, tuple[int, int]] = {}
        for i, dim in enumerate(self.dims):
            start, _ = out.get(dim.sop, (i, i))
            out[dim.sop] = (start, i + 1)
        return out

    def __repr__(self) -> str:
        owners = list(self.ranges())
        return f"ResidualLayout(width={self.width}, sops={owners})"


def build_layout(owners: Iterable[tuple[str, bool, Iterable[Any]]]) -> ResidualLayout:
    """`one`, `bos`, then for each (sop, is_numerical, values) in order: its one dimension
    if numerical, else one per value (None, "no value", has none)."""
    dims: list[Dim] = list(SPECIAL_DIMS)
    for sop, is_numerical, values in owners:
        if is_numerical:
            dims.append(Dim(sop))
        else:
            dims.extend(Dim(sop, value) for value in values if value is not None)
    return ResidualLayout(tuple(dims))


@dataclass(frozen=True)
class Readout:
    """How to read one SOp from the residual: one-hot dims or a linear form."""

    label: str
    numerical: bool
    indices: tuple[int, ...]
    values: tuple  # categorical: the value of each index
    coefficients: tuple[float, ...]  # numerical: the weight of each index
