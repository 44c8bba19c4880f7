"""Rewrite: a RASP graph with value sets becomes the operations a transformer runs.

Every SOp becomes exactly one of:
- an embedding (tokens, indices, Full, ConstantSOp): written before layer 1;
- an attention op (Aggregate; the counting half of SelectorWidth);
- an MLP unit (Map, SequenceMap, the decoding half of SelectorWidth), which the
  scheduler fuses with neighbouring units into one MLP;
- a linear form (a numerical Map of a categorical SOp, an affine numerical Map,
  a numerical LinearSequenceMap): it costs nothing, readers use the form.

Maps of categorical SOps read by a Select or an Aggregate are folded into the
head (the head reads the Map's input and applies the function to the value
table), so they need no MLP and no layer. `length` becomes the width of an
all-true selector over tokens. The result's types (`OpGraph` and its operations) are
in ops.py; which Maps are linear forms, linear_forms.py decides.
"""

from __future__ import annotations

import dataclasses
import itertools
from numbers import Real
from types import MappingProxyType
from typing import Any, Callable

import numpy as np

from rasp_compiler.compiler import linear_forms, widths
from rasp_compiler.compiler.atoms import Atom, AtomBuilder, Folded
from rasp_compiler.compiler.ops import (
    AttentionOp,
    Embedding,
    MLPUnit,
    OpGraph,
    width_hidden_label,
)
from rasp_compiler.compiler.selectors import (
    DEFAULT_MAX_HEADS_PER_SELECTOR,
    DEFAULT_MAX_SELECTOR_DIMS,
    FeatureSpec,
    SelectorChoice,
    SelectorChooser,
)
from rasp_compiler.compiler.values import ValueSets, sorted_values
from rasp_compiler.errors import InvalidProgramError, UnsupportedExpressionError, describe_values
from rasp_compiler.lang import rasp
from rasp_compiler.lang.graph import ProgramGraph
from rasp_compiler.model.residual import BOS, Dim, LinearForm, constant_form


def rewrite(
    graph: ProgramGraph,
    values: ValueSets,
    *,
    max_selector_dims: int = DEFAULT_MAX_SELECTOR_DIMS,
    max_heads_per_selector: int = DEFAULT_MAX_HEADS_PER_SELECTOR,
) -> OpGraph:
    """Turn `graph` into embeddings, heads, MLP units and linear forms."""
    return _Rewriter(graph, values, max_selector_dims, max_heads_per_selector).run()


