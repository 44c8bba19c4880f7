"""The runtime: encoder checks, batching, cache hook names and shapes, decoding, save/load."""

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidInputError, LoadError
from rasp_compiler.model.compiled import CompiledModel, Unclean
from rasp_compiler.verify.checker import verify


@pytest.fixture(scope="module")
def reverse():
    return compile_program(lib.make_reverse(rasp.tokens), ["a", "b", "c"], 6)


def test_run_takes_sequences_of_different_lengths(reverse):
    batch = [["a"], ["a", "b"], ["c", "b", "a", "a", "b", "c"], ["b", "c", "a"]]
    assert reverse.run(batch) == [list(reversed(x)) for x in batch]


def test_token_ids_go_through_ids_true(reverse):
    ids = np.array([[0, 1, 2], [2, 2, 0]])
    vocab = reverse.vocab
    expected = [[vocab[i] for i in reversed(row)] for row in ids.tolist()]
    assert reverse.run(ids, ids=True) == expected
    assert reverse.run([[0, 1], [2]], ids=True) == [["b", "a"], ["c"]]  # ragged lists too
    assert reverse.encode_ids(ids) == reverse.encode([[vocab[i] for i in row] for row in ids])


def test_a_numpy_array_of_an_int_vocab_is_read_as_tokens_not_ids():
    # Before, np.array([[3, 1]]) meant ids 3 and 1, so it disagreed with [[3, 1]].
    model = compile_program(lib.make_reverse(rasp.tokens), [1, 2, 3], 4)
    assert model.run(np.array([[3, 1]]), backend="numpy") == [[1, 3]]
    assert model.run(np.array([[3, 1]]), backend="numpy") == model.run([[3, 1]], backend="numpy")
    assert model.encode(np.array([[3, 1]], dtype=np.int8)) == model.encode([[3, 1]])
    assert model.run(np.array([[0, 2]]), ids=True, backend="numpy") == [[3, 1]]
    with pytest.raises(InvalidInputError, match="token 0 is not in the vocab"):
        model.run(np.array([[0, 1]]))


def test_an_empty_batch_runs_to_nothing_but_has_no_cache(reverse):
    assert reverse.run([]) == []
    with pytest.raises(InvalidInputError, match="run_with_cache got an empty batch"):
        reverse.run_with_cache([])


@pytest.mark.parametrize("batch, message", [
    ([["a", "z"]], r"input 0, position 1: token 'z' is not in the vocab \['a', 'b', 'c'\]"),
    ([["a"] * 7], "input 0 has 7 tokens; this model was compiled for at most max_seq_len=6"),
    ([[]], "input 0 is empty"),
    (["ab"], "input 0 must be a list of tokens, got str 'ab'; to run one sequence"),
    (5, "expected a batch"),
    ([[["a"]]], r"token \['a'\] is not in the vocab"),
    (np.array([["a", "z"]]), r"input 0, position 1: token 'z' is not in the vocab"),
    (np.array(["a", "b"]), "input 0 must be a list of tokens, got str 'a'"),
])
def test_bad_inputs_get_clear_errors(reverse, batch, message):
    with pytest.raises(InvalidInputError, match=message):
        reverse.run(batch)


@pytest.mark.parametrize("ids, message", [
    (np.array([[0, 7]]), r"input 0, position 1: token ids must be ints in 0..2 .* got 7"),
    (np.array([0, 1]), "2-D integers"),
    (np.array([[0.0, 1.0]]), "2-D integers"),
    ([[0, True]], r"position 1: token ids must be ints .* got True"),
    ([[-1]], "got -1"),
    ([5], "input 0 must be a list of token ids, got int 5"),
    (None, "expected token ids"),
    ([[]], "input 0 is empty"),
])
def test_bad_token_ids_get_clear_errors(reverse, ids, message):
    with pytest.raises(InvalidInputError, match=message):
        reverse.run(ids, ids=True)


