"""The MLP constructions, checked neuron by neuron against their functions."""

import itertools

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.errors import CompilationError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.compiler.mlp import bos_cleanup, count_neurons, lower_block, ungate
from rasp_compiler.compiler.neurons import CATEGORICAL_NOISE_BUDGET, dim_bound, form_bound
from rasp_compiler.model.residual import BOS, ONE, Dim, LinearForm
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values


def blocks_of(program, vocab, n):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n))
    scheduled = schedule(ops)
    return ops, [block for layer in scheduled.layers for block in layer.blocks]


def apply(part, inputs):
    """Run the part's neurons on a residual given as {Dim: value}."""
    out = {}
    for neuron in part.neurons:
        pre = sum(w * inputs.get(d, 0.0) for d, w in neuron.w_in)
        for d, w in neuron.w_out:
            out[d] = out.get(d, 0.0) + w * max(pre, 0.0)
    return {d: v for d, v in out.items() if abs(v) > 1e-9}


def test_lookup_is_exact_on_every_input_combination():
    pair = rasp.SequenceMap(lambda x, i: (x + i) % 3, rasp.tokens, rasp.indices).named("pair")
    ops, (block,) = blocks_of(pair, [0, 1, 2], 4)
    part = lower_block(ops, block)
    assert part.construction == "lookup"
    for x in range(3):
        for i in range(4):
            inputs = {ONE: 1.0, Dim("tokens", x): 1.0, Dim("indices", i): 1.0}
            assert apply(part, inputs) == {Dim("pair", (x + i) % 3): 1.0}
            assert apply(part, {**inputs, BOS: 1.0}) == {}  # silent at BOS


def test_steps_decode_selector_width_exactly_and_tolerate_noise():
    ops, (block,) = blocks_of(lib.make_hist(), ["a", "b"], 8)
    (width_head,) = block.leaves  # the SOp the width head writes
    part = lower_block(ops, block)
    assert part.construction == "steps"
    for w in range(9):
        z = 1.0 / (w + 1)
        gap = z - 1.0 / (w + 2)
        for noise in (0.0, gap / 5, -gap / 5):
            assert apply(part, {ONE: 1.0, Dim(width_head): z + noise}) == {Dim("hist", w): 1.0}
    assert part.noise_budget[width_head] == pytest.approx((1 / 8 - 1 / 9) / 4)


def test_piecewise_linear_for_smooth_numerical_maps():
    frac = lib.make_frac_prevs(rasp.tokens == "a")
    square = rasp.numerical(rasp.Map(lambda x: x * x - 0.5, frac)).named("square")
    ops, (block,) = blocks_of(square, ["a", "b"], 5)
    part = lower_block(ops, block)
    assert part.construction == "piecewise-linear"
    for z in ops.values["frac_prevs"]:
        got = apply(part, {ONE: 1.0, Dim("frac_prevs"): z}).get(Dim("square"), 0.0)
        assert got == pytest.approx(z * z - 0.5, abs=1e-9)


def test_piecewise_linear_pivots_where_the_output_is_smallest():
    """1/z - 1 (a numerical SelectorWidth) anchored at z = 1, where it is 0: no hinge is on
    there, and near it only a few, so float32 never cancels large terms into a small result."""
    width = rasp.numerical(rasp.SelectorWidth(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ))).named("width")
    ops, (block,) = blocks_of(width, ["a", "b"], 16)
    (width_head,) = block.leaves
    part = lower_block(ops, block)
    assert part.construction == "piecewise-linear"
    for w in range(17):
        z = 1.0 / (w + 1)
        inputs = {ONE: 1.0, Dim(width_head): z}
        assert apply(part, inputs).get(Dim("width"), 0.0) == pytest.approx(w, abs=1e-9)
        on = [n for n in part.neurons if sum(v * inputs.get(d, 0.0) for d, v in n.w_in) > 0]
        assert len(on) == w  # the hinges between z and the pivot z = 1


