import math

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.compiler.lower import coldness_for, lower_model, relation_bicliques
from rasp_compiler.model.residual import BOS, ONE, Dim
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values


def lowered_of(program, vocab, n):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n))
    return ops, lower_model(ops, schedule(ops))


def scores(head, layout, query, key):
    q = np.zeros(layout.width)
    k = np.zeros(layout.width)
    for dim in query:
        q[layout.index[dim]] = 1
    for dim in key:
        k[layout.index[dim]] = 1
    return float((q @ head.w_q) @ (k @ head.w_k))


def test_a_select_head_scores_c_where_selected_and_puts_bos_half_way():
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("lt")
    program = rasp.numerical(rasp.Aggregate(select, rasp.numerical(
        rasp.Map(lambda x: x, rasp.tokens)), default=0)).named("mean_smaller")
    ops, low = lowered_of(program, [1, 2, 3], 5)
    ((head,),) = low.heads
    c = head.coldness
    layout = low.layout
    for q in (1, 2, 3):
        for k in (1, 2, 3):
            got = scores(head, layout, [ONE, Dim("tokens", q)], [ONE, Dim("tokens", k)])
            assert got == pytest.approx(c if k < q else 0.0, abs=1e-4)
        bos = scores(head, layout, [ONE, Dim("tokens", q)], [ONE, BOS])
        assert bos == pytest.approx(c / 2, rel=1e-6)
    assert head.key_size <= 3  # min(live query values, live key values) + 1 BOS column
    # The BOS query holds no one-hot, so its selector scores no key: BOS wins by c / 2.
    bos_query = [ONE, BOS]
    for k in (1, 2, 3):
        assert scores(head, layout, bos_query, [ONE, Dim("tokens", k)]) == 0.0
    assert scores(head, layout, bos_query, [ONE, BOS]) == pytest.approx(c / 2, rel=1e-6)


def test_a_selector_of_every_key_gives_the_bos_query_its_own_column():
    """Without atoms every key scores alike, so a second column makes the BOS query read
    BOS (whose value the cleanup removes)."""
    ops, low = lowered_of(lib.make_length(), ["a", "b"], 5)
    ((head,),) = low.heads
    assert head.key_size == 2
    bos_query = [ONE, BOS]
    assert scores(head, low.layout, bos_query, [ONE, BOS]) > head.coldness / 2 + scores(
        head, low.layout, bos_query, [ONE])  # a token key


def test_a_width_head_gives_bos_the_selected_score():
    ops, low = lowered_of(lib.make_hist(), ["a", "b"], 5)
    ((head,),) = low.heads
    layout = low.layout
    selected = scores(head, layout, [ONE, Dim("tokens", "a")], [ONE, Dim("tokens", "a")])
    bos = scores(head, layout, [ONE, Dim("tokens", "a")], [ONE, BOS])
    assert selected == pytest.approx(bos, rel=1e-6)


def test_coldness_bounds_the_leak():
    for n in (4, 32, 128):
        c = coldness_for(n, 1e-7)
        assert (n + 1) * math.exp(-c / 2) == pytest.approx(1e-7)


def test_embeddings_write_tokens_indices_one_and_bos():
    ops, low = lowered_of(lib.make_reverse(rasp.tokens), ["a", "b"], 4)
    layout = low.layout
    tokens = low.token_embeddings
    assert tokens.shape == (4, layout.width)  # a, b, BOS, PAD
    assert tokens[0, layout.index[Dim("tokens", "a")]] == 1 and tokens[0, layout.index[ONE]] == 1
    assert tokens[2, layout.index[BOS]] == 1 and tokens[2].sum() == 2
    # PAD (tracr's compiler_pad) holds `one` alone, like every position (tracr's model
    # reads its residual there too; our runs mask PAD keys)
    assert tokens[3, layout.index[ONE]] == 1 and tokens[3].sum() == 1
    positions = low.position_embeddings
    assert positions.shape == (5, layout.width)
    assert positions[0].sum() == 0  # BOS position: nothing
    assert positions[3, layout.index[Dim("indices", 2)]] == 1


def test_heads_feeding_close_steps_get_colder():
    balance = lib.make_pair_balance(rasp.tokens, "(", ")")
    negative = rasp.Map(lambda b: b < 0, balance).named("negative")
    _, low8 = lowered_of(negative, ["(", ")"], 8)
    _, low64 = lowered_of(negative, ["(", ")"], 64)
    assert min(h.coldness for h in low64.heads[0]) > min(h.coldness for h in low8.heads[0])
    assert all(h.leak_bound <= 1e-7 * 1.0001 for h in low64.heads[0])


