"""Boolean selectors: normal form, one head for AND, features, products, the report, limits."""

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import CompilationError, UnsupportedExpressionError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.selector_forms import written
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.verify.checker import verify

from cases import CASES

T, I, C = rasp.tokens, rasp.indices, rasp.Comparison
VOCAB = [0, 1, 2, 3]


def sel(keys, queries, predicate, name):
    return rasp.Select(keys, queries, predicate).named(name)


def choices(program, vocab=VOCAB, n=5, **options):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n), **options)
    return {p.selector: p for p in ops.selector_choices}


def test_de_morgan_and_negated_atoms():
    a, b = sel(T, T, C.LT, "a"), sel(I, I, C.EQ, "b")
    choice = choices(rasp.SelectorWidth((~(a | b)).named("nor")))["nor"]
    (head,) = choice.chosen.heads  # NOT (a OR b) = NOT a AND NOT b: one conjunction head
    relations = {atom.select: atom.relation for atom in head}
    assert set(relations) == {"~a", "~b"}
    assert np.array_equal(relations["~a"], ~np.array([[k < q for k in VOCAB] for q in VOCAB]))
    assert choice.chosen.name == "conjunction"


def test_atoms_over_the_same_pair_fold_into_one_predicate():
    lt, eq = sel(T, T, C.LT, "lt"), sel(T, T, C.EQ, "eq")
    choice = choices(rasp.SelectorWidth((lt | eq).named("le")))["le"]
    (head,) = choice.chosen.heads
    (atom,) = head
    assert choice.chosen.name == "conjunction" or choice.chosen.name == "atom"
    assert np.array_equal(atom.relation, np.array([[k <= q for k in VOCAB] for q in VOCAB]))
    assert choice.chosen.cost.heads == 1 and not choice.flags()


def test_constants_simplify():
    always = sel(T, T, C.TRUE, "always")
    never = sel(I, I, C.FALSE, "never")
    both = choices(rasp.SelectorWidth((always & sel(I, I, C.LT, "lt")).named("x")))["x"]
    ((atom,),) = both.chosen.heads  # TRUE AND lt is lt alone
    assert (atom.select, atom.query, atom.key) == ("lt", "indices", "indices")
    empty = choices(rasp.SelectorWidth((never & sel(T, T, C.EQ, "eq")).named("y")))["y"]
    assert empty.chosen.name == "constant FALSE"
    model = compile_program(rasp.SelectorWidth((never & sel(T, T, C.EQ, "eq2")).named("z")), VOCAB, 4)
    assert model.run([[1, 2, 1]]) == [[0, 0, 0]]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_and_of_k_atoms_over_different_pairs_is_one_head_with_summed_key_size(k):
    atoms = [
        sel(T, T, C.LEQ, "a0"),
        sel(I, I, C.NEQ, "a1"),
        sel(I, T, C.GT, "a2"),
        sel(T, I, lambda key, q: key != q, "a3"),
    ][:k]
    selector = atoms[0]
    for atom in atoms[1:]:
        selector = selector & atom
    width = rasp.SelectorWidth(selector.named("conj")).named("w")
    model = compile_program(width, VOCAB, 5)
    entry = model.selector_report().entry("conj")
    assert entry.construction == "conjunction" and entry.flags == ()
    (layer,) = model.info.layers
    (head,) = layer.heads
    separate = [compile_program(rasp.SelectorWidth(a), VOCAB, 5).info.layers[0].heads[0]
                for a in atoms]
    assert head.key_size == sum(h.key_size - 1 for h in separate) + 1  # one BOS column
    assert verify(width, model, exhaustive_up_to=4).ok


def test_or_with_a_shared_key_uses_a_linear_feature_not_a_product():
    shared = (sel(T, T, C.EQ, "same") | sel(T, I, C.EQ, "token_is_index")).named("shared_key")
    width = rasp.SelectorWidth(shared)
    model = compile_program(width, VOCAB, 5)
    entry = model.selector_report().entry("shared_key")
    assert entry.construction == "clause features"
    assert "4 new dims" in entry.cost  # one per token value
    assert not any(f.startswith("exponential") for f in entry.flags)
    assert verify(width, model, exhaustive_up_to=4).ok