def test_steps_refuse_values_float32_cannot_separate():
    tiny = rasp.numerical(rasp.Map(lambda x: x * 1e-6 + 1000, rasp.indices))
    # affine, so a free form; the threshold map below needs a step between close values
    far = rasp.Map(lambda x: x > 1000 + 2.5e-6, tiny, simplify=False).named("far")
    ops, (block,) = blocks_of(far, ["a"], 6)
    with pytest.raises(CompilationError, match="far: .*float32 cannot tell them apart"):
        lower_block(ops, block)


def test_bos_cleanup_subtracts_only_at_bos():
    ops, (block,) = blocks_of(lib.make_hist(), ["a", "b"], 4)
    head = Dim(block.leaves[0])  # what the width head writes
    part = bos_cleanup(ops, [(head, 1.0)])
    assert apply(part, {ONE: 1.0, BOS: 1.0, head: 0.999}) == {head: pytest.approx(-0.999)}
    for z in (0.2, 0.5, 1.0):
        assert apply(part, {ONE: 1.0, head: z}) == {}


def test_steps_are_shared_between_the_values_of_one_categorical_input():
    """reverse's opp_index = length - index from the width z and the index: each
    change of the output (v to v + 1) is one pair of neurons for every index, each
    index's threshold on its own dimension; exact with noise, silent at BOS (z = 1)."""
    ops, (block,) = blocks_of(lib.make_reverse(rasp.tokens), ["a", "b"], 6)
    (head,) = [Dim(leaf) for leaf in block.leaves if leaf != "indices"]  # the length head's
    part = lower_block(ops, block)
    assert part.construction == "steps"
    per_index = 6 * (1 + 2 * 6)  # an anchor and a pair per change, for every index
    assert part.width < per_index / 2
    for length in range(1, 7):
        z = 1.0 / (length + 1)
        gap = min(1.0 / length - z, z - 1.0 / (length + 2))  # to the nearer value
        for index in range(length):
            for noise in (0.0, gap / 5, -gap / 5):
                inputs = {ONE: 1.0, head: z + noise, Dim("indices", index): 1.0}
                assert apply(part, inputs) == {Dim("opp_index", length - index): 1.0}
    # The BOS position holds z = 1 (the width head reads only BOS there) and no index.
    assert apply(ungate(part, [(head, 1.0)]), {ONE: 1.0, BOS: 1.0, head: 1.0}) == {}


def test_lookup_boxes_share_a_neuron_between_combinations_with_one_output():
    """detect_pattern's AND of three tests: True on one combination, False on the rest
    (two inputs may be None): a few boxes, not one neuron per combination."""
    ops, (block,) = blocks_of(lib.detect_pattern(rasp.tokens, "abc"), ["a", "b", "c"], 5)
    part = lower_block(ops, block)
    assert part.construction == "lookup" and part.width <= 4
    out = block.outputs[0]
    for first, second, token in itertools.product([True, False, None], [True, False, None],
                                                  "abc"):
        inputs = {ONE: 1.0, Dim("tokens", token): 1.0}
        for leaf, value in zip(block.leaves[:2], (first, second)):
            if value is not None:
                inputs[Dim(leaf, value)] = 1.0
        expected = None if None in (first, second) else (first and second and token == "c")
        assert apply(part, inputs) == ({} if expected is None else {Dim(out, expected): 1.0})


def test_bos_gates_stay_only_where_a_neuron_would_fire_at_bos():
    """ungate: at BOS the residual holds one, bos and what this layer's heads write."""
    ops, (block,) = blocks_of(lib.make_hist(), ["a", "b"], 6)
    head = Dim(block.leaves[0])  # what the width head writes
    part = lower_block(ops, block)
    kept = ungate(part, [(head, 1.0)])
    gated = [n for n in kept.neurons if any(d == BOS for d, _ in n.w_in)]
    assert len(gated) == 1  # the anchor (a constant); every step is off at z = 1
    assert apply(kept, {ONE: 1.0, BOS: 1.0, head: 1.0}) == {}
    # Were z 0 at BOS (nothing written), the steps walking up from z = 1 would fire.
    assert len([n for n in ungate(part, []).neurons
                if any(d == BOS for d, _ in n.w_in)]) == len(kept.neurons)


