"""Boolean selectors: constructions, costs and the report (normal forms: selector_forms.py).

A selector built from Select, ConstantSelector, `&`, `|` and `~` is lowered in
three steps (docs/selectors.md explains each, with the costs):

1. Atoms. Each Select becomes an `Atom`: a boolean relation between the values
   of one categorical SOp read on the query side and one read on the key side
   (Maps folded in). NOT is pushed to the atoms (De Morgan) and negates their
   relation; atoms over the same (query, key) pair are merged into one;
   constant atoms (all true / all false) simplify away.
2. Normal form: an AND of OR-clauses (CNF), built by distribution with a
   bound (`MAX_CLAUSES`); past it only the whole-selector product applies.
3. Construction, cheapest by the cost model:
   - one atom per clause: the head adds the atoms' bilinear forms (AND in one
     head, key size = sum of the parts);
   - an OR clause whose atoms share their key SOp: an MLP computes, at every
     query position, the clause's 0/1 feature over the key's values
     (min(1, sum of the atoms) with two ReLUs per value) and the head compares it
     with the key's one-hot; likewise on the key side for a shared query SOp;
   - an OR clause with no shared side: product encoding, tuple SOps of the
     clause's query SOps and of its key SOps (sizes multiply: flagged);
   - SelectorWidth only, alternatively: inclusion-exclusion over the DNF's terms,
     one conjunction head per non-empty subset (2^m - 1 heads: flagged), decoded
     and summed by MLPs. (A mean over a union is a ratio of sums, which one MLP
     layer cannot form exactly, so numerical Aggregates use product encoding.)
   - always available: the whole-selector product (one atom over tuples).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from itertools import compress
from typing import Callable, Sequence

import numpy as np

from rasp_compiler.compiler.atoms import Atom, AtomBuilder
from rasp_compiler.compiler.selector_forms import (
    And,
    Or,
    atoms_in,
    evaluate,
    is_composite,
    merge_group,
    normal_form,
    render,
    render_cnf,
    simplify,
    to_nnf,
    written,
)
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.identity import identity_key, same_value

MAX_INCLUSION_EXCLUSION_TERMS = 6
DEFAULT_MAX_SELECTOR_DIMS = 4096
DEFAULT_MAX_HEADS_PER_SELECTOR = 8

# Cost model weights: a possible extra layer outweighs everything, then heads.
LAYER_COST = 1000.0
HEAD_COST = 200.0
HIDDEN_COST = 0.5
KEY_COST = 0.25


# --------------------------------------------------------------------------- constructions


@dataclass(frozen=True)
class FeatureSpec:
    """An OR clause whose atoms share one side: a 0/1 feature over that side's values.

    side "query": computed at every position from the atoms' query SOps, one
    dim per value of the shared key SOp; side "key": the mirror image.
    """

    label: str
    side: str
    shared: str
    shared_values: tuple
    terms: tuple[tuple[str, tuple, np.ndarray], ...]  # (other SOp, its values, relation [other, shared])

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(other for other, _, _ in self.terms))

    def __call__(self, *values) -> "Accepted":
        """The shared values this clause accepts, given the other SOps' values (None: none)."""
        by_input = dict(zip(self.inputs, values))
        accepted = np.zeros(len(self.shared_values), dtype=bool)
        for other, other_values, relation in self.terms:
            value = by_input[other]
            row = None if value is None else _position(other_values, value)
            if row is not None:
                accepted |= relation[row]
        return Accepted(compress(self.shared_values, accepted.tolist()))


class Accepted(tuple):
    """A clause feature's value at one position: the shared values it accepts, in the
    order of `shared_values` (a multi-hot over their dimensions, not one value)."""

    __slots__ = ()


def _position(values: tuple, value) -> int | None:
    """Where `value` is in `values`, told apart by identity (0 is not 0.0), or None."""
    try:
        first = values.index(value)
    except ValueError:
        return None
    return next((i for i in range(first, len(values)) if same_value(values[i], value)), None)