def test_run_with_cache_uses_transformer_lens_names_batch_first(reverse):
    outputs, cache = reverse.run_with_cache([["a", "b"], ["c", "a", "b"]])
    assert outputs == [["b", "a"], ["b", "a", "c"]]
    batch, length, width = 2, cache["hook_embed"].shape[1], reverse.layout.width
    assert cache["hook_embed"].shape == (batch, length, width)
    assert cache["hook_pos_embed"].shape == (batch, length, width)
    for layer, info in enumerate(reverse.info.layers):
        heads = len(info.heads)
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out",
                     "hook_resid_post"):
            assert cache[f"blocks.{layer}.{name}"].shape == (batch, length, width)
        assert cache[f"blocks.{layer}.attn.hook_pattern"].shape == (batch, heads, length, length)
        assert cache[f"blocks.{layer}.attn.hook_attn_scores"].shape == (batch, heads, length, length)
        assert cache[f"blocks.{layer}.mlp.hook_post"].shape == (batch, length, info.mlp_hidden)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert np.allclose(pattern.sum(-1), 1.0, atol=1e-5)
    assert np.all(pattern[0, :, :, 3:] == 0)  # padding keys are masked for the 2-token input
    assert cache.lengths == (2, 3)
    final = cache[f"blocks.{reverse.depth - 1}.hook_resid_post"]
    assert reverse.decode("reverse", final[1], 3) == ["b", "a", "c"]


def test_apply_is_tracr_compatible(reverse):
    out = reverse.apply(["BOS", "a", "b", "c"])
    assert out.decoded == ["BOS", "c", "b", "a"]
    assert reverse.apply(np.array(["BOS", "a", "b"])).decoded == ["BOS", "b", "a"]
    with pytest.raises(InvalidInputError, match="BOS token 'BOS' first"):
        reverse.apply(["a", "b"])
    for bad in (None, 3, "BOSab"):
        with pytest.raises(InvalidInputError, match=r"apply\(\) takes a list of tokens with the "
                                                    r"BOS token 'BOS' first.*got"):
            reverse.apply(bad)


def test_run_with_cache_in_chunks_equals_one_pass(reverse):
    batch = [["a", "b"], ["c"], ["a", "b", "c", "a"], ["b"], ["c", "c", "a"]]
    outputs, whole = reverse.run_with_cache(batch)
    chunked_outputs, chunked = reverse.run_with_cache(batch, batch_chunk=2)
    assert chunked_outputs == outputs == [list(reversed(x)) for x in batch]
    assert chunked.keys() == whole.keys() and chunked.lengths == whole.lengths
    for name in whole:
        assert chunked[name].shape == whole[name].shape, name
        assert np.allclose(chunked[name], whole[name], atol=1e-6, equal_nan=True), name
    length = whole["hook_embed"].shape[1]
    assert sum(a.nbytes for a in whole.values()) == 5 * reverse.cache_bytes_per_input(length)


def test_the_readouts_are_read_only(reverse):
    with pytest.raises(TypeError):
        reverse.readouts["copy"] = reverse.readouts["reverse"]


def test_run_with_cache_on_the_numpy_forward_records_the_same_hooks(reverse):
    batch = [["a", "b"], ["c"], ["a", "b", "c", "a"]]
    outputs, cache = reverse.run_with_cache(batch)
    numpy_outputs, numpy_cache = reverse.run_with_cache(batch, backend="numpy")
    assert numpy_outputs == outputs and numpy_cache.keys() == cache.keys()
    for name in cache:
        assert np.allclose(numpy_cache[name], cache[name], atol=1e-5, equal_nan=True), name
    with pytest.raises(InvalidInputError, match="backend must be 'jax' or 'numpy', got 'tpu'"):
        reverse.run_with_cache(batch, backend="tpu")


def test_run_with_cache_refuses_a_cache_over_max_cache_bytes(reverse):
    per_input = reverse.cache_bytes_per_input(7)  # BOS + 3 tokens pad to max_seq_len + 1
    batch = [["a", "b", "c"]] * 5
    _, cache = reverse.run_with_cache(batch, max_cache_bytes=5 * per_input)
    assert cache["hook_embed"].shape[:2] == (5, 7)
    with pytest.raises(InvalidInputError,
                       match=rf"activation cache of 5 inputs padded to 7 positions would take "
                             rf".* over max_cache_bytes={4 * per_input:,}; pass at most 4 inputs"):
        reverse.run_with_cache(batch, max_cache_bytes=4 * per_input)
    with pytest.raises(InvalidInputError, match="batch_chunk must be a positive int"):
        reverse.run_with_cache(batch, batch_chunk=0)


