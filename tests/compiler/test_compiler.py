"""compiled == evaluator, position by position, for every case of the shared table."""

import random

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.model.forward import forward_numpy
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.compiling import compile_rasp_to_model
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang.graph import postorder
from rasp_compiler.compiler.size import estimate_size
from rasp_compiler.lang.evaluator import evaluate
from rasp_compiler.lang.identity import same_value
from rasp_compiler.verify.checker import verify
from rasp_compiler.verify.inputs import all_inputs

from cases import CASES, causal_twin

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")

RANDOM_INPUTS = {16: 40, 32: 20, 64: 8}


@pytest.fixture
def compiled(compiled_case):
    """(program, model) of a case, compiled once per test process (conftest.py)."""

    def get(case):
        model = compiled_case(case)
        return model.program, model

    return get


@pytest.mark.parametrize("case", CASES, ids=str)
def test_exhaustively_equal_to_the_evaluator(case, compiled):
    program, model = compiled(case)
    # The numpy forward: no XLA compilation per case (test_verify runs the jitted one, and
    # the longer lengths below run it at 64 tokens). Strict: the output's raw one-hot
    # columns within verify.RAW_TOLERANCE of exact, not just decoded right.
    report = verify(program, model, exhaustive_up_to=case.exhaustive_up_to, backend="numpy",
                    strict=True)
    assert report.ok, str(report)
    assert report.inputs_checked > 0


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bos_position_holds_only_bos_and_one(case, compiled):
    _, model = compiled(case)
    rng = random.Random(1)
    batch = [[rng.choice(case.vocab) for _ in range(rng.randint(1, case.max_seq_len))]
             for _ in range(16)]
    # The numpy forward (no XLA compilation per case); test_assemble pins it to haiku's.
    rows = model.encode(batch)
    ids, mask = model.runtime.pack(rows, max(map(len, rows)) + 1, len(rows))
    cache = {}
    forward_numpy(model.params, model.shape, ids, mask, cache)
    names = ["hook_embed"] + [f"blocks.{l}.hook_resid_post" for l in range(model.depth)]
    for name in names:
        residual = cache[name][:, 0, :]
        assert np.allclose(residual[:, :2], [1.0, 1.0]), name  # one, bos
        assert np.abs(residual[:, 2:]).max(initial=0.0) < 1e-5, name


@pytest.mark.parametrize("case", CASES, ids=str)
def test_size_estimate_bounds_and_counts_the_built_model(case, compiled):
    _, model = compiled(case)
    bound = estimate_size(model.ops, model.schedule)
    counted = estimate_size(model.ops, model.schedule, count=True)
    assert bound.low <= model.parameter_count() <= bound.high
    assert counted.low == counted.high == model.parameter_count()


def _longer(case, max_seq_len) -> bool:
    """Every case at 16; at 32 the bundled programs and the numerical cases (whose means
    and widths get finer with length); at 64 the bundled programs."""
    if max_seq_len <= 16 or case.name.startswith("program:"):
        return True
    return max_seq_len <= 32 and "numerical" in case.name


@pytest.mark.parametrize("case,max_seq_len", [
    pytest.param(case, n, id=f"{case}-{n}", marks=[pytest.mark.slow] if n >= 32 else [])
    for n in sorted(RANDOM_INPUTS) for case in CASES if _longer(case, n)
])
def test_random_inputs_at_longer_lengths(case, max_seq_len):
    program = case.factory(max_seq_len)
    model = compile_program(program, case.vocab, max_seq_len, **case.options)
    # The numpy forward is faster than an XLA compile per model (and per causal twin) up
    # to 32, and at 64 below about a million parameters (measured: 0.1-2 s against 1-4 s of
    # CPU); the largest models (dyck1, dyck2, majority, sort_freq) run jitted, so the jax
    # forward is checked at 64 too. test_assemble and test_fuzz pin the two forwards equal.
    backend = "numpy" if max_seq_len <= 32 or model.parameter_count() < 1_000_000 else "jax"
    report = verify(program, model, samples=RANDOM_INPUTS[max_seq_len], seed=max_seq_len,
                    backend=backend, strict=True)
    assert report.mismatch_count == report.raw_excess_count == 0, str(report)
    # The same weights behind a causal mask compute the causal meaning at every length
    # (fewer keys per query: coldness and BOS bounds still hold).
    report = verify(program, causal_twin(model), samples=RANDOM_INPUTS[max_seq_len],
                    seed=max_seq_len + 1, backend=backend, strict=True)
    assert report.causal and report.mismatch_count == report.raw_excess_count == 0, str(report)