def test_a_blocks_shared_steps_are_made_once_for_the_size_check_and_lowering(monkeypatch):
    """count_neurons (the size check) and lower_block read the same shared steps: each is
    made once per OpGraph and block, and forgotten with the OpGraph."""
    import gc

    from rasp_compiler.compiler import mlp_steps
    from rasp_compiler.compiler.pipeline import compile_program
    from rasp_compiler.program_files import load_program

    made = []
    make = mlp_steps._make_shared_steps

    def counted(ops, label, categorical, choices, z_label, form, function):
        made.append((id(ops), label, z_label))
        return make(ops, label, categorical, choices, z_label, form, function)

    monkeypatch.setattr(mlp_steps, "_make_shared_steps", counted)
    spec = load_program("running_sum")
    model = compile_program(spec.make(8), spec.vocab, 8, **spec.options)
    assert made and len(made) == len(set(made))
    ops_id = made[0][0]
    assert ops_id in mlp_steps._SHARED_STEPS
    assert model.run([[1, 2, 3]]) == [[1, 3, 6]]
    del model
    gc.collect()
    assert ops_id not in mlp_steps._SHARED_STEPS


@pytest.mark.parametrize("previous", [False, True], ids=["tokens", "previous_token"])
def test_clause_feature_is_the_or_of_its_atoms_on_every_input(previous):
    """An OR sharing its key side (tokens) is one 0/1 feature per key value v at each
    query position: (v == the query's token, or the previous token, which may be None)
    OR v == index % 4; clamped to 1 where both atoms accept, silent at BOS, and within
    the input's one-hot noise when the inputs carry some."""
    from rasp_compiler.compiler.mlp import clause_feature
    from rasp_compiler.compiler.neurons import CATEGORICAL_NOISE_BUDGET

    query = lib.shift_by(1, rasp.tokens).named("previous") if previous else rasp.tokens
    either = (rasp.Select(rasp.tokens, query, rasp.Comparison.EQ).named("same")
              | rasp.Select(rasp.tokens, rasp.indices, lambda k, q: k == q % 4).named("by_index"))
    ops, blocks = blocks_of(rasp.SelectorWidth(either).named("w"), [0, 1, 2, 3], 6)
    (block,) = [b for b in blocks if ops.units[b.units[0]].feature is not None]
    spec = ops.units[block.units[0]].feature
    part = clause_feature(ops, block)
    assert lower_block(ops, block).neurons == part.neurons
    assert part.construction == "clause-feature" and spec.shared == "tokens"
    assert part.width == 2 * len(spec.shared_values)  # every key value is accepted somewhere
    assert part.noise_budget == {leaf: CATEGORICAL_NOISE_BUDGET for leaf in block.leaves}
    query_label = block.leaves[0]
    queries = ops.values[query_label]
    assert (None in queries) == previous
    for q, i in itertools.product(queries, range(6)):
        inputs = {ONE: 1.0, Dim("indices", i): 1.0}
        if q is not None:
            inputs[Dim(query_label, q)] = 1.0
        accepted = {v for v in range(4) if v == q or v == i % 4}
        want = {Dim(spec.label, v): 1.0 for v in accepted}
        assert apply(part, inputs) == want, (q, i)
        assert set(spec(q, i)) == accepted  # the unit's own function agrees
        noisy = {d: (v - CATEGORICAL_NOISE_BUDGET if d != ONE else v) for d, v in inputs.items()}
        for d in (Dim("indices", (i + 1) % 6), Dim("tokens", 0), Dim(query_label, 3)):
            noisy.setdefault(d, CATEGORICAL_NOISE_BUDGET)
        got = apply(part, noisy)
        for v in range(4):
            exact = 1.0 if v in accepted else 0.0
            assert abs(got.get(Dim(spec.label, v), 0.0) - exact) <= 3 * CATEGORICAL_NOISE_BUDGET
        # at BOS the gate holds every neuron off, whatever the one-hots hold
        assert apply(part, {**inputs, BOS: 1.0}) == {}