def test_or_with_a_shared_query_builds_the_feature_on_the_key_side():
    shared = (sel(T, I, C.LT, "token_below") | sel(I, I, C.EQ, "self")).named("shared_query")
    (feature,) = choices(rasp.SelectorWidth(shared))["shared_query"].chosen.features
    assert feature.side == "key" and feature.shared == "indices"


def test_or_with_no_shared_side_is_flagged_exponential_with_its_size():
    crossed = (sel(T, T, C.LT, "smaller") | sel(I, I, C.GT, "later")).named("crossed")
    agg = rasp.numerical(rasp.Aggregate(crossed, rasp.numerical(rasp.Map(float, T)), default=0))
    model = compile_program(agg, VOCAB, 5)
    entry = model.selector_report().entry("crossed")
    assert entry.construction in ("product encoding", "whole product")
    (flag,) = [f for f in entry.flags if f.startswith("exponential")]
    assert "20 query and 20 key values" in flag and "(sum would be 18)" in flag
    assert "inclusion-exclusion" not in [name for name, _ in entry.alternatives]  # not for means
    assert verify(agg, model, exhaustive_up_to=4).ok


def test_inclusion_exclusion_is_used_for_widths_when_dims_are_capped():
    crossed = (sel(T, T, C.LT, "smaller") | sel(I, I, C.GT, "later")).named("crossed")
    width = rasp.SelectorWidth(crossed).named("count")
    model = compile_program(width, VOCAB, 5, max_selector_dims=30)
    entry = model.selector_report().entry("crossed")
    assert entry.construction == "inclusion-exclusion"
    assert len(entry.heads) == 3
    assert "extra-heads: 3 heads instead of 1" in entry.flags
    assert verify(width, model, exhaustive_up_to=4).ok
    numerical = rasp.numerical(rasp.SelectorWidth((sel(T, T, C.LT, "s2") | sel(I, I, C.GT, "l2"))
                                                  .named("crossed2")))
    model = compile_program(numerical, VOCAB, 5, max_selector_dims=30)
    assert model.selector_report().entry("crossed2").construction == "inclusion-exclusion"
    assert verify(numerical, model, exhaustive_up_to=4).ok


def test_inclusion_exclusion_parts_of_a_categorical_width_use_the_scaled_bos_share():
    """Parts that are only summed and rounded decode from s/(s+w), whose steps stay apart
    at long lengths (widths.py; sort_freq compiles at 256 thanks to it)."""
    n = 24  # above widths.UNSCALED_UP_TO
    crossed = (sel(T, T, C.LT, "smaller") | sel(I, I, C.GT, "later")).named("crossed")
    width = rasp.SelectorWidth(crossed).named("count")
    model = compile_program(width, VOCAB, n, max_selector_dims=60)  # not the product (97)
    shares = {op.bos_share for label, op in model.ops.attention.items() if ".ie" in label}
    assert shares == {float(n)}
    assert verify(width, model, samples=40, backend="numpy").ok


def test_extra_layer_is_flagged_only_when_the_feature_mlp_delays_the_head():
    shared = (sel(T, T, C.EQ, "same") | sel(T, I, C.EQ, "token_is_index")).named("delayed")
    model = compile_program(rasp.SelectorWidth(shared), VOCAB, 5)
    entry = model.selector_report().entry("delayed")
    assert "extra-layer: +1 layer" in " ".join(entry.flags)
    # Here the head waits for `hist` anyway, so the feature MLP costs no layer.
    hist = lib.make_hist()
    free = (sel(T, hist, lambda k, q: k == q, "token_is_count")
            | sel(T, I, C.EQ, "token_is_index2")).named("free")
    model = compile_program(rasp.SelectorWidth(free), VOCAB, 5)
    assert not any("extra-layer" in f for f in model.selector_report().entry("free").flags)


def test_limits_stop_blow_ups_with_the_cost_and_a_cheaper_rewrite():
    crossed = (sel(T, T, C.LT, "smaller") | sel(I, I, C.GT, "later")).named("crossed")
    agg = rasp.numerical(rasp.Aggregate(crossed, rasp.numerical(rasp.Map(float, T)), default=0))
    with pytest.raises(CompilationError, match=(
            r"crossed \(used by .*\): \(Select\(tokens, tokens, LT\) \| Select\(indices, "
            r"indices, GT\)\) needs at least .* over the limits max_selector_dims=10.*share")):
        compile_program(agg, VOCAB, 5, max_selector_dims=10)
    width = rasp.SelectorWidth(crossed)
    with pytest.raises(CompilationError, match="max_heads_per_selector=1"):
        compile_program(width, VOCAB, 5, max_selector_dims=10, max_heads_per_selector=1)