@dataclass(frozen=True)
class TupleSpec:
    """A product-encoding SOp: the tuple of several categorical SOps at each position."""

    label: str
    inputs: tuple[str, ...]


def tuple_label(inputs: tuple[str, ...]) -> str:
    """One tuple SOp per combination of inputs, shared by both sides and all selectors."""
    return "(" + ", ".join(inputs) + ")"


@dataclass(frozen=True)
class Cost:
    heads: int
    key_size: int  # query/key dims the heads compare, summed
    residual_dims: int  # new residual dimensions (features, tuples)
    mlp_hidden: int  # neurons of the MLPs the construction adds
    needs_mlp: bool  # an MLP must run before the head (or after, to combine heads)
    exponential: bool

    @property
    def score(self) -> float:
        return (LAYER_COST * self.needs_mlp + HEAD_COST * (self.heads - 1)
                + self.residual_dims + HIDDEN_COST * self.mlp_hidden + KEY_COST * self.key_size)

    @property
    def dims(self) -> int:
        return self.key_size + self.residual_dims

    def __str__(self) -> str:
        extra = f", {self.residual_dims} new dims, {self.mlp_hidden} MLP neurons" \
            if self.residual_dims or self.mlp_hidden else ""
        return f"{self.heads} head{'s' * (self.heads != 1)}, key size {self.key_size}{extra}"


@dataclass(frozen=True)
class Construction:
    """One way to build a selector: the heads (each an AND of atoms) and helper SOps."""

    name: str
    cost: Cost
    heads: tuple[tuple[Atom, ...], ...] = ()  # empty until built
    signs: tuple[int, ...] = ()  # inclusion-exclusion signs, one per head
    features: tuple[FeatureSpec, ...] = ()
    tuples: tuple[TupleSpec, ...] = ()
    notes: tuple[str, ...] = ()  # flags' explanations (exponential, extra heads)


@dataclass(frozen=True)
class SelectorChoice:
    """The chosen construction for one selector, its alternatives, and the report's text."""

    selector: str
    used_by: str
    written: str
    normal_form: str
    chosen: Construction
    alternatives: tuple[Construction, ...]  # not built: name and cost only
    atoms: tuple[Atom, ...]  # of its Selects and ConstantSelectors as written, in order
    heads: tuple[str, ...] = ()  # the attention ops implementing it, named by the rewriter

    def flags(self, extra_layers: int = 0) -> tuple[str, ...]:
        """The report's warnings; `extra_layers` is what the schedule says the helper MLPs cost."""
        out = []
        cost = self.chosen.cost
        if cost.exponential:
            out.append("exponential: " + "; ".join(n for n in self.chosen.notes if n))
        if cost.heads > 1:
            out.append(f"extra-heads: {cost.heads} heads instead of 1")
        if extra_layers:
            out.append(f"extra-layer: +{extra_layers} layer{'s' * (extra_layers > 1)} "
                       f"for the MLP this construction needs")
        return tuple(out)