def _balanced(rng, pairs, n_pairs):
    """A random shuffle-Dyck word: each bracket type balanced on its own."""
    stacks = {p: 0 for p in pairs}
    word = []
    remaining = {p: n_pairs // len(pairs) + (i < n_pairs % len(pairs)) for i, p in enumerate(pairs)}
    while any(remaining.values()) or any(stacks.values()):
        moves = [(p, 0) for p in pairs if remaining[p]] + [(p, 1) for p in pairs if stacks[p]]
        pair, close = rng.choice(moves)
        if close:
            stacks[pair] -= 1
        else:
            remaining[pair] -= 1
            stacks[pair] += 1
        word.append(pair[close])
    return word


@pytest.mark.parametrize("pairs", [["()"], ["()", "{}"], ["()", "{}", "[]"]])
def test_shuffle_dyck_is_right_on_balanced_inputs(pairs):
    program = lib.make_shuffle_dyck(pairs)
    vocab = [c for p in pairs for c in p]
    model = compile_program(program, vocab, 10)
    rng = random.Random(0)
    words = [_balanced(rng, pairs, rng.randint(1, 5)) for _ in range(60)]
    outputs = model.run(words)
    for word, out in zip(words, outputs):
        assert out == [True] * len(word), "".join(word)
    report = verify(program, model, inputs=words + [w[1:] + w[:1] for w in words],
                    backend="numpy")  # no second XLA compilation: run() above used the jit
    assert report.ok, str(report)


@pytest.mark.parametrize(
    "factory, vocab, max_seq_len, depth",
    [
        (lambda: lib.make_reverse(rasp.tokens), ["a", "b", "c"], 10, 2),
        (lambda: lib.make_sort_freq(10), ["a", "b", "c"], 10, 3),
        (lambda: lib.make_shuffle_dyck(["()", "{}"]), list("(){}"), 10, 3),
        (lambda: lib.make_shuffle_dyck(["()", "{}", "[]"]), list("(){}[]"), 10, 3),
    ],
    ids=["reverse", "sort_freq", "shuffle_dyck2", "shuffle_dyck3"],
)
def test_depth_reaches_the_fused_bounds(factory, vocab, max_seq_len, depth):
    # tracr needs 4, 5, 8 and 9 layers for these.
    model = compile_program(factory(), vocab, max_seq_len)
    assert model.depth == depth
    assert model.lower_bound <= model.depth


def test_dyck3_is_small_and_layers_have_their_own_widths():
    model = compile_program(lib.make_shuffle_dyck(["()", "{}", "[]"]), list("(){}[]"), 10)
    widths = [layer.mlp_hidden for layer in model.info.layers]
    heads = [len(layer.heads) for layer in model.info.layers]
    assert len(set(widths)) > 1 and len(set(heads)) > 1
    assert model.parameter_count() < 100_000  # tracr: 2.1 M parameters, 0.16% non-zero
    shapes = [model.params[f"layer_{l}/mlp/linear_1"]["w"].shape[1] for l in range(model.depth)]
    assert shapes == widths


def test_selector_width_is_exact_up_to_128():
    model = compile_program(lib.make_length(), ["a"], 128)
    outputs = model.run([["a"] * n for n in range(1, 129)])
    assert outputs == [[n] * n for n in range(1, 129)]


def test_no_dimensions_for_values_that_cannot_occur_or_fused_intermediates():
    parity = rasp.Map(lambda x: x % 2, rasp.tokens).named("parity")
    flipped = rasp.Map(lambda x: 1 - x, parity, simplify=False).named("flipped")
    model = compile_program(flipped, [1, 2, 3, 4, 5, 6], 4)
    owners = {dim.sop for dim in model.layout.dims}
    assert "parity" not in owners  # fused into the MLP that computes flipped
    assert len(model.layout.dims_of("flipped")) == 2
    assert model.depth == 1


def test_maps_read_by_heads_are_folded_and_cost_no_layer():
    is_x = rasp.numerical(rasp.Map(lambda t: t == "x", rasp.tokens)).named("is_x")
    frac = lib.make_frac_prevs(is_x)
    model = compile_program(frac, ["x", "y"], 6)
    assert model.depth == 1 and model.info.layers[0].mlp_hidden == 0


def test_compile_time_is_linear_in_program_size():
    import gc
    import time

    def chain(n):
        sop = rasp.tokens
        for i in range(n):
            sop = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), sop)
        return sop

    def seconds(n):
        gc.collect()
        gc.disable()  # a full collection walks the whole heap of a long test worker
        try:
            start = time.perf_counter()
            model = compile_program(chain(n), [0, 1], 4)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        assert model.depth == n
        return elapsed

    # Each pair timed back to back, five times: another test worker's XLA threads can take
    # both cores for a while, and must not count against one size of a pair only.
    ratios = []
    for _ in range(5):
        small = seconds(20)
        ratios.append(seconds(80) / small)
    assert min(ratios) < 4 * 2.5, ratios  # 4x the ops, well under 4x^2 the time