def test_negating_an_atom_on_a_value_that_may_be_none_is_refused():
    shifted = lib.shift_by(1, T)
    negated = rasp.SelectorNot(sel(shifted, T, C.EQ, "same_as_previous"))
    with pytest.raises(UnsupportedExpressionError, match="same_as_previous: it is negated.*None"):
        compile_program(rasp.SelectorWidth(negated), VOCAB, 4)
    # `~` folds a Select (as tracr's does) into one with the negated predicate, whose
    # None entries stay unselected like any Select's: that compiles.
    folded = ~sel(shifted, T, C.EQ, "same_as_previous")
    assert isinstance(folded, rasp.Select) and folded.predicate is C.NEQ
    width = rasp.SelectorWidth(folded)
    model = compile_program(width, VOCAB, 4)
    assert verify(width, model, exhaustive_up_to=4).ok
    assert model.run([[1, 1, 2]]) == [[0, 0, 2]]


@pytest.mark.parametrize("predicate", [C.TRUE, lambda key, query: True],
                         ids=["Comparison.TRUE", "always_true_function"])
def test_an_always_true_atom_over_an_sop_that_can_be_none_leaves_none_unselected(predicate):
    """Issue 22: with the None guard in selectors.simplify dropped, the always-true atom
    folded to constant TRUE and the model said [1, 2, 3] where the evaluator says [0, 1, 2]
    (position 0 of shift_by(1, tokens) is None: a Select entry with a None key is False)."""
    shifted = lib.shift_by(1, T)
    width = rasp.SelectorWidth(rasp.Select(shifted, T, predicate) & rasp.Select(I, I, C.LEQ))
    assert width([1, 2, 3]) == [0, 1, 2]
    model = compile_program(width, [1, 2, 3], 4)
    assert model.run([[1, 2, 3]]) == [[0, 1, 2]]
    report = verify(width, model, exhaustive_up_to=4)
    assert report.ok and report.mismatch_count == 0
    # The same atom on the query side, OR'd with an always-false one, and negated (folded).
    for selector in (rasp.Select(T, shifted, predicate) | rasp.Select(shifted, T, C.FALSE),
                     ~rasp.Select(shifted, T, lambda key, query: False)):
        width = rasp.SelectorWidth(selector)
        model = compile_program(width, [1, 2, 3], 4)
        assert verify(width, model, exhaustive_up_to=4).ok, selector


def test_the_report_lists_every_selector_that_reaches_a_head():
    model = compile_program(lib.make_reverse(T), ["a", "b"], 4)
    report = model.selector_report()
    assert [e.selector for e in report] == ["all_true", "flip"]
    text = str(report)
    assert "written:      Select(indices, opp_index_minus_1, EQ)" in text
    assert report.flagged() == []


def test_written_form_keeps_the_expression_as_the_user_wrote_it():
    expr = ~(sel(T, T, C.LT, "a") & sel(I, I, C.EQ, "b"))
    assert written(expr) == "~(Select(tokens, tokens, LT) & Select(indices, indices, EQ))"


@pytest.mark.parametrize("predicate", [C.TRUE, lambda k, q: True], ids=["TRUE", "lambda"])
@pytest.mark.parametrize("side", ["key", "query"])
def test_an_always_true_atom_over_a_sop_that_can_be_none_is_not_constant_true(predicate, side):
    """A Select never selects where either side is None, so an always-true predicate over
    shift_by(1, tokens) (None at position 0) is not TRUE: simplify keeps the atom (the
    issue's program gave [1, 2, 3] for [0, 1, 2] when it folded to TRUE)."""
    shifted = lib.shift_by(1, T)
    atom = sel(shifted, T, predicate, "always") if side == "key" else sel(T, shifted, predicate,
                                                                         "always")
    width = rasp.SelectorWidth(atom & sel(I, I, C.LEQ, "up_to_here")).named("width")
    model = compile_program(width, VOCAB, 4)
    expected = [0, 1, 2] if side == "key" else [0, 2, 3]
    assert width([1, 2, 3]) == expected and model.run([[1, 2, 3]]) == [expected]
    assert verify(width, model, exhaustive_up_to=4, backend="numpy", strict=True).ok