class SelectorChooser:
    """Chooses how to build each selector, from the atoms of its Selects.

    Every construction's cost is computed once, from the atoms, before anything is
    built (a product relation can have 10^7 entries); only the cheapest allowed
    option is then built. The cost is exact but for a product encoding's key size,
    which counts every tuple value (at most that many are live).
    """

    def __init__(self, atoms: AtomBuilder, max_dims: int, max_heads: int):
        self.atoms = atoms
        self.max_dims = max_dims
        self.max_heads = max_heads

    def choose(self, selector: rasp.Selector, kind: str, used_by: str) -> SelectorChoice:
        written_atoms: list[Atom] = []

        def make_atom(leaf: rasp.Selector) -> Atom:
            written_atoms.append(self.atoms.atom(leaf))
            return written_atoms[-1]

        nullable = self.atoms.nullable
        node = simplify(to_nnf(selector, make_atom, nullable), nullable)
        options: list[tuple[Construction, Callable[[Construction], Construction]]] = []  # builder
        clauses = normal_form(node, conjunctive=True)
        if clauses is not None:
            clauses = [merge_group(clause, conjunctive_group=False) for clause in clauses]
            options.append(self._conjunction_option(selector.label, clauses))
        if kind == "width" and isinstance(node, (Or, And)):
            terms = normal_form(node, conjunctive=False, limit=MAX_INCLUSION_EXCLUSION_TERMS)
            if terms is not None and 1 < len(terms) <= MAX_INCLUSION_EXCLUSION_TERMS:
                terms = [merge_group(term, conjunctive_group=True) for term in terms]
                options.append(_inclusion_exclusion_option(terms))
        if isinstance(node, (Or, And)):
            options.append(self._whole_product_option(selector.label, node))
        form = render_cnf(clauses) if clauses is not None else render(node) + " (no CNF within bound)"
        if is_composite(selector):
            allowed = [o for o in options
                       if o[0].cost.dims <= self.max_dims and o[0].cost.heads <= self.max_heads]
        else:
            allowed = options  # a single Select costs what the program asks; no blow-up to cap
        if not allowed:
            cheapest = min((o for o, _ in options), key=lambda o: o.cost.score)
            raise CompilationError(
                f"{selector.label} (used by {used_by}): {written(selector)} needs at least "
                f"{cheapest.cost} with the cheapest construction ({cheapest.name}), over the limits "
                f"max_selector_dims={self.max_dims}, max_heads_per_selector={self.max_heads}. "
                + _rewrite_hint([o for o, _ in options])
            )
        best, build = min(allowed, key=lambda o: o[0].cost.score)
        return SelectorChoice(
            selector=selector.label,
            used_by=used_by,
            written=written(selector),
            normal_form=form,
            chosen=build(best),
            alternatives=tuple(o for o, _ in options if o.name != best.name),
            atoms=tuple(written_atoms),
        )

    def _size(self, inputs: tuple[str, ...]) -> int:
        """Values of one side: a single SOp's values, or its tuple's (None included)."""
        if len(inputs) == 1:
            return sum(v is not None for v in self.atoms.values(inputs[0]))
        return math.prod(len(self.atoms.values(label)) for label in inputs)

    def _product_cost(self, atoms: list[Atom]) -> tuple[dict[tuple[str, ...], int], int]:
        """A product encoding of `atoms`: its tuple SOps (inputs -> value count) and its
        atom's key size (at most the smaller side's values)."""
        queries = tuple(dict.fromkeys(a.query for a in atoms))
        keys = tuple(dict.fromkeys(a.key for a in atoms))
        tuples = {inputs: self._size(inputs) for inputs in (queries, keys) if len(inputs) > 1}
        return tuples, min(self._size(queries), self._size(keys))

    # ------------------------------------------------------------------ CNF in one head

    def _conjunction_option(self, name: str, clauses: list[list[Atom]]):
        if any(not clause for clause in clauses):  # FALSE: one head whose atom is all-false
            empty = Atom(f"{name}:FALSE", "tokens", "tokens", (), (), np.zeros((0, 0), bool))
            return Construction("constant FALSE", Cost(1, 1, 0, 0, False, False), ((empty,),)), \
                lambda option: option
        key_size = 1 if clauses else 2  # the BOS columns (lower.bos_columns)
        dims = hidden = 0
        tuples: dict[tuple[str, ...], int] = {}  # shared by the clauses that read them
        kinds = []  # per clause: "atom", a feature's side ("query", "key") or "product"
        for clause in clauses:
            keys = {a.key for a in clause}
            queries = {a.query for a in clause}
            if len(clause) == 1:
                kinds.append("atom")
                key_size += _live(clause[0])
            elif len(keys) == 1 or len(queries) == 1:
                kinds.append("query" if len(keys) == 1 else "key")
                size = len(clause[0].key_values if len(keys) == 1 else clause[0].query_values)
                dims += size
                hidden += 2 * size
                key_size += size
            else:
                kinds.append("product")
                new, key = self._product_cost(clause)
                tuples.update(new)
                key_size += key
        dims += sum(tuples.values())
        hidden += sum(tuples.values())
        helpers = any(kind != "atom" for kind in kinds)  # features or tuples: MLPs first
        label = ("product encoding" if "product" in kinds else "clause features"
                 if helpers else "conjunction" if len(clauses) > 1 else "atom")
        cost = Cost(1, key_size, dims, hidden, helpers, "product" in kinds)
        return Construction(label, cost), \
            lambda option: self._conjunction(name, clauses, kinds, option)

    def _conjunction(self, name: str, clauses: list[list[Atom]], kinds: list[str],
                     option: Construction):
        head: list[Atom] = []
        features: list[FeatureSpec] = []
        tuples: list[TupleSpec] = []
        notes: list[str] = []
        for j, (clause, kind) in enumerate(zip(clauses, kinds)):
            label = f"{name}:clause{j}"
            if kind == "atom":
                atom = clause[0]
            elif kind != "product":
                feature, atom = _feature(label, clause, side=kind)
                features.append(feature)
            else:
                pair_tuples, atom, sizes = self._product(label, clause, Or(tuple(clause)))
                tuples.extend(t for t in pair_tuples if t not in tuples)
                notes.append(f"OR of {len(clause)} atoms with no shared side: product "
                             f"encoding, {sizes}")
            head.append(atom)
        return dataclasses.replace(option, heads=(tuple(head),), features=tuple(features),
                                   tuples=tuple(tuples), notes=tuple(notes))

    def _product(self, label: str, atoms: list[Atom], node) -> tuple[list[TupleSpec], Atom, str]:
        """One atom over tuple SOps of the atoms' query SOps and of their key SOps (a single
        SOp where a side has one), its relation `node` (an OR clause, or the whole selector)."""
        queries = tuple(dict.fromkeys(a.query for a in atoms))
        keys = tuple(dict.fromkeys(a.key for a in atoms))
        specs, sides = [], []
        for inputs in (queries, keys):
            if len(inputs) == 1:
                sides.append((inputs[0], tuple(v for v in self.atoms.values(inputs[0]) if v is not None)))
            else:
                spec = TupleSpec(tuple_label(inputs), inputs)
                if spec not in specs:
                    specs.append(spec)
                choices = [self.atoms.values(i) for i in inputs]
                sides.append((spec.label, tuple(itertools.product(*choices))))
        (query_label, query_values), (key_label, key_values) = sides
        lifted = {id(a): _lift(a, queries, query_values, keys, key_values) for a in atoms}
        atom = Atom(label, query_label, key_label, query_values, key_values,
                    evaluate(node, lifted), tuple(f for a in atoms for f in a.folded))
        separate = sum(len(a.query_values) + len(a.key_values) for a in atoms)
        note = (f"{len(query_values):,} query and {len(key_values):,} key values "
                f"(sum would be {separate:,})")
        return specs, atom, note

    # ------------------------------------------------------------------ whole product

    def _whole_product_option(self, name: str, node):
        tuples, key_size = self._product_cost(atoms_in(node))
        new = sum(tuples.values())
        cost = Cost(1, key_size + 1, new, new, bool(new), bool(new))
        return Construction("whole product", cost), \
            lambda option: self._whole_product(name, node, option)

    def _whole_product(self, name: str, node, option: Construction) -> Construction:
        atoms = atoms_in(node)
        specs, atom, sizes = self._product(f"{name}:product", atoms, node)
        note = f"whole-selector product encoding over {len(atoms)} atoms: {sizes}"
        return dataclasses.replace(option, heads=((atom,),), tuples=tuple(specs), notes=(note,))