def assert_writes(got, want):
    """apply's output equals `want` ({Dim: value}) to 1e-9."""
    assert set(got) == set(want), (got, want)
    for dim, value in want.items():
        assert got[dim] == pytest.approx(value, abs=1e-9), (dim, got, want)


def _stepped(t):
    """v > t / 4 for tokens t < 3 (a threshold each), 'x' for t = 3 (never steps)."""
    return lambda v: (v > t / 4) if t < 3 else "x"


def test_shared_steps_stay_off_for_the_values_they_do_not_serve():
    """One pair of neurons serves t = 0, 1, 2, each at its own threshold; t = 3 never
    steps, so the pair must stay off for it at every z, the extreme ones included (its
    bias b0 on `one`): exact at every (z, t), and with z or the one-hots off by their
    noise budgets."""
    frac = lib.make_frac_prevs(rasp.tokens == 1)
    stepped = rasp.SequenceMap(lambda v, t: _stepped(t)(v), frac, rasp.tokens).named("stepped")
    ops, (block,) = blocks_of(stepped, [0, 1, 2, 3], 4)
    part = lower_block(ops, block)
    assert part.construction == "steps" and part.width < 4 * 3  # shared, not per token
    assert count_neurons(ops, block, 10 ** 6) == part.width  # what the size check counted
    zs = sorted(ops.values["frac_prevs"])
    z_noise, t_noise = part.noise_budget["frac_prevs"], part.noise_budget["tokens"]
    assert t_noise == CATEGORICAL_NOISE_BUDGET  # a one-hot's budget is capped there
    for z, t in itertools.product(zs, range(4)):
        want = {Dim("stepped", _stepped(t)(z)): 1.0}
        for dz, dt in [(0.0, 0.0), (z_noise, 0.0), (-z_noise, 0.0), (0.0, t_noise)]:
            inputs = {ONE: 1.0, Dim("frac_prevs"): z + dz, Dim("tokens", t): 1.0 - dt,
                      Dim("tokens", (t + 1) % 4): dt}
            got = apply(part, inputs)
            if dt:  # one-hot noise moves the output by at most a few times that noise
                for dim in set(got) | set(want):
                    assert abs(got.get(dim, 0.0) - want.get(dim, 0.0)) <= 4 * dt, (z, t, got)
            else:
                assert_writes(got, want)


def test_steps_per_combination_are_exact_on_every_combination_and_silent_at_bos():
    """Two categorical inputs and a number (a fused block): every combination gets its own
    steps, gated by its match; exact at every (z, token, index), unmatched combinations
    silent, and nothing written at BOS (z = 0 there, no one-hot)."""
    frac = lib.make_frac_prevs(rasp.tokens == 1)
    inner = rasp.SequenceMap(lambda v, t: _stepped(t)(v), frac, rasp.tokens).named("inner")
    outer = rasp.SequenceMap(lambda a, i: (a, i % 2), inner, rasp.indices).named("outer")
    ops, (block,) = blocks_of(outer, [0, 1, 2, 3], 4)
    assert block.leaves == ("frac_prevs", "tokens", "indices")
    part = lower_block(ops, block)
    assert part.construction == "steps"
    assert count_neurons(ops, block, 10 ** 6) == part.width  # what the size check counted
    for z, t, i in itertools.product(sorted(ops.values["frac_prevs"]), range(4), range(4)):
        inputs = {ONE: 1.0, Dim("frac_prevs"): z, Dim("tokens", t): 1.0, Dim("indices", i): 1.0}
        assert_writes(apply(part, inputs), {Dim("outer", (_stepped(t)(z), i % 2)): 1.0})
    assert apply(ungate(part, []), {ONE: 1.0, BOS: 1.0, Dim("frac_prevs"): 0.0}) == {}