def test_a_clause_feature_is_no_value_of_the_program_and_has_no_readout():
    """The feature's dims are a multi-hot over the shared SOp's values (mlp.clause_feature),
    not the one-hot of a value: the model reads no SOp from them."""
    from rasp_compiler.errors import InvalidInputError

    width = rasp.SelectorWidth(sel(T, T, C.EQ, "same") | sel(T, I, lambda k, q: k == q % 4,
                                                               "token_is_index")).named("w")
    model = compile_program(width, VOCAB, 5)
    (feature,) = [label for label, unit in model.ops.units.items() if unit.feature is not None]
    assert model.layout.dims_of(feature)  # in the residual ...
    assert feature not in model.readouts  # ... but not readable as a value
    with pytest.raises(InvalidInputError, match=f"{feature!r} has no readout in this model"):
        model.run([[0, 1]], label=feature)
    assert model.run([[0, 1, 0]], backend="numpy") == [width([0, 1, 0])]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_chosen_constructions_cost_counts_the_key_size_built(case, compiled_case):
    """The cost model chooses between constructions by their key sizes, computed before
    anything is built: exact for every construction but a product encoding's, whose key
    size counts every tuple value (at most that many are live)."""
    model = compiled_case(case)
    built = {h.label: h.key_size for layer in model.info.layers for h in layer.heads}
    for choice in model.ops.selector_choices:
        assert choice.heads and all(head in built for head in choice.heads), choice.selector
        size = sum(built[head] for head in choice.heads)
        if choice.chosen.name in ("product encoding", "whole product"):
            assert size <= choice.chosen.cost.key_size, choice.selector
        else:
            assert size == choice.chosen.cost.key_size, (choice.selector, choice.chosen.name)


def test_a_normal_form_past_its_bound_is_not_built():
    """(a1 & b1) | ... | (a6 & b6) has 2^6 = 64 CNF clauses, past MAX_CLAUSES (32): no
    CNF, and the whole-selector product builds it."""
    from rasp_compiler.compiler.selector_forms import MAX_CLAUSES

    terms = [sel(T, T, lambda k, q, j=j: (k + j) % 4 == q, f"a{j}")
             & sel(I, I, lambda k, q, j=j: k == (q + j) % 5, f"b{j}") for j in range(6)]
    selector = terms[0]
    for term in terms[1:]:
        selector = selector | term
    choice = choices(rasp.SelectorWidth(selector.named("wide")), max_selector_dims=10 ** 6,
                     max_heads_per_selector=64)["wide"]
    assert 2 ** 6 > MAX_CLAUSES and choice.normal_form.endswith("(no CNF within bound)")
    assert choice.chosen.name == "whole product"


def test_a_feature_reads_its_other_sops_values_by_identity():
    """0 and 0.0 are two values of the other SOp, with two rows of the relation: the
    feature of 0.0 is its own row's, not 0's (identity.py)."""
    from rasp_compiler.compiler.selectors import FeatureSpec

    relation = np.array([[True, False], [False, True], [True, True]])
    spec = FeatureSpec("f", "query", "key", ("k1", "k2"), (("other", (0, 0.0, False), relation),))
    assert spec(0) == ("k1",) and spec(0.0) == ("k2",) and spec(False) == ("k1", "k2")
    assert spec(None) == () and spec(7) == ()


def test_max_heads_per_selector_alone_rules_out_inclusion_exclusion():
    """Where the dims cap leaves only inclusion-exclusion (3 heads), a cap of 2 heads
    refuses, naming the heads limit; and inclusion-exclusion is never offered for a
    single AND term (it would be the conjunction head plus an MLP)."""
    crossed = (sel(T, T, C.LT, "smaller") | sel(I, I, C.GT, "later")).named("crossed")
    width = rasp.SelectorWidth(crossed).named("count")
    with pytest.raises(CompilationError, match=r"max_heads_per_selector=2\. Cheapest in dimensions: "
                                               r"inclusion-exclusion \(3 heads"):
        compile_program(width, VOCAB, 5, max_selector_dims=30, max_heads_per_selector=2)
    both = choices(rasp.SelectorWidth((sel(T, T, C.LT, "s") & sel(I, I, C.GT, "l")).named("both")))
    assert both["both"].chosen.name == "conjunction"
    assert "inclusion-exclusion" not in [option.name for option in both["both"].alternatives]