def _feature(label: str, clause: list[Atom], side: str) -> tuple[FeatureSpec, Atom]:
    """An OR clause whose atoms share their key (side "query") or query SOp (side "key")."""
    if side == "query":
        shared = clause[0].key
        shared_values = clause[0].key_values
        terms = tuple((a.query, a.query_values, a.relation) for a in clause)
    else:
        shared = clause[0].query
        shared_values = clause[0].query_values
        terms = tuple((a.key, a.key_values, a.relation.T) for a in clause)
    query, key = (label, shared) if side == "query" else (shared, label)
    atom = Atom(label, query, key, shared_values, shared_values,
                np.eye(len(shared_values), dtype=bool), tuple(f for a in clause for f in a.folded))
    return FeatureSpec(label, side, shared, shared_values, terms), atom


def _inclusion_exclusion_option(terms: list[list[Atom]]):
    """width(A | B) = width(A) + width(B) - width(A & B), ...: one head per non-empty subset."""
    heads, signs = [], []
    for size in range(1, len(terms) + 1):
        for subset in itertools.combinations(terms, size):
            heads.append(tuple(merge_group([a for term in subset for a in term],
                                           conjunctive_group=True)))
            signs.append(1 if size % 2 else -1)
    n_values = max((len(a.query_values) for h in heads for a in h), default=1)
    cost = Cost(len(heads), sum(_key_size(h) for h in heads), len(heads),
                len(heads) * 2 * n_values, True, True)
    note = (f"OR of {len(terms)} terms by inclusion-exclusion: {len(heads)} conjunction "
            f"heads combined by an MLP (2^{len(terms)} - 1)")
    option = Construction("inclusion-exclusion", cost)
    return option, lambda option: dataclasses.replace(
        option, heads=tuple(heads), signs=tuple(signs), notes=(note,))