def test_a_tuple_over_a_sop_that_can_be_none_is_one_hot_on_every_combination():
    """The product encoding's tuple (previous, indices): a lookup whose boxes allowing
    None read `1 - the other values' dims`, so (None, i) fires only where `previous`
    holds no value, and (v, i) only where it holds v."""
    previous = lib.shift_by(1, rasp.tokens).named("previous")
    width = rasp.SelectorWidth(rasp.Select(previous, rasp.tokens, rasp.Comparison.EQ)
                               | rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT))
    ops, blocks = blocks_of(width.named("w"), [0, 1, 2], 4)
    (block,) = [b for b in blocks if b.outputs == ("(previous, indices)",)]
    part = lower_block(ops, block)
    assert part.construction == "lookup"
    for v, i in itertools.product([None, 0, 1, 2], range(4)):
        inputs = {ONE: 1.0, Dim("indices", i): 1.0}
        if v is not None:
            inputs[Dim("previous", v)] = 1.0
        assert_writes(apply(part, inputs), {Dim("(previous, indices)", (v, i)): 1.0})
        assert apply(part, {**inputs, BOS: 1.0}) == {}


def test_piecewise_linear_is_not_offered_for_a_jump_steeper_than_its_limit():
    """A numerical output jumping by 1 between means 5e-5 apart (2e4 x the range): a
    hinge there would multiply z's float32 error by 2e4, so only steps (flat near every
    value) are offered."""
    from rasp_compiler.compiler.mlp_steps import PIECEWISE_MAX_GAIN, piecewise_shape
    from rasp_compiler.compiler.neurons import BlockFunction

    number = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices,
                                                     rasp.Comparison.LEQ), number, default=0))
    for jump, steep in ((0.5, True), (0.7, False)):  # between 0.5 and 0.50005, or 0.5 and 1
        above = rasp.numerical(rasp.Map(lambda m, t=jump: 1.0 if m > t else 0.0,
                                        mean.named("mean"))).named("above")
        ops, (block,) = blocks_of(above, [0, 1, 1.0001], 2)
        form = ops.forms.get("mean") or LinearForm.single(Dim("mean"))
        shape = piecewise_shape(ops, block, "mean", form, BlockFunction(ops, block))
        assert (shape is None) == steep, (jump, shape)
        if steep:
            assert lower_block(ops, block).construction == "steps"
    assert PIECEWISE_MAX_GAIN < 1 / 5e-5 / 1.0001


def test_bounds_of_dims_and_forms_hold_whatever_the_signs():
    """dim_bound: 1 for `one`, `bos` and one-hot dims, else the SOp's largest |value| (at
    least 1); form_bound: sum of |c| x dim_bound, so mixed signs never cancel in it."""
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices,
                                                     rasp.Comparison.LEQ),
                                         rasp.numerical(rasp.Map(lambda x: 3 * x, rasp.tokens)),
                                         default=0)).named("mean")
    ops, _ = blocks_of(rasp.numerical(rasp.Map(lambda v: v * v, mean)), [0, 1, 2], 3)
    assert dim_bound(ops, Dim("mean")) == 6.0
    assert dim_bound(ops, ONE) == dim_bound(ops, Dim("tokens", 2)) == 1.0
    form = LinearForm(((Dim("mean"), -2.0), (ONE, 0.5), (Dim("tokens", 1), -3.0)))
    assert form_bound(ops, form) == 2.0 * 6.0 + 0.5 + 3.0