def test_coldness_is_reported_and_grows_with_max_seq_len():
    small = compile_program(lib.make_hist(), ["a", "b"], 8)
    large = compile_program(lib.make_hist(), ["a", "b"], 128)
    (c_small,) = small.coldness.values()
    (c_large,) = large.coldness.values()
    assert 20 < c_small < c_large < 100


def test_tracr_entry_point_and_apply():
    model = compile_rasp_to_model(lib.make_reverse(rasp.tokens), {"a", "b", "c"}, 5,
                                  compiler_bos="BOS", compiler_pad="PAD", mlp_exactness=100)
    out = model.apply(["BOS", "a", "b", "c"])
    assert out.decoded == ["BOS", "c", "b", "a"]
    assert out.transformer_output.shape == (1, 4, len(model.residual_labels))
    assert model.compiled.layout.width < len(model.residual_labels)  # + tracr's PAD direction


@pytest.mark.parametrize("call, error, message", [
    (lambda: compile_program(lib.make_hist(), ["a", "BOS"], 4), "InvalidProgramError",
     "bos token 'BOS' is also in the vocab"),
    (lambda: compile_program(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), ["a"], 3),
     "InvalidProgramError", "output SOp"),
    (lambda: compile_rasp_to_model(lib.make_hist(), ["a"], 3, causal="yes"),
     "InvalidProgramError", "causal must be True or False"),
    (lambda: compile_program(lib.make_hist(), ["a"], 0), "InvalidProgramError", "positive int"),
])
def test_compile_errors_are_clear(call, error, message):
    from rasp_compiler import errors

    with pytest.raises(getattr(errors, error), match=message):
        call()


def _typed_outputs_match(program, model, vocab, max_seq_len, causal=False):
    """On every input, the model's decoded outputs are the evaluator's: equal and of the
    same type and sign (identity.same_value), not merely equal."""
    inputs = [list(xs) for xs in all_inputs(vocab, max_seq_len)]
    outputs = model.run(inputs, backend="numpy")
    for xs, got in zip(inputs, outputs):
        want = evaluate(program, xs, causal=causal)
        assert len(got) == len(want) and all(map(same_value, got, want)), (xs, got, want)


def test_a_sequence_map_returning_0_and_0_0_compiles_exactly():
    # A real tracr program's shape: one branch returns 0, another 0.0. It was refused
    # ("make its function return one type"); 0 and 0.0 are now two values of the SOp.
    program = rasp.SequenceMap(lambda a, b: 0 if a == b else (0.0 if a < b else 1),
                               rasp.tokens, rasp.indices)
    model = compile_program(program, {0, 1, 2}, 3)
    assert verify(program, model, exhaustive_up_to=3).ok  # the jitted forward
    _typed_outputs_match(program, model, [0, 1, 2], 3)
    (row,) = model.run([[0, 2, 0]])
    assert row == [0, 1, 0.0] and [type(v) for v in row] == [int, int, float]


def test_equal_but_different_values_compile_to_themselves():
    # Used to compile to a model answering 'True' where the evaluator answers '1' (then
    # it was refused): True and 1 are two values, each with its own dimension.
    true_or_one = rasp.Map(lambda x: True if x == 0 else 1, rasp.tokens)
    copy = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), true_or_one)
    text = rasp.Map(str, copy)
    model = compile_program(text, [0, 1, 2], 3)
    assert model.run([[0, 1, 2]], backend="numpy") == [["True", "1", "1"]]
    _typed_outputs_match(text, model, [0, 1, 2], 3)
    # ... or to crash in lower.py with KeyError: Dim(sop='sequence_map_..', value='11').
    joined = rasp.SequenceMap(lambda a, b: f"{a}{b}", true_or_one, rasp.tokens)
    model = compile_program(joined, [0, 1, 2], 3)
    assert model.run([[0, 1, 1]], backend="numpy") == [["True0", "11", "11"]]
    _typed_outputs_match(joined, model, [0, 1, 2], 3)


