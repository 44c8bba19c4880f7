"""Selector normal forms: a Boolean selector as a tree of atoms, then as clauses.

The first two of the three steps selectors.py lowers a selector in (docs/selectors.md):
`to_nnf` pushes NOT down to the atoms (De Morgan; an atom's negation negates its
relation) and `simplify` drops constant atoms and merges atoms over one (query, key)
pair; `normal_form` distributes the tree into an AND of OR-clauses (CNF) or an OR of
AND-terms (DNF), up to a bound. `render` and `written` give the forms as text for the
report. The constructions and their costs, which read these forms, are selectors.py's.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rasp_compiler.compiler.atoms import Atom
from rasp_compiler.errors import UnsupportedExpressionError
from rasp_compiler.lang import rasp

MAX_CLAUSES = 32  # CNF distribution stops here and falls back to the whole product


class _Constant:
    def __init__(self, value: bool):
        self.value = value

    def __repr__(self) -> str:
        return "TRUE" if self.value else "FALSE"


TRUE = _Constant(True)
FALSE = _Constant(False)


@dataclass(frozen=True)
class And:
    children: tuple


@dataclass(frozen=True)
class Or:
    children: tuple


# --------------------------------------------------------------------------- normal form


def to_nnf(selector: rasp.Selector, make_atom: Callable, nullable: Callable[[str], bool],
           negate: bool = False):
    """The selector with NOT pushed down to the atoms (negated atoms negate their relation)."""
    if isinstance(selector, rasp.SelectorNot):
        return to_nnf(selector.inner, make_atom, nullable, not negate)
    if isinstance(selector, (rasp.SelectorAnd, rasp.SelectorOr)):
        children = (to_nnf(selector.fst, make_atom, nullable, negate),
                    to_nnf(selector.snd, make_atom, nullable, negate))
        conjunction = isinstance(selector, rasp.SelectorAnd) != negate
        return And(children) if conjunction else Or(children)
    atom = make_atom(selector)
    if negate:
        for label in {atom.query, atom.key}:
            if nullable(label):
                raise UnsupportedExpressionError(
                    f"{selector.label}: it is negated, but {label} can be None (an Aggregate "
                    f"that selected nothing); NOT would select those positions, which a head "
                    f"cannot see. Give that Aggregate a default, or negate the predicate instead"
                )
        atom = atom.with_relation(~atom.relation, f"~{atom.select}")
    return atom


def simplify(node, nullable: Callable[[str], bool]):
    """Flatten nested AND/OR, merge atoms over the same pair, fold constants."""
    if isinstance(node, Atom):
        if not node.relation.any():
            return FALSE
        if node.relation.all() and not nullable(node.query) and not nullable(node.key):
            return TRUE
        return node
    if isinstance(node, _Constant):
        return node
    is_and = isinstance(node, And)
    flat = []
    for child in node.children:
        child = simplify(child, nullable)
        if isinstance(child, type(node)):
            flat.extend(child.children)
        else:
            flat.append(child)
    absorbing, neutral = (FALSE, TRUE) if is_and else (TRUE, FALSE)
    if any(child is absorbing for child in flat):
        return absorbing
    flat = [child for child in flat if child is not neutral]
    merged = merge_group([child for child in flat if isinstance(child, Atom)], is_and)
    others = [child for child in flat if not isinstance(child, Atom)]
    children = [simplify(atom, nullable) for atom in merged] + others
    if any(child is absorbing for child in children):
        return absorbing
    children = [child for child in children if child is not neutral]
    if not children:
        return neutral
    if len(children) == 1:
        return children[0]
    return And(tuple(children)) if is_and else Or(tuple(children))


def normal_form(node, conjunctive: bool, limit: int = MAX_CLAUSES) -> list[list[Atom]] | None:
    """CNF (conjunctive=True: AND of OR-clauses) or DNF as lists of atoms; None past `limit`."""
    outer, inner = (And, Or) if conjunctive else (Or, And)
    if node is TRUE:
        return [] if conjunctive else [[]]
    if node is FALSE:
        return [[]] if conjunctive else []
    if isinstance(node, Atom):
        return [[node]]
    parts = [normal_form(child, conjunctive, limit) for child in node.children]
    if any(part is None for part in parts):
        return None
    if isinstance(node, outer):
        combined = [group for part in parts for group in part]
    else:
        combined = []
        for choice in itertools.product(*parts):
            combined.append([atom for group in choice for atom in group])
            if len(combined) > limit:
                return None
    if len(combined) > limit:
        return None
    return combined


def merge_group(atoms: Sequence[Atom], conjunctive_group: bool) -> list[Atom]:
    """Merge atoms over the same pair inside one clause (OR) or one term (AND)."""
    merged: dict[tuple[str, str], Atom] = {}
    for atom in atoms:
        old = merged.get(atom.pair)
        if old is None:
            merged[atom.pair] = atom
        elif conjunctive_group:
            merged[atom.pair] = old.with_relation(old.relation & atom.relation,
                                                  f"{old.select}&{atom.select}")
        else:
            merged[atom.pair] = old.with_relation(old.relation | atom.relation,
                                                  f"{old.select}|{atom.select}")
    return list(merged.values())


def render(node) -> str:
    if isinstance(node, Atom):
        return node.name()
    if isinstance(node, _Constant):
        return repr(node)
    joiner = " & " if isinstance(node, And) else " | "
    return "(" + joiner.join(render(child) for child in node.children) + ")"


def render_cnf(clauses: list[list[Atom]]) -> str:
    if not clauses:
        return "TRUE"
    parts = []
    for clause in clauses:
        if not clause:
            parts.append("FALSE")
        elif len(clause) == 1:
            parts.append(clause[0].name())
        else:
            parts.append("(" + " | ".join(atom.name() for atom in clause) + ")")
    return " & ".join(parts)


def written(selector: rasp.Selector) -> str:
    """The selector as the user wrote it."""
    if isinstance(selector, rasp.Select):
        return (f"Select({selector.keys.label}, {selector.queries.label}, "
                f"{rasp.predicate_name(selector.predicate)})")
    if isinstance(selector, rasp.ConstantSelector):
        return f"ConstantSelector({selector.label})"
    if isinstance(selector, rasp.SelectorNot):
        return f"~{written(selector.inner)}"
    joiner = " & " if isinstance(selector, rasp.SelectorAnd) else " | "
    return f"({written(selector.fst)}{joiner}{written(selector.snd)})"


def is_composite(selector: rasp.Selector) -> bool:
    return isinstance(selector, (rasp.SelectorAnd, rasp.SelectorOr, rasp.SelectorNot))


def atoms_in(node) -> list[Atom]:
    if isinstance(node, Atom):
        return [node]
    if isinstance(node, _Constant):
        return []
    return [a for child in node.children for a in atoms_in(child)]


def evaluate(node, lifted: dict[int, np.ndarray]) -> np.ndarray:
    if isinstance(node, Atom):
        return lifted[id(node)]
    parts = [evaluate(child, lifted) for child in node.children]
    out = parts[0].copy()
    for part in parts[1:]:
        out = (out & part) if isinstance(node, And) else (out | part)
    return out