@pytest.mark.parametrize("predicate", list(rasp.Comparison))
@pytest.mark.parametrize("n", [1, 4, 37])
def test_relation_bicliques_cover_every_selected_pair_exactly_once(predicate, n):
    """Order relations take a staircase: no more columns than stars, O(n log n) weights."""
    relation = np.array([[bool(predicate(k, q)) for k in range(n)] for q in range(n)])
    bicliques = relation_bicliques(relation)
    covered = np.zeros(relation.shape, dtype=int)
    for queries, keys in bicliques:
        covered[np.ix_(queries, keys)] += 1
    assert (covered == relation).all()
    live = min(relation.any(axis=1).sum(), relation.any(axis=0).sum())
    assert len(bicliques) <= live
    if predicate in (rasp.Comparison.LT, rasp.Comparison.GEQ) and n == 37:
        assert sum(len(q) + len(k) for q, k in bicliques) < 6 * n  # stars: n^2 / 2


def test_a_head_over_an_order_relation_scores_c_exactly_where_selected():
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ).named("leq")
    program = rasp.SelectorWidth(select).named("rank")
    vocab = list(range(12))
    ops, low = lowered_of(program, vocab, 4)
    ((head,),) = low.heads
    assert np.count_nonzero(head.w_k) < 12 * 13 // 2  # fewer weights than the relation
    for q in vocab:
        for k in vocab:
            got = scores(head, low.layout, [ONE, Dim("tokens", q)], [ONE, Dim("tokens", k)])
            assert got == pytest.approx(head.coldness if k <= q else 0.0, abs=1e-4)


def test_heads_read_by_a_lookup_leak_no_more_than_the_lookup_tolerates():
    """With a coarse attention_precision (0.05) the head feeding a lookup is made colder:
    its leak_bound is half the lookup's noise budget (mlp.CATEGORICAL_NOISE_BUDGET), and
    the model stays exact. Its one-hots are then off by up to 2 x leak (precision.py), past
    verify's default raw bound, which strict reports; within 2 x leak + gamma it passes."""
    from rasp_compiler.compiler.pipeline import compile_program
    from rasp_compiler.compiler.neurons import CATEGORICAL_NOISE_BUDGET
    from rasp_compiler.compiler.precision import gamma
    from rasp_compiler.verify.checker import verify

    previous = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - 1),
                              rasp.tokens, default=0).named("previous")
    double = rasp.Map(lambda t: 2 * t, previous).named("double")
    model = compile_program(double, [0, 1, 2], 6, attention_precision=0.05)
    ((head,),) = model.lowered.heads
    (lookup,) = [part for mlp in model.lowered.mlps for part in mlp.parts
                 if part.outputs == ("double",)]
    assert lookup.noise_budget == {"previous": CATEGORICAL_NOISE_BUDGET}
    assert head.leak_bound == pytest.approx(CATEGORICAL_NOISE_BUDGET / 2)
    assert head.coldness == pytest.approx(coldness_for(6, CATEGORICAL_NOISE_BUDGET / 2))
    assert verify(double, model, exhaustive_up_to=5, backend="numpy").ok
    assert not verify(double, model, exhaustive_up_to=5, backend="numpy", strict=True).ok
    bound = 2 * head.leak_bound + gamma(6 + 5)
    assert verify(double, model, exhaustive_up_to=5, backend="numpy", strict=True,
                  raw_tolerance=bound).ok


def test_a_head_that_would_need_a_leak_below_float32s_resolution_is_refused():
    """A reader whose noise budget asks for a leak below FLOAT32_PRECISION_FLOOR (1e-9):
    refused by name rather than built with a softmax float32 cannot make that cold."""
    from rasp_compiler.errors import CompilationError
    from rasp_compiler.compiler.lower import FLOAT32_PRECISION_FLOOR, _precision

    program = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ),
                             rasp.tokens).named("copy")
    ops, _ = lowered_of(program, ["a", "b"], 4)
    op = ops.attention["copy"]
    assert _precision(ops, op, {"copy": 4 * FLOAT32_PRECISION_FLOOR}, 1e-7) == pytest.approx(
        2 * FLOAT32_PRECISION_FLOOR)
    with pytest.raises(CompilationError, match="copy: the MLP reading copy distinguishes values "
                                               "so close that this head would need an attention "
                                               "leak below 5e-10, finer than float32"):
        _precision(ops, op, {"copy": FLOAT32_PRECISION_FLOOR}, 1e-7)


def test_a_head_read_by_several_mlps_meets_the_tightest_noise_budget():
    from rasp_compiler.compiler.lower import _noise_budgets
    from rasp_compiler.compiler.neurons import MLPPart

    def part(label, budget):
        return MLPPart(label, "lookup", (), (), (), (), budget)

    budgets = _noise_budgets([[part("a", {"x": 0.01, "y": 0.5})],
                              [part("b", {"x": 0.002}), part("c", {"x": 0.03, "z": 1e-3})]])
    assert budgets == {"x": 0.002, "y": 0.5, "z": 1e-3}