_MIXED = rasp.Map(lambda x: (0, 0.0, -0.0, False, 1, 1.0, True)[x], rasp.tokens).named("mixed")
_PREVIOUS = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - 1).named("previous")
_FRACTION = rasp.numerical(rasp.Aggregate(
    rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
    rasp.numerical(rasp.Map(lambda x: float(x % 2), rasp.tokens)), default=0)).named("fraction")


@pytest.mark.parametrize("program", [
    pytest.param(lambda: _MIXED, id="map"),
    pytest.param(lambda: rasp.Map(lambda v: f"{type(v).__name__} {v}", _MIXED), id="map_reads_mixed"),
    pytest.param(lambda: rasp.numerical(rasp.Map(
        lambda v: float(type(v) is float) + (v < 0.5), _MIXED)), id="numerical_map_reads_mixed"),
    pytest.param(lambda: rasp.numerical(rasp.Aggregate(_PREVIOUS, rasp.numerical(rasp.Map(
        lambda v: 2.0 if type(v) is bool else 1.0, _MIXED)), default=0)), id="numerical_mean"),
    pytest.param(lambda: rasp.SequenceMap(lambda v, i: (v, i % 2), _MIXED, rasp.indices),
                 id="sequence_map_of_mixed"),
    pytest.param(lambda: rasp.SequenceMap(lambda f, c: (f, c), rasp.Full(0.0),
                                          rasp.ConstantSOp([0, -0.0, True, 1.0], check_length=False)),
                 id="full_and_constant"),
    pytest.param(lambda: rasp.Aggregate(_PREVIOUS, _MIXED, default=0), id="aggregate_default"),
    pytest.param(lambda: rasp.Aggregate(_PREVIOUS, rasp.Map(lambda x: (x > 2) * 1.0, rasp.tokens),
                                        default=False), id="aggregate_default_false"),
    pytest.param(lambda: rasp.Map(lambda v: type(v).__name__, rasp.Aggregate(_PREVIOUS, _MIXED)),
                 id="lookup_reads_copied_mixed"),
    pytest.param(lambda: rasp.SelectorWidth(rasp.Select(_MIXED, _MIXED, rasp.Comparison.EQ)),
                 id="select_eq_mixed"),
    pytest.param(lambda: rasp.SelectorWidth(rasp.Select(
        rasp.Map(lambda x: 0.0 if x == 1 else x + 10, rasp.tokens), rasp.Map(
            lambda x: 0 if x == 0 else x + 20, rasp.tokens), rasp.Comparison.EQ)),
                 id="key_0_0_selected_by_query_0"),
    pytest.param(lambda: rasp.SelectorWidth(
        rasp.Select(_MIXED, _MIXED, rasp.Comparison.EQ)
        | rasp.Select(_MIXED, rasp.indices, lambda k, q: q == 1 and type(k) is float)),
                 id="or_feature_over_mixed_keys"),
    pytest.param(lambda: rasp.Map(lambda z: 0 if z < 0.3 else (0.0 if z < 0.6 else (
        -0.0 if z < 0.9 else False)), _FRACTION), id="steps_to_mixed"),
    pytest.param(lambda: rasp.SequenceMap(lambda v, z: (repr(v), z > 0.5), _MIXED, _FRACTION),
                 id="steps_with_mixed_input"),
    pytest.param(lambda: rasp.SequenceMap(
        lambda x, i: (0 if x == i else 0.0, (x == 1,) if i else (1,)), rasp.tokens, rasp.indices),
                 id="tuples_holding_mixed"),
    # frozenset values are values, not a clause feature's multi-hot (they crashed lowering
    # with KeyError: Dim(sop='map_..', value=0) when mlp.py took every frozenset for one)
    pytest.param(lambda: rasp.Map(lambda x: frozenset({x % 2 == 0}) if x < 2 else frozenset({1}),
                                  rasp.tokens), id="frozensets_holding_mixed"),
])
def test_equal_but_different_values_compile_exactly(program):
    """0, 0.0, -0.0, False, 1, 1.0 and True in every construct: each value keeps its own
    dimension, predicates and functions see it as itself, and the model decodes exactly
    the evaluator's value, type and sign included."""
    program = program()
    vocab = list(range(7))
    model = compile_program(program, vocab, 3)
    assert verify(program, model, exhaustive_up_to=3, backend="numpy").ok
    if rasp.is_categorical(program):
        _typed_outputs_match(program, model, vocab, 3)