def _live(atom: Atom) -> int:
    """Key columns the atom's bilinear form needs: the live values of its smaller side."""
    if not atom.relation.size:
        return 0
    return min(int(atom.relation.any(axis=1).sum()), int(atom.relation.any(axis=0).sum()))


def _key_size(atoms: Sequence[Atom]) -> int:
    return (1 if atoms else 2) + sum(_live(atom) for atom in atoms)  # BOS columns, then atoms


def _lift(atom: Atom, queries, query_values, keys, key_values) -> np.ndarray:
    """The atom's relation on tuple values (or on a single SOp's values)."""
    q_index = {identity_key(v): i for i, v in enumerate(atom.query_values)}
    k_index = {identity_key(v): i for i, v in enumerate(atom.key_values)}
    q_pos = queries.index(atom.query)
    k_pos = keys.index(atom.key)
    q_rows = [q_index.get(identity_key(t[q_pos] if len(queries) > 1 else t)) for t in query_values]
    k_cols = [k_index.get(identity_key(t[k_pos] if len(keys) > 1 else t)) for t in key_values]
    out = np.zeros((len(query_values), len(key_values)), dtype=bool)
    valid_q = [i for i, r in enumerate(q_rows) if r is not None]
    valid_k = [j for j, c in enumerate(k_cols) if c is not None]
    if valid_q and valid_k:
        sub = atom.relation[np.ix_([q_rows[i] for i in valid_q], [k_cols[j] for j in valid_k])]
        out[np.ix_(valid_q, valid_k)] = sub
    return out


def _rewrite_hint(options: list[Construction]) -> str:
    fewest_heads = min(options, key=lambda o: o.cost.heads)
    fewest_dims = min(options, key=lambda o: o.cost.dims)
    return (
        f"Cheapest in dimensions: {fewest_dims.name} ({fewest_dims.cost}); fewest heads: "
        f"{fewest_heads.name} ({fewest_heads.cost}). Raise the limit, or rewrite the selector so "
        f"that the atoms of each OR share their key SOp or their query SOp (then an MLP "
        f"feature of linear size replaces the product)"
    )
