import warnings

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import CompileWarning, UnsafeAggregateError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.program_files import load_program
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.key_facts import KeyFacts
from rasp_compiler.compiler.safety import check_categorical_aggregates
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values
from rasp_compiler.verify.checker import verify


def ops_of(program, vocab, n):
    graph = build_graph(program)
    return rewrite(graph, infer_values(graph, vocab, n))


def checks_of(program, vocab, n):
    ops = ops_of(program, vocab, n)
    return {c.label: c for c in check_categorical_aggregates(ops, schedule(ops).live)}


def facts_of(program, vocab, n, *labels):
    return KeyFacts(ops_of(program, vocab, n), labels)


def compile_without_warning(program, vocab, n):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        return compile_program(program, vocab, n)


def test_selecting_one_position_or_one_value_is_proven_safe():
    checks = checks_of(lib.make_reverse(rasp.tokens), ["a", "b"], 5)
    assert checks["reverse"].status == "proven"
    same = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ),
                          rasp.Map(lambda t: t.upper(), rasp.tokens)).named("same")
    assert checks_of(same, ["a", "b"], 5)["same"].status == "proven"


def test_a_mixing_aggregate_is_refused_with_an_input_that_shows_it():
    mixed = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
                           rasp.tokens).named("prefix_copy")
    check = checks_of(mixed, ["a", "b"], 5)["prefix_copy"]
    assert check.status == "unsafe"
    assert len(set(check.counterexample)) > 1
    with pytest.raises(UnsafeAggregateError, match=r"prefix_copy: .*on the input \[.*allow_unsafe"):
        compile_program(mixed, ["a", "b"], 5)


def _by_key_with_index_tie_break(n):
    """Sorted by a Map of the tokens, ties in input order: built like tracr's make_sort."""
    rank = rasp.Map(lambda t: {"a": 2, "b": 0, "c": 1}[t], rasp.tokens).named("rank")
    return lib.make_sort(rasp.tokens, rank, max_seq_len=n, min_key=1)


@pytest.mark.parametrize("program, vocab, n, ranked", [
    # The tie-broken key is compared over its parts (lexicographic.py); at these lengths
    # the comparison's cheapest construction is the tuple of the parts.
    (lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1), [1, 2, 3], 5,
     "(tokens, indices)"),
    (lib.make_sort_freq(5), ["a", "b", "c"], 5, "(hist, indices)"),
    (_by_key_with_index_tie_break(4), ["a", "b", "c"], 4, "(tokens, indices)"),
    (lib.make_sort_unique(rasp.tokens, rasp.SequenceMap(lambda t, i: (t, i), rasp.tokens,
                                                        rasp.indices).named("pairs")),
     [1, 2, 3], 4, "pairs"),
    # The Map is folded into the Select: the head ranks indices by -i.
    (lib.make_sort_unique(rasp.tokens, rasp.Map(lambda i: -i, rasp.indices)), ["x", "y"], 4,
     "indices"),
], ids=["make_sort", "make_sort_freq", "key with index tie-break", "(token, index) keys",
        "reversed indices"])
def test_sorting_by_keys_unique_per_position_is_proven(program, vocab, n, ranked):
    model = compile_without_warning(program, vocab, n)
    ((label, status, reason),) = model.info.aggregate_checks
    assert status == "proven", reason
    assert "target_pos holds a different value at every position" in reason
    assert "a permutation of 0..n-1" in reason
    assert "SelectorWidth of smaller, a strict total order on the" in reason
    assert f"values of {ranked};" in reason
    assert verify(program, model, exhaustive_up_to=3, backend="numpy").ok


@pytest.mark.parametrize("name", ["sort", "sort_unique", "sort_freq", "sort_ties", "argmax",
                                  "min_token"])
def test_the_bundled_sorting_programs_compile_proven_and_match_the_evaluator(name):
    spec = load_program(name)
    program = spec.make()
    model = compile_without_warning(program, spec.vocab, spec.max_seq_len)
    assert [status for _, status, _ in model.info.aggregate_checks] == ["proven"]
    assert verify(program, model, exhaustive_up_to=3, backend="numpy").ok


def test_keys_that_determine_the_values_prove_sort_unique_on_repeated_tokens():
    # Repeated tokens share a target position, but they hold the same token: no mixing.
    check = checks_of(lib.make_sort_unique(rasp.tokens, rasp.tokens), [1, 2, 3], 4)["sort"]
    assert check.status == "proven"
    assert "equal values of target_pos hold equal values of tokens" in check.reason
    # Sorting positions by repeated tokens does mix them: still refused.
    check = checks_of(lib.make_sort_unique(rasp.indices, rasp.tokens), [1, 2, 3], 4)["sort"]
    assert check.status == "unsafe"