def test_a_categorical_map_of_a_numerical_sop_sees_the_float_the_model_holds():
    # Used to crash with KeyError: Dim(sop='map_..', value='0.0'): the value set applied
    # str to the int 0, the MLP to the float 0.0.
    number = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    program = rasp.Map(str, number, simplify=False)
    model = compile_program(program, [0, 1, 2], 3)
    assert model.run([[0, 1, 2]], backend="numpy") == [["0.0", "1.0", "2.0"]]


def test_a_numerical_minus_zero_reads_as_zero_in_model_and_evaluator():
    # Used to be silently wrong: the value set {0.0, -0.0} kept 0.0, so the model said
    # '0.0' where the evaluator said '-0.0'. A numerical SOp holds the number zero.
    zeros = rasp.numerical(rasp.Map(lambda x: 0.0 if x == 0 else -0.0 if x == 1 else 2.0,
                                    rasp.tokens))
    program = rasp.Map(str, zeros, simplify=False)
    model = compile_program(program, [0, 1, 2], 3)
    assert model.run([[0, 1, 2]], backend="numpy") == [["0.0", "0.0", "2.0"]]
    assert verify(program, model, exhaustive_up_to=3, backend="numpy").ok
    assert verify(program, model, exhaustive_up_to=2, backend="numpy").ok


def test_categorical_outputs_decode_to_the_evaluators_value_and_type():
    # A dimension per value (identity.py), so the value it decodes to is the evaluator's.
    is_one = rasp.Map(lambda x: x == 1, rasp.tokens)
    model = compile_program(rasp.Map(lambda b: b, is_one, simplify=False), [0, 1, 2], 3)
    row = model.run([[0, 1, 2]], backend="numpy")[0]
    assert row == [False, True, False] and all(type(v) is bool for v in row)


@pytest.mark.parametrize("options, message", [
    ({"attention_precision": "x"}, r"attention_precision must be a number.*got 'x'"),
    ({"attention_precision": True}, r"attention_precision must be a number.*got True"),
    ({"attention_precision": float("nan")}, r"attention_precision must be a number"),
    ({"attention_precision": 0}, r"attention_precision must be greater than 0, got 0"),
    ({"attention_precision": -1e-3}, r"must be greater than 0"),
    ({"attention_precision": 1e-12}, r"attention_precision 1e-12 is below 1e-09"),
    ({"attention_precision": 1.0}, r"attention_precision must be below 1"),
    ({"max_parameters": 0}, r"max_parameters must be a positive int, got 0"),
    ({"max_fused_input_space": 2.5}, r"max_fused_input_space must be a positive int"),
    ({"max_value_set_size": True}, r"max_value_set_size must be a positive int, got True"),
    ({"max_selector_dims": "10"}, r"max_selector_dims must be a positive int, got '10'"),
    ({"allow_unsafe_aggregates": "yes"}, r"allow_unsafe_aggregates must be True or False"),
])
def test_bad_options_are_refused_before_compiling(options, message):
    with pytest.raises(InvalidProgramError, match=message):
        compile_program(lib.make_hist(), ["a"], 3, **options)


def test_numpy_integer_options_are_accepted():
    model = compile_program(lib.make_hist(), ["a", "b"], 3, max_parameters=np.int64(10**6),
                            attention_precision=np.float64(1e-6))
    assert model.run([["a", "b", "a"]], backend="numpy") == [[2, 1, 2]]


def test_any_tokens_type_instance_is_the_input_tokens():
    # A second TokensType() used to rename the module's rasp.tokens to tokens_2 (for
    # the rest of the session) and fail with a KeyError in the scheduler.
    program = rasp.SequenceMap(lambda x, y: x + y, rasp.TokensType(), rasp.tokens)
    model = compile_program(program, [1, 2], 3)
    assert model.run([[1, 2]], backend="numpy") == [[2, 4]] == [rasp.evaluate(program, [1, 2])]
    assert rasp.tokens.label == "tokens"
    indices_sum = rasp.SequenceMap(lambda x, y: x + y, rasp.IndicesType(), rasp.indices)
    assert compile_program(indices_sum, [0], 3).run([[0, 0]], backend="numpy") == [[0, 2]]
    assert rasp.indices.label == "indices"