def _attend_to_self(pattern):
    """Every query attends to its own position only."""
    out = np.zeros_like(pattern)
    positions = np.arange(pattern.shape[-1])
    out[..., positions, positions] = 1.0
    return out


def test_run_with_hooks_patches_activations_as_transformer_lens_does(reverse):
    """The flip head made to attend to each position itself: reverse becomes copy. The
    cache records what the hook returned; the unpatched model is untouched."""
    batch = [["a", "b", "c"], ["c", "a"]]
    flip = f"blocks.{len(reverse.shape.layers) - 1}.attn.hook_pattern"
    assert reverse.run_with_hooks(batch, [(flip, _attend_to_self)]) == batch
    outputs, cache = reverse.run_with_hooks(batch, [(flip, _attend_to_self)], return_cache=True)
    assert outputs == batch
    assert np.array_equal(cache[flip], _attend_to_self(cache[flip]))
    assert reverse.run(batch) == [["c", "b", "a"], ["a", "c"]]
    seen = []
    unchanged = reverse.run_with_hooks(batch, [(flip, lambda p: seen.append(p.shape)),
                                               ("hook_embed", lambda e: e + 0.0)])
    assert unchanged == reverse.run(batch) and seen and seen[0][:2] == (2, 1)
    # Hooks on one name run in order: the second gets the first's patch.
    second_saw = []
    reverse.run_with_hooks(batch, [(flip, _attend_to_self),
                                   (flip, lambda p: second_saw.append(p.copy()))])
    assert np.array_equal(second_saw[0], _attend_to_self(second_saw[0]))


@pytest.mark.parametrize("hooks, message", [
    ([], "needs fwd_hooks, a non-empty list"),
    (None, "needs fwd_hooks"),
    ([("hook_embed",)], r"fwd_hooks\[0\] is \('hook_embed',\); each hook is a \(hook name"),
    ([("hook_embed", 3)], r"fwd_hooks\[0\] is \('hook_embed', 3\)"),
    ([("blocks.7.hook_resid_pre", lambda x: x)], "no hook named 'blocks.7.hook_resid_pre'"),
    ([("hook_embed", lambda x: x[..., 0])], r"the hook on hook_embed returned shape"),
])
def test_run_with_hooks_refuses_bad_hooks_clearly(reverse, hooks, message):
    with pytest.raises(InvalidInputError, match=message):
        reverse.run_with_hooks([["a", "b"]], hooks)


def test_jitted_runs_refuse_hooks_rather_than_ignore_them(reverse):
    rows = reverse.encode([["a", "b"]])
    with pytest.raises(InvalidInputError, match="numpy forward only"):
        reverse.runtime.run_with_cache(reverse.params, rows, reverse._readout(reverse.output),
                                       hooks={"hook_embed": lambda x: x})


def test_intermediate_sops_can_be_read_back(reverse):
    # length - indices is read by the flip head; length itself is fused into its MLP.
    assert reverse.run([["a", "b", "c"]], label="opp_index") == [[3, 2, 1]]
    with pytest.raises(InvalidInputError, match="'length' has no readout.*fused"):
        reverse.run([["a"]], label="length")


def test_save_and_load_round_trip(tmp_path, reverse):
    reverse.save(tmp_path / "model")
    loaded = CompiledModel.load(tmp_path / "model")
    batch = [["a", "b", "c"], ["c"]]
    assert loaded.run(batch) == reverse.run(batch)
    assert loaded.info == reverse.info
    assert loaded.layout == reverse.layout
    assert loaded.vocab == reverse.vocab and loaded.max_seq_len == reverse.max_seq_len
    with pytest.raises(LoadError, match="cannot load"):
        CompiledModel.load(tmp_path / "missing")


def test_tuple_values_survive_save_and_load(tmp_path):
    pairs = rasp.SequenceMap(lambda x, i: (x, i), rasp.tokens, rasp.indices).named("pairs")
    model = compile_program(pairs, [0, 1], 3)
    model.save(tmp_path / "pairs")
    assert CompiledModel.load(tmp_path / "pairs").run([[1, 0]]) == [[(1, 0), (0, 1)]]