def test_a_tie_break_that_collides_is_not_proven():
    keys = rasp.SequenceMap(lambda t, i: t + i // 2, rasp.tokens, rasp.indices).named("keys")
    program = lib.make_sort_unique(rasp.tokens, keys)
    facts = facts_of(program, [1, 2, 3], 4, "target_pos")
    assert facts.unique_chain("keys") is None and facts.unique_chain("target_pos") is None
    assert "keys gives 1 on both (1, 0) and (1, 1)" in facts.notes["keys"]
    assert checks_of(program, [1, 2, 3], 4)["sort"].status == "unsafe"


def test_a_wrong_tie_break_is_caught_by_the_search():
    # Ties broken with index / 5 collide once indices reach 5: sorting at length 12 mixes.
    program = lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)
    facts = facts_of(program, [1, 2, 3], 12, "target_pos")
    assert "unique_keys gives 2.0 on both (2, 0) and (1, 5)" in facts.notes["unique_keys"]
    with pytest.raises(UnsafeAggregateError, match="sort: "):
        compile_program(program, [1, 2, 3], 12)


def test_ranking_keys_that_can_be_none_is_not_proven():
    # Distinct at every position except that position 0 holds None, which LT never selects:
    # positions 0 and 1 both count 0 smaller keys.
    keys = rasp.Map(lambda i: i if i > 0 else None, rasp.indices).named("keys")
    program = lib.make_sort_unique(rasp.tokens, keys)
    facts = facts_of(program, ["a", "b"], 4, "target_pos", "keys")
    assert facts.unique_chain("keys") is None and facts.unique_chain("target_pos") is None
    assert "keys maps 0 of indices to None" in facts.notes["keys"]
    # The head reads indices through the folded Map: 0 is compared with nothing.
    assert "neither of 0 and 1 selects the other" in facts.notes["target_pos"]
    assert checks_of(program, ["a", "b"], 4)["sort"].status == "unsafe"


def test_a_selector_width_ranks_only_by_a_total_order():
    def width(predicate):
        return rasp.SelectorWidth(rasp.Select(rasp.indices, rasp.indices, predicate).named("by"))

    for comparison, widths in ((rasp.Comparison.LT, "0..n-1"), (rasp.Comparison.GEQ, "1..n")):
        program = width(comparison).named("rank")
        facts = facts_of(program, ["a"], 4, "rank")
        assert facts.unique_chain("rank")[0].widths == widths
    for predicate, problem in (
        (rasp.Comparison.NEQ, "0 and 1 select each other"),
        # 0 counts itself, so positions holding 0 and 1 both have width 1.
        (lambda key, query: key < query or key == query == 0, "0 selects itself but 1 does not"),
        (lambda key, query: key < query and query - key < 2, "neither of 0 and 2 selects"),
        (lambda key, query: (query - key) % 3 == 1,
         "0 selects 2, which selects 1, which selects 0"),
    ):
        facts = facts_of(width(predicate).named("rank"), ["a"], 3, "rank")
        assert facts.unique_chain("rank") is None
        assert problem in facts.notes["rank"]


def test_an_aggregate_that_cannot_be_proven_compiles_with_a_warning_saying_what_is_missing():
    # The keys equal the indices on every input, but the SequenceMap building them collides
    # on value pairs that never occur together: no proof, and no input shows mixing.
    same_index = rasp.Map(lambda i: i, rasp.indices).named("same_index")
    keys = rasp.SequenceMap(lambda i, j: i if i == j else 0, rasp.indices, same_index)
    program = lib.make_sort_unique(rasp.tokens, keys.named("diag_keys"))
    assert checks_of(program, [1, 2, 3], 4)["sort"].status == "unproven"
    with pytest.warns(CompileWarning, match=(
        r"sort: could not prove .* fetch matches at most one value of target_pos per query, but "
        r"target_pos is not known to differ at every position \(diag_keys gives 0 on both "
        r"\(0, 0\) and \(1, 0\).*a proof needs a selector atom that matches at most one key")):
        model = compile_program(program, [1, 2, 3], 4)
    assert model.info.aggregate_checks == (("sort", "unproven", model.info.aggregate_checks[0][2]),)