def test_compiling_leaves_the_users_program_unchanged():
    """Label clashes are resolved in the compiler's copy of the graph, not in the user's
    expressions: the same objects, with the same labels, children and ids, afterwards."""
    step = rasp.Map(lambda x: x + 1, rasp.tokens).named("step")
    again = rasp.Map(lambda x: x + 2, step, simplify=False).named("step")
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("step")
    program = rasp.numerical(rasp.Aggregate(select, rasp.numerical(again), default=0))
    nodes = postorder(program)
    before = [(e.label, e.unique_id, [id(c) for c in e.children]) for e in nodes]
    model = compile_program(program, [1, 2], 3)
    assert [(e.label, e.unique_id, [id(c) for c in e.children]) for e in postorder(program)] \
        == before
    assert model.run([[1, 2]], backend="numpy") == [[4.0, 4.5]] == [rasp.evaluate(program, [1, 2])]


@pytest.mark.parametrize("options, vocab, message", [
    # These compiled and saved, then load() refused (bos and pad the same, or equal to
    # Python: the encoder would give them one id) ...
    ({"bos": "X", "pad": "X"}, ["a", "b"],
     r"bos and pad must be different tokens, got bos='X' and pad='X'; choose another pad="),
    ({"bos": 1, "pad": True}, ["a", "b"],
     r"got bos=1 and pad=True \(int and bool, which == counts as equal: tracr's apply and "
     r"loading could not tell them apart\)"),
    ({"bos": 1, "pad": 1.0}, ["a", "b"], r"\(int and float, which == counts as equal"),
    ({"bos": True}, [1, 2], "the bos token True is also in the vocab as int 1, which Python "
                            "counts as equal; choose another bos="),
    # ... and this compiled, then apply raised a raw TypeError (unhashable list).
    ({"bos": ["X"]}, ["a", "b"], r"bos must be a token a saved model can hold: a str, int, "
                                 r"finite float, bool or a tuple of them, got list \['X'\]"),
    ({"pad": None}, ["a", "b"], "got NoneType None; None is RASP's 'no value'"),
    ({"pad": float("nan")}, ["a", "b"], "got float nan"),
    ({"bos": {"X": 1}}, ["a", "b"], "got dict"),
    ({"pad": "a"}, ["a", "b"], "the pad token 'a' is also in the vocab; choose another pad="),
])
def test_bos_and_pad_are_checked_on_entry(options, vocab, message):
    import time

    started = time.perf_counter()
    with pytest.raises(InvalidProgramError, match=message):
        compile_program(lib.make_hist(), vocab, 4, **options)
    assert time.perf_counter() - started < 1  # before any stage runs


@pytest.mark.parametrize("bos, pad", [(True, False), (1, "1"), (("B",), ("P", None)), (-1.5, 0)])
def test_bos_and_pad_that_compile_also_save_load_and_apply(tmp_path, bos, pad):
    from rasp_compiler.model.compiled import CompiledModel

    model = compile_program(lib.make_reverse(rasp.tokens), ["a", "b"], 3, bos=bos, pad=pad)
    loaded = CompiledModel.load(model.save(tmp_path / "m"))
    assert (loaded.bos, loaded.pad) == (bos, pad) and type(loaded.bos) is type(bos)
    assert loaded.run([["a", "b"]]) == [["b", "a"]]
    assert model.apply([bos, "a", "b"]).decoded == [bos, "b", "a"]


def test_the_stage_table_of_compiler_md_names_real_modules_functions_and_tests():
    """docs/compiler.md's stage table: every module it names exists, every stage function
    is defined in the first module of its row, and every test file it names exists."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "compiler.md").read_text()
    table = text.split("```\nstage ", 1)[1].split("```", 1)[0]
    rows = 0
    for line in table.splitlines()[1:]:
        names = re.findall(r"[\w/]+\.py", line)
        folder = "compiler"
        modules = []
        for name in names:
            if name.startswith("test_") or name.startswith("tests/"):
                path = root / name if "/" in name else root / "tests" / "compiler" / name
                assert path.is_file(), f"docs/compiler.md names a missing test file {name}"
                continue
            if "/" in name:
                folder, name = name.split("/")
            modules.append(root / "rasp_compiler" / folder / name)
            assert modules[-1].is_file(), f"docs/compiler.md names a missing module {name}"
        words = line.split()
        if modules and words and not line.startswith(" " * 14) and words[1][0].isalpha() \
                and words[0] not in ("runtime",):
            function = words[1].rstrip(",")
            source = modules[0].read_text()
            assert re.search(rf"^(def|class) {function}\b", source, re.M), \
                f"{function} is not defined in {modules[0].name}"
            rows += 1
    assert rows >= 14