def test_mixed_categorical_outputs_are_flagged_not_guessed():
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    mixed = rasp.Aggregate(everything, rasp.tokens).named("mixed")
    with pytest.warns(Warning, match="mixed: this categorical Aggregate selects positions"):
        model = compile_program(mixed, ["a", "b"], 4, allow_unsafe_aggregates=True)
    (row,) = model.run([["a", "b"]])
    assert all(isinstance(value, Unclean) for value in row)
    assert {v for v, _ in row[0].weights} == {"a", "b"}
    assert model.run([["a", "a"]]) == [["a", "a"]]
    with pytest.raises(InvalidInputError, match="not a clean value"):
        model.run([["a", "b"]], strict=True)


def test_repr_and_summary_are_short_and_useful(reverse):
    text = repr(reverse)
    assert "2 layers (lower bound 2)" in text and "\n" not in text
    summary = reverse.summary()
    assert "flip" in summary and "coldness" in summary
    assert reverse.parameter_count(nonzero=True) < reverse.parameter_count()


def test_every_residual_dimension_has_one_owner():
    model = compile_program(rasp.SequenceMap(lambda n, t: n, rasp.length, rasp.tokens), ["a"], 3)
    ranges = sorted(model.layout.ranges().values())
    assert all(a_stop <= b_start for (_, a_stop), (b_start, _) in zip(ranges, ranges[1:]))
    assert len(set(model.layout.dims)) == model.layout.width


@pytest.fixture(scope="module")
def copy_01():
    return compile_program(rasp.Map(lambda x: x, rasp.tokens), [0, 1], 3)


@pytest.mark.parametrize("token, message", [
    (True, r"position 1: token True \(bool\) is not in the vocab \[0, 1\]; it equals the token "
           r"1 \(int\) but is a different value; pass 1"),
    (1.0, r"token 1.0 \(float\) .*equals the token 1 \(int\)"),
    (False, r"token False \(bool\)"),
])
def test_a_token_must_be_the_vocab_token_not_an_equal_value(copy_01, token, message):
    with pytest.raises(InvalidInputError, match=message):
        copy_01.encode([[0, token]])


def test_numpy_scalars_are_read_as_the_python_token(copy_01):
    assert copy_01.encode([[np.int64(1), 0]]) == [[1, 0]]
    assert copy_01.run([[np.int64(1), np.int32(0)]], backend="numpy") == [[1, 0]]


def test_a_vocab_may_hold_equal_tokens_that_are_different_values():
    """1, True and 1.0 (or 0, False, -0.0, 0.0) are different tokens of one vocab: the
    encoder reads each by identity, the model gives each its own embedding row."""
    program = rasp.Map(lambda x: f"{type(x).__name__} {x}", rasp.tokens)
    model = compile_program(program, [1, True, 1.0, 2], 3)
    assert [type(t) for t in model.vocab] == [bool, int, float, int]
    assert model.encode([[1, True, 1.0], [2]]) == [[1, 0, 2], [3]]
    assert model.run([[1, True, 1.0]]) == [["int 1", "bool True", "float 1.0"]]
    assert model.run([[np.int64(1), np.bool_(True)]], backend="numpy") == [["int 1", "bool True"]]
    assert model.run(np.array([[1, 2]]), backend="numpy") == [["int 1", "int 2"]]  # ints
    with pytest.raises(InvalidInputError, match=r"token 1.5 is not in the vocab \[True, 1, 1.0, 2\]"):
        model.encode([[1.5]])
    assert verify(program, model, exhaustive_up_to=3, backend="numpy").ok
    zeros = compile_program(program, [0.0, -0.0, 0, False], 2)
    assert zeros.run([[-0.0, 0.0], [0, False]], backend="numpy") == [
        ["float -0.0", "float 0.0"], ["int 0", "bool False"]]
    selected = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))
    counts = compile_program(selected, [1, True, 2], 3)
    assert counts.run([[1, True, 2]], backend="numpy") == [[2, 2, 1]]  # 1 == True selects


def test_float_tokens_are_told_apart_by_the_sign_of_zero():
    model = compile_program(rasp.Map(lambda x: x, rasp.tokens), [0.0, 0.5], 2)
    assert model.encode([[0.0, 0.5]]) == [[0, 1]]
    with pytest.raises(InvalidInputError, match=r"token -0.0 \(float\).*equals the token 0.0"):
        model.encode([[-0.0]])