def test_steps_per_combination_refuse_values_float32_cannot_separate():
    """As test_steps_refuse_values_float32_cannot_separate, in a block of two categorical
    inputs and a number, whose steps are built per combination."""
    tiny = rasp.numerical(rasp.Map(lambda x: x * 1e-6 + 1000, rasp.indices)).named("tiny")
    inner = rasp.SequenceMap(lambda v, t: v > 1000 + 2.5e-6 if t == "a" else "x", tiny,
                             rasp.tokens).named("inner")
    outer = rasp.SequenceMap(lambda a, i: (a, i % 2), inner, rasp.indices).named("outer")
    ops, blocks = blocks_of(outer, ["a", "b"], 6)
    (block,) = [b for b in blocks if b.outputs == ("outer",)]
    assert len([leaf for leaf in block.leaves if not ops.is_numerical(leaf)]) == 2
    with pytest.raises(CompilationError, match="outer: .*float32 cannot tell them apart"):
        lower_block(ops, block)


def test_steps_per_combination_stay_silent_at_bos_where_z_sits_mid_range():
    """z here is a mean whose head writes its default 1/2 at BOS (removed only after
    this MLP), in the middle of z's values: steps walking up from 0 would fire there,
    so every step neuron of a combination carries its own BOS gate."""
    ones = rasp.numerical(rasp.Map(lambda t: float(t == 1), rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices,
                                                     rasp.Comparison.LEQ), ones,
                                         default=0.5)).named("mean")
    inner = rasp.SequenceMap(lambda v, t: _stepped(t)(v), mean, rasp.tokens).named("inner")
    outer = rasp.SequenceMap(lambda a, i: (a, i % 2), inner, rasp.indices).named("outer")
    ops, (block,) = blocks_of(outer, [0, 1, 2, 3], 4)
    writes = ops.attention["mean"].bos_writes
    assert dict(writes) == {Dim("mean"): 0.5}
    part = ungate(lower_block(ops, block), writes)
    assert apply(part, {ONE: 1.0, BOS: 1.0, Dim("mean"): 0.5}) == {}
    for z, t, i in itertools.product(sorted(ops.values["mean"]), range(4), range(4)):
        inputs = {ONE: 1.0, Dim("mean"): z, Dim("tokens", t): 1.0, Dim("indices", i): 1.0}
        assert_writes(apply(part, inputs), {Dim("outer", (_stepped(t)(z), i % 2)): 1.0})


def test_a_blocks_steps_for_a_none_input_stay_silent_at_bos():
    """high = mean > 0.3 and pair = (high, prev) in one block; prev (the previous token)
    is None at the first position, which has no dimension to carry a threshold, so its
    steps are built per combination, gated by `1 - prev's dims`: 1 at BOS as well, where
    the mean head writes its default 1/2, above high's threshold. Their own BOS gate
    holds them off there."""
    ones = rasp.numerical(rasp.Map(lambda t: float(t == 1), rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices,
                                                     rasp.Comparison.LEQ), ones,
                                         default=0.5)).named("mean")
    previous = lib.shift_by(1, rasp.tokens).named("prev")
    high = rasp.Map(lambda v: v > 0.3, mean).named("high")
    pair = rasp.SequenceMap(lambda a, p: (a, p), high, previous).named("pair")
    both = rasp.Aggregate(rasp.Select(high, pair, lambda k, q: k == q[0]), rasp.indices)
    ops, blocks = blocks_of(both.named("both"), [0, 1, 2], 4)
    (block,) = [b for b in blocks if b.outputs == ("high", "pair")]
    writes = ops.attention["mean"].bos_writes
    part = ungate(lower_block(ops, block), writes)
    assert apply(part, {ONE: 1.0, BOS: 1.0, Dim("mean"): 0.5}) == {}
    for z, p in itertools.product(sorted(ops.values["mean"]), [None, 0, 1, 2]):
        inputs = {ONE: 1.0, Dim("mean"): z}
        if p is not None:
            inputs[Dim("prev", p)] = 1.0
        want = {Dim("high", z > 0.3): 1.0}
        if p is not None:
            want[Dim("pair", (z > 0.3, p))] = 1.0
        assert_writes(apply(part, inputs), want)