def test_under_a_causal_mask_rankings_are_not_proofs():
    # Bidirectionally `smaller` is a permutation, so one position holds 0; with keys
    # masked to k <= q, every position that is the smallest so far counts 0.
    keys = rasp.SequenceMap(lambda t, i: t + i / 10, rasp.tokens, rasp.indices).named("keys")
    smaller = rasp.SelectorWidth(rasp.Select(keys, keys, rasp.Comparison.LT)).named("smaller")
    zero = rasp.Map(lambda i: 0, rasp.indices).named("zero")
    minimum = rasp.Aggregate(rasp.Select(smaller, zero, rasp.Comparison.EQ),
                             rasp.tokens).named("minimum")
    ops = ops_of(minimum, [1, 2, 3], 4)
    assert KeyFacts(ops, ["smaller"]).unique_chain("smaller") is not None
    assert KeyFacts(ops, ["smaller"], causal=True).unique_chain("smaller") is None
    assert compile_without_warning(minimum, [1, 2, 3], 4).info.aggregate_checks[0][1] == "proven"
    with pytest.raises(UnsafeAggregateError, match=r"minimum: .*on the input \[2, 1\]"):
        compile_program(minimum, [1, 2, 3], 4, causal=True)


def causal_checks_of(program, vocab, n):
    ops = ops_of(program, vocab, n)
    return {c.label: c for c in check_categorical_aggregates(ops, schedule(ops).live, causal=True)}


@pytest.mark.parametrize("program, vocab, n", [
    (lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1), [1, 2, 3], 5),
    (lib.make_sort_unique(rasp.tokens, rasp.tokens), [1, 2, 3], 4),  # repeated keys too
    (lib.make_sort_freq(5), ["a", "b", "c"], 5),
], ids=["make_sort", "make_sort_unique", "make_sort_freq"])
def test_tracrs_sorts_compiled_causal_are_proven_by_the_position_bound(program, vocab, n):
    # Causally target_pos is no permutation ([5, 3] ranks both 0), but it is at most j at
    # position j (LT never selects a position's own key), so Select(target_pos, indices,
    # EQ) at query q can only select key q: q <= target_pos_j <= j <= q.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        model = compile_program(program, vocab, n, causal=True)
    ((label, status, reason),) = model.info.aggregate_checks
    assert status == "proven", reason
    assert "under the causal mask query position q sees only keys at positions j <= q" in reason
    assert "target_pos is the SelectorWidth of smaller" in reason
    assert verify(program, model, exhaustive_up_to=3, samples=50, backend="numpy").ok


def test_the_causal_position_bound_needs_a_strict_width_and_keys_at_least_the_query():
    keys = rasp.SequenceMap(lambda t, i: t + i / 10, rasp.tokens, rasp.indices).named("keys")
    strict = rasp.SelectorWidth(rasp.Select(keys, keys, rasp.Comparison.LT)).named("strict")
    loose = rasp.SelectorWidth(rasp.Select(keys, keys, rasp.Comparison.LEQ)).named("loose")
    ops = ops_of(rasp.SequenceMap(lambda a, b: a + b, strict, loose), [1, 2, 3], 4)
    facts = KeyFacts(ops, ["strict", "loose"], causal=True)
    assert "never selects its own key" in facts.position_bound("strict")
    assert facts.position_bound("loose") is None  # LEQ selects itself: at most j + 1
    assert KeyFacts(ops, ["strict"]).position_bound("strict") is None  # bidirectional: no bound
    # Keys at most j, but the atom selects a key value below the query's index: q - 1
    # holds target q - 1 whenever its key is the largest so far, as q may too.
    previous = rasp.Aggregate(rasp.Select(strict, rasp.indices, lambda k, q: k == q - 1),
                              rasp.tokens).named("previous")
    check = causal_checks_of(previous, [1, 2, 3], 4)["previous"]
    assert check.status == "unsafe", check.reason
    # The same with LEQ widths: key q - 1 and key q can both hold q.
    at_most = rasp.Aggregate(rasp.Select(loose, rasp.indices, rasp.Comparison.EQ),
                             rasp.tokens).named("at_most")
    check = causal_checks_of(at_most, [1, 2, 3], 4)["at_most"]
    assert check.status == "unsafe", check.reason


def test_a_causal_warning_names_the_proofs_that_hold_under_the_mask():
    same_index = rasp.Map(lambda i: i, rasp.indices).named("same_index")
    keys = rasp.SequenceMap(lambda i, j: i if i == j else 0, rasp.indices, same_index)
    # diag_keys is indices in disguise (no proof sees it); LEQ over it selects a position's
    # own key, so the position bound fails too, and the search finds no mixing: a warning.
    keys = keys.named("diag_keys")
    program = rasp.Aggregate(
        rasp.Select(rasp.SelectorWidth(rasp.Select(keys, keys, rasp.Comparison.LEQ)),
                    rasp.indices, rasp.Comparison.EQ), rasp.tokens).named("unproven")
    with pytest.warns(CompileWarning) as caught:
        compile_program(program, [1, 2, 3], 4, causal=True)
    (message,) = [str(w.message) for w in caught]
    assert "under the causal mask a SelectorWidth ranking is no permutation" in message
    assert "keys never larger than their position" in message
    assert "or a SelectorWidth ranking such keys by a strict order" not in message