class _Rewriter:
    def __init__(self, graph: ProgramGraph, values: ValueSets, max_dims: int, max_heads: int):
        self.atoms = AtomBuilder(graph, values)
        self.chooser = SelectorChooser(self.atoms, max_dims=max_dims, max_heads=max_heads)
        self.choices: list[SelectorChoice] = []
        self.graph = graph
        self.value_sets = values
        self.values: dict[str, tuple] = dict(values.sets)
        self.encodings: dict[str, rasp.Encoding] = {}
        self.order: list[str] = []
        self.embeddings: dict[str, Embedding] = {}
        self.attention: dict[str, AttentionOp] = {}
        self.units: dict[str, MLPUnit] = {}
        self.forms: dict[str, LinearForm] = {}
        self.folded: dict[str, list[str]] = {}

    def run(self) -> OpGraph:
        output = self.graph.output_expr
        if not isinstance(output, rasp.SOp):
            raise InvalidProgramError(
                f"{output.label}: the program's output must be an SOp, got a "
                f"{type(output).__name__}; aggregate it or take its SelectorWidth"
            )
        for expr in self.graph.exprs():
            if isinstance(expr, rasp.SOp):
                self.encodings[expr.label] = rasp.get_encoding(expr)
                rule = rasp.rule_for(_SOP_RULES, expr)
                if rule is None:
                    raise UnsupportedExpressionError(
                        f"{expr.label}: no compilation rule for {type(expr).__name__}")
                rule(self, expr)
        frozen = MappingProxyType
        return OpGraph(
            graph=self.graph,
            vocab=self.value_sets.vocab,
            max_seq_len=self.value_sets.max_seq_len,
            values=frozen(self.values),
            encodings=frozen(self.encodings),
            order=tuple(self.order),
            output=output.label,
            embeddings=frozen(self.embeddings),
            attention=frozen(self.attention),
            units=frozen(self.units),
            forms=frozen(self.forms),
            folded=frozen({label: tuple(heads) for label, heads in self.folded.items()}),
            selector_choices=tuple(self.choices),
            position=frozen({label: i for i, label in enumerate(self.order)}),
            magnitudes=frozen({label: _magnitude(self.values[label])
                               for label, encoding in self.encodings.items()
                               if encoding is rasp.Encoding.NUMERICAL}),
        )

    # ----------------------------------------------------------------- embeddings

    def _input(self, label: str) -> None:
        """The tokens or indices embedding, once, however many constructs ask for it
        (`length` and ConstantSelector read them even when the program does not)."""
        if label in self.embeddings:
            return
        by = "token" if label == "tokens" else "position"
        values = self.atoms.values(label)
        encoding = rasp.Encoding.CATEGORICAL
        if label in self.graph.graph and rasp.is_numerical(self.graph.expr(label)):
            # rasp.numerical(rasp.tokens): one dimension holding the number, as the
            # evaluator gives it (a float), and as every reader in the program reads it.
            self._check_numeric_values(self.graph.expr(label), list(values))
            encoding = rasp.Encoding.NUMERICAL
        self.embeddings[label] = Embedding(label, by, encoding, [(v, v) for v in values])
        self.encodings[label] = encoding
        self.values[label] = tuple(values)
        self.order.append(label)

    def _full(self, expr: rasp.Full) -> None:
        self._check_numeric_values(expr, [expr.fill])
        self.embeddings[expr.label] = Embedding(
            expr.label, "token", rasp.get_encoding(expr),
            [(v, expr.fill) for v in self.value_sets.vocab])
        self.order.append(expr.label)

    def _constant_sop(self, expr: rasp.ConstantSOp) -> None:
        self._check_numeric_values(expr, expr.value)
        table = {i: v for i, v in enumerate(expr.value[: self.value_sets.max_seq_len])}
        self.embeddings[expr.label] = Embedding(expr.label, "position", rasp.get_encoding(expr), table)
        self.order.append(expr.label)

    def _length(self, expr: rasp.LengthType) -> None:
        self._input("tokens")
        select = f"{expr.label}:all_true"
        self._width(expr.label, select, (self.atoms.all_true(select),), rasp.get_encoding(expr),
                    smallest=1)

    # ----------------------------------------------------------------- MLP-side SOps

    def _map(self, expr: rasp.Map) -> None:
        inner = expr.inner.label
        self.order.append(expr.label)
        if rasp.is_numerical(expr):
            table = self._table(expr, (inner,))
            if not self.is_numerical(inner):
                self._refuse_none(expr, inner)
                self.forms[expr.label] = LinearForm.of({Dim(inner, v): out for (v,), out in table})
                return
            affine = linear_forms.affine_fit(table)
            if affine is not None:
                slope, intercept = affine
                self.forms[expr.label] = self.form_of(inner).scaled(slope) + constant_form(intercept)
                return
        self.units[expr.label] = MLPUnit(expr.label, (inner,), expr.f, rasp.get_encoding(expr), "Map")

    def _sequence_map(self, expr: rasp.SequenceMap) -> None:
        fst, snd = expr.fst.label, expr.snd.label
        self.order.append(expr.label)
        if isinstance(expr, rasp.LinearSequenceMap) and rasp.is_numerical(expr):
            parts = []
            for label, factor in ((fst, expr.fst_fac), (snd, expr.snd_fac)):
                self._refuse_none(expr, label)
                parts.append(self.form_of(label).scaled(factor))
            self.forms[expr.label] = parts[0] + parts[1]
            return
        linear = None
        if rasp.is_numerical(expr):
            for label in (fst, snd):
                self._refuse_none(expr, label)
            table = self._table(expr, (fst, snd))  # checks the outputs are numbers
            affine = linear_forms.affine_fit(table)  # a linear form: no neurons
            if affine is not None:
                a, b, c = affine
                self.forms[expr.label] = (self.form_of(fst).scaled(a) + self.form_of(snd).scaled(b)
                                          + constant_form(c))
                return
        fn = expr.f
        possible = linear_forms.possible_pairs(expr)
        if possible is not None:  # (length, indices): no value where index >= length
            fn = linear_forms.OnPossiblePairs(expr.f, possible)
        if not (rasp.is_numerical(expr) or self.is_numerical(fst) or self.is_numerical(snd)):
            # f(x, y) = g(x + r y) needs O(distinct x + r y) neurons (linear_forms.detect)
            linear = linear_forms.detect(expr.f, fst, self.values[fst], snd, self.values[snd],
                                         possible)
        kind = type(expr).__name__
        self.units[expr.label] = MLPUnit(expr.label, (fst, snd), fn, rasp.get_encoding(expr),
                                         kind, linear=linear)

    # ----------------------------------------------------------------- attention-side SOps

    def _aggregate(self, expr: rasp.Aggregate) -> None:
        choice = self.choose_selector(expr.selector, expr.label, "aggregate")
        (atoms,) = choice.chosen.heads
        self.choices.append(dataclasses.replace(choice, heads=(expr.label,)))
        values = self.atoms.fold(expr.sop)
        if rasp.is_categorical(expr):
            ov, bos_writes = self._categorical_copy(expr, values)
        else:
            ov, bos_writes = self._numerical_mean(expr, values)
        self.attention[expr.label] = AttentionOp(
            label=expr.label,
            kind="aggregate",
            source=expr.label,
            selector=expr.selector.label,
            atoms=atoms,
            ov=tuple((i, o, w) for (i, o), w in ov.items() if w != 0),
            bos_writes=bos_writes,
            encoding=rasp.get_encoding(expr),
        )
        self._note_folded(values.maps, expr.label)
        self.order.append(expr.label)

    def _categorical_copy(self, expr: rasp.Aggregate, values: Folded):
        """OV of a categorical Aggregate: each value's one-hot to its (mapped) output's;
        the BOS key carries the default."""
        if self.is_numerical(values.base):
            raise UnsupportedExpressionError(
                f"{expr.label}: a categorical Aggregate copies one-hot categories, but its "
                f"values {expr.sop.label} are numerical; make the aggregate numerical "
                f"(rasp.numerical) to average them, or make {expr.sop.label} categorical"
            )
        ov: dict[tuple[Dim, Dim], float] = {}
        for v in self.values[values.base]:
            out = None if v is None else values.mapping(v)
            if out is not None:
                ov[(Dim(values.base, v), Dim(expr.label, out))] = 1.0
        if expr.default is None:
            return ov, ()
        ov[(BOS, Dim(expr.label, expr.default))] = 1.0
        return ov, ((Dim(expr.label, expr.default), 1.0),)

    def _numerical_mean(self, expr: rasp.Aggregate, values: Folded):
        """OV of a numerical Aggregate: the values' linear form to its one dimension, which
        the head averages; the BOS key carries the default."""
        if self.is_numerical(values.base):
            form = self.form_of(values.base)
        else:
            self._refuse_none(expr, values.base, what="values")
            outputs = [values.mapping(v) for v in self.values[values.base]]
            rasp.check_averaged(expr, outputs, "it can read")
            form = LinearForm.of({Dim(values.base, v): float(out)
                                  for v, out in zip(self.values[values.base], outputs)})
        ov: dict[tuple[Dim, Dim], float] = {}
        for dim, coefficient in form.terms:
            ov[(dim, Dim(expr.label))] = ov.get((dim, Dim(expr.label)), 0.0) + coefficient
        default = 0 if expr.default is None else expr.default
        if default == 0:
            return ov, ()
        key = (BOS, Dim(expr.label))
        ov[key] = ov.get(key, 0.0) + float(default)
        return ov, ((Dim(expr.label), float(default)),)

    def _selector_width(self, expr: rasp.SelectorWidth) -> None:
        choice = self.choose_selector(expr.selector, expr.label, "width")
        encoding = rasp.get_encoding(expr)
        if len(choice.chosen.heads) == 1:
            (atoms,) = choice.chosen.heads
            self._width(expr.label, expr.selector.label, atoms, encoding)
            self.choices.append(dataclasses.replace(choice, heads=(width_hidden_label(expr.label),)))
            return
        # Inclusion-exclusion: width(A | B) = width(A) + width(B) - width(A & B), ...
        n = self.value_sets.max_seq_len
        total: dict[Dim, float] = {}
        heads = []
        for h, (atoms, sign) in enumerate(zip(choice.chosen.heads, choice.chosen.signs)):
            part = f"{expr.label}.ie{h}"
            # The parts of a categorical width are only summed and rounded: they may take
            # the scaled BOS share whose steps stay apart at long lengths (widths.py).
            self._width(part, expr.selector.label, atoms, rasp.Encoding.NUMERICAL,
                        source=expr.label, scaled=encoding is rasp.Encoding.CATEGORICAL)
            heads.append(width_hidden_label(part))
            total[Dim(part)] = float(sign)
        self.choices.append(dataclasses.replace(choice, heads=tuple(heads)))
        widths = tuple(range(n + 1))
        if encoding is rasp.Encoding.NUMERICAL:
            self.forms[expr.label] = LinearForm.of(total)
            self.values[expr.label] = widths
            self.encodings[expr.label] = encoding
        else:
            summed = f"{expr.label}.sum"
            self.forms[summed] = LinearForm.of(total)
            self.values[summed] = tuple(float(w) for w in widths)
            self.encodings[summed] = rasp.Encoding.NUMERICAL
            self.order.append(summed)
            self.units[expr.label] = MLPUnit(expr.label, (summed,), _round_to_int, encoding,
                                             "SelectorWidth")
        self.order.append(expr.label)

    def _width(self, label: str, selector: str, atoms: tuple[Atom, ...],
               encoding: rasp.Encoding, smallest: int = 0, source: str | None = None,
               scaled: bool | None = None) -> None:
        """A head whose BOS weight is s/(s+w) (widths.py), and the MLP unit decoding w from
        it; `scaled` (default: a categorical width) chooses the scaled share s."""
        n = self.value_sets.max_seq_len
        hidden = width_hidden_label(label)
        if hidden in self.graph.graph:
            raise InvalidProgramError(
                f"{hidden}: this label is reserved for the head of SelectorWidth {label}; rename it"
            )
        if scaled is None:
            scaled = encoding is rasp.Encoding.CATEGORICAL
        share = widths.bos_share(n, categorical=scaled)
        decode = {widths.fraction(w, share): w for w in range(smallest, n + 1)}
        self.values[hidden] = sorted_values(decode)
        self.encodings[hidden] = rasp.Encoding.NUMERICAL
        self.attention[hidden] = AttentionOp(
            label=hidden,
            kind="width",
            source=source or label,
            selector=selector,
            atoms=atoms,
            ov=((BOS, Dim(hidden), 1.0),),
            bos_writes=((Dim(hidden), 1.0),),
            encoding=rasp.Encoding.NUMERICAL,
            bos_share=share,
        )
        self.order.append(hidden)
        self.encodings[label] = encoding
        self.values.setdefault(label, tuple(range(smallest, n + 1)))
        self.units[label] = MLPUnit(label, (hidden,), decode.__getitem__, encoding, "SelectorWidth")
        self.order.append(label)

    # ----------------------------------------------------------------- selectors

    def choose_selector(self, selector: rasp.Selector, user: str, kind: str) -> SelectorChoice:
        """Normal form and construction of `selector` (the caller records it with its
        heads); creates the inputs, tuple and feature SOps the construction reads."""
        choice = self.chooser.choose(selector, kind, user)
        for atom in choice.atoms:
            if atom.key == "indices":  # a ConstantSelector: the program may not read indices
                self._input("indices")
            self._note_folded(atom.folded, atom.select)
        for spec in choice.chosen.tuples:
            self._tuple_unit(spec.label, spec.inputs)
        for spec in choice.chosen.features:
            self._feature_unit(spec)
        return choice

    def _tuple_unit(self, label: str, inputs: tuple[str, ...]) -> None:
        if label in self.units:
            return
        choices = [self.values[i] for i in inputs]
        self.values[label] = tuple(itertools.product(*choices))
        self.encodings[label] = rasp.Encoding.CATEGORICAL
        self.units[label] = MLPUnit(label, inputs, _as_tuple, rasp.Encoding.CATEGORICAL, "Tuple",
                                    none_aware=True)
        self.order.append(label)

    def _feature_unit(self, spec: FeatureSpec) -> None:
        self.values[spec.label] = spec.shared_values
        self.encodings[spec.label] = rasp.Encoding.CATEGORICAL
        self.units[spec.label] = MLPUnit(spec.label, spec.inputs, spec, rasp.Encoding.CATEGORICAL,
                                         "ClauseFeature", none_aware=True, feature=spec)
        self.order.append(spec.label)

    # ----------------------------------------------------------------- helpers

    def is_numerical(self, label: str) -> bool:
        return self.encodings[label] is rasp.Encoding.NUMERICAL

    def form_of(self, label: str) -> LinearForm:
        """How to read numerical (or numeric categorical) SOp `label` as a linear form."""
        if label in self.forms:
            return self.forms[label]
        if self.is_numerical(label):
            return LinearForm.single(Dim(label))
        numbers = {}
        for v in self.values[label]:
            if v is None:
                continue
            if not isinstance(v, Real):
                raise InvalidProgramError(
                    f"{label} is used as a number but can be {v!r}; map it to numbers first"
                )
            numbers[Dim(label, v)] = float(v)
        return LinearForm.of(numbers)

    def _note_folded(self, folded: tuple[str, ...], head: str) -> None:
        for label in folded:
            self.folded.setdefault(label, []).append(head)

    def _table(self, expr: rasp.SOp, inputs: tuple[str, ...]) -> list[tuple[tuple, Any]]:
        """The SOp's function on every combination of possible input values, as
        (arguments, output) pairs (a dict would merge the arguments 0 and 0.0)."""
        f = expr.f
        table = []
        combos: list[tuple] = [()]
        for label in inputs:
            combos = [c + (v,) for c in combos for v in self.values[label] if v is not None]
        for args in combos:
            out = f(*args)
            if rasp.is_numerical(expr) and (out is None or not isinstance(out, Real)):
                raise UnsupportedExpressionError(
                    f"{expr.label}: this numerical {type(expr).__name__} returns {out!r} on "
                    f"{args if len(args) > 1 else args[0]!r}; a numerical dimension holds only "
                    f"numbers, so make {expr.label} categorical"
                )
            table.append((args, out))
        return table

    def _refuse_none(self, expr: rasp.SOp, label: str, what: str = "input") -> None:
        if None in self.values[label]:
            raise UnsupportedExpressionError(
                f"{expr.label}: its {what} {label} can be None (an Aggregate that selected "
                f"nothing), which a numerical dimension cannot hold; give that Aggregate a "
                f"default, or keep {expr.label} categorical"
            )

    def _check_numeric_values(self, expr: rasp.SOp, values) -> None:
        if rasp.is_numerical(expr):
            bad = [v for v in values if not isinstance(v, Real)]
            if bad:
                raise InvalidProgramError(
                    f"{expr.label}: numerical, but holds non-numbers {describe_values(bad)}"
                )


def _magnitude(values: tuple) -> float:
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        numbers = np.asarray([float(v) for v in values if isinstance(v, Real)])
    return float(np.abs(numbers).max()) if numbers.size else 0.0


def _as_tuple(*values):
    return tuple(values)


def _round_to_int(x: float) -> int:
    return int(round(x))


_SOP_RULES: dict[type, Callable[[_Rewriter, Any], None]] = {
    rasp.TokensType: lambda rewriter, expr: rewriter._input(expr.label),
    rasp.IndicesType: lambda rewriter, expr: rewriter._input(expr.label),
    rasp.LengthType: _Rewriter._length,
    rasp.Full: _Rewriter._full,
    rasp.ConstantSOp: _Rewriter._constant_sop,
    rasp.Map: _Rewriter._map,
    rasp.SequenceMap: _Rewriter._sequence_map,
    rasp.Aggregate: _Rewriter._aggregate,
    rasp.SelectorWidth: _Rewriter._selector_width,
}
