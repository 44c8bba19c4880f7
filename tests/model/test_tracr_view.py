"""tracr's model object: encoders, residual labels, config, the padded tracr-named params
(a tracr-semantics forward over them equals ours), and tracr's apply fields."""

import dataclasses
import math
import random

import jax
import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.model.forward import forward_numpy
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.lang.evaluator import evaluate
from rasp_compiler.program_files import load_program
from rasp_compiler.model.tracr_view import (
    MASKED_LOGIT,
    CategoricalEncoder,
    NumericalEncoder,
    TracrOutput,
    forward,
)

from cases import CASES, causal_twin

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")


@pytest.fixture(scope="module")
def reverse():
    return compile_program(lib.make_reverse(rasp.tokens), ["a", "b", "c"], 5)


@pytest.fixture(scope="module")
def shuffle_dyck():
    """Layers of 5, 0 and 2 heads with different key sizes: every kind of padding."""
    return compile_program(lib.make_shuffle_dyck(["()", "{}"]), list("(){}"), 6)


def _padded_batch(model, rng, count=4):
    """Inputs in tracr's form (BOS first, PAD after), as our token ids through the encoder."""
    length = model.max_seq_len + 1
    encoder = model.input_encoder
    rows = []
    for _ in range(count):
        tokens = [rng.choice(model.vocab) for _ in range(rng.randint(1, model.max_seq_len))]
        rows.append(encoder.encode([model.bos] + tokens + [model.pad] * (length - 1 - len(tokens))))
    return np.asarray(rows, dtype=np.int32)


def _assert_close(theirs, ours, what):
    scale = max(1.0, float(np.abs(ours).max(initial=0.0)))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


def _assert_tracr_view_equals_ours(model, ids, ours):
    """`ours`: our activations by hook name on `ids` (BOS first, PAD masked)."""
    config = model.model_config
    pad = model.input_encoder.pad_encoding
    out = forward(model.tracr_params(), config, ids, pad)
    _assert_close(out.input_embeddings, ours["hook_embed"] + ours["hook_pos_embed"], "embeddings")
    assert len(out.residuals) == len(out.layer_outputs) == 2 * model.depth
    assert len(out.attn_logits) == model.depth
    for l, layer in enumerate(model.shape.layers):
        _assert_close(out.layer_outputs[2 * l], ours[f"blocks.{l}.hook_attn_out"], f"attn out {l}")
        _assert_close(out.residuals[2 * l], ours[f"blocks.{l}.hook_resid_mid"], f"resid mid {l}")
        _assert_close(out.layer_outputs[2 * l + 1], ours[f"blocks.{l}.hook_mlp_out"],
                      f"mlp out {l}")
        _assert_close(out.residuals[2 * l + 1], ours[f"blocks.{l}.hook_resid_post"], f"resid {l}")
        logits = out.attn_logits[l]
        assert logits.shape == (len(ids), config.num_heads, ids.shape[1], ids.shape[1])
        visible = np.broadcast_to((ids != pad)[:, None, None, :], logits.shape)
        if model.causal:  # and no key after its query
            visible = visible & np.tril(np.ones(logits.shape[-2:], bool))
        assert np.all(logits[~visible] == np.float32(MASKED_LOGIT))
        scores = np.asarray(ours[f"blocks.{l}.attn.hook_attn_scores"])
        real = visible[:, : layer.heads]
        _assert_close(logits[:, : layer.heads][real], scores[real], f"attn logits {l}")
        assert np.all(logits[:, layer.heads:][visible[:, layer.heads:]] == 0), "padded heads"
    final = ours[f"blocks.{model.depth - 1}.hook_resid_post"] if model.depth else (
        ours["hook_embed"] + ours["hook_pos_embed"])
    _assert_close(out.output, final, "output")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_tracr_forward_over_padded_params_equals_ours(case, compiled_case):
    plain = compiled_case(case)
    ids = _padded_batch(plain, random.Random(case.name))
    # The causal model has the same weights behind a mask (test_causal pins that): its
    # padded view must carry the mask in model_config.causal.
    for model in (plain, causal_twin(plain)):
        assert model.model_config.causal is model.causal
        ours = {}
        forward_numpy(model.params, model.shape, ids, ids != model.input_encoder.pad_encoding,
                      ours)
        _assert_tracr_view_equals_ours(model, ids, ours)


def test_tracr_forward_equals_the_jitted_run_with_cache(shuffle_dyck):
    rng = random.Random(0)
    batch = [[rng.choice(shuffle_dyck.vocab) for _ in range(n)] for n in (1, 3, 6)]
    _, cache = shuffle_dyck.run_with_cache(batch)
    length = cache["hook_embed"].shape[1]
    encoder = shuffle_dyck.input_encoder
    padding = lambda row: [shuffle_dyck.pad] * (length - 1 - len(row))
    ids = np.asarray([encoder.encode([shuffle_dyck.bos] + row + padding(row)) for row in batch])
    _assert_tracr_view_equals_ours(shuffle_dyck, ids, cache)


def test_padding_blocks_are_zero_and_real_blocks_are_ours(shuffle_dyck):
    model = shuffle_dyck
    config = model.model_config
    assert [layer.heads for layer in model.shape.layers] == [5, 0, 2]
    heads, size, width = config.num_heads, config.key_size, config.mlp_hidden_size
    assert (heads, config.num_layers) == (5, 3)
    assert size == max(max(layer.key_size, layer.value_size) for layer in model.shape.layers)
    assert width == max(layer.mlp_hidden for layer in model.shape.layers)
    params = model.tracr_params()
    d = model.shape.d_model
    for l, layer in enumerate(model.shape.layers):
        h, dk, dv = layer.heads, layer.key_size, layer.value_size
        for name, per_head, factor in (("query", dk, math.sqrt(size)), ("key", dk, 1),
                                       ("value", dv, 1)):
            module = params[f"transformer/layer_{l}/attn/{name}"]
            w = np.asarray(module["w"]).reshape(d, heads, size)
            ours = np.asarray(model.params[f"layer_{l}/attn/{name}"]["w"]).reshape(d, h, per_head)
            np.testing.assert_allclose(w[:, :h, :per_head], ours * factor, rtol=1e-6)
            assert not w[:, h:].any() and not w[:, :, per_head:].any()
            assert module["b"].shape == (heads * size,) and not np.asarray(module["b"]).any()
        w_o = np.asarray(params[f"transformer/layer_{l}/attn/linear"]["w"]).reshape(heads, size, d)
        ours_o = np.asarray(model.params[f"layer_{l}/attn/linear"]["w"]).reshape(h, dv, d)
        assert np.array_equal(w_o[:h, :dv], ours_o)
        assert not w_o[h:].any() and not w_o[:, dv:].any()
        w_1 = np.asarray(params[f"transformer/layer_{l}/mlp/linear_1"]["w"])
        w_2 = np.asarray(params[f"transformer/layer_{l}/mlp/linear_2"]["w"])
        assert w_1.shape == (d, width) and w_2.shape == (width, d)
        assert np.array_equal(w_1[:, : layer.mlp_hidden],
                              np.asarray(model.params[f"layer_{l}/mlp/linear_1"]["w"]))
        assert not w_1[:, layer.mlp_hidden:].any() and not w_2[layer.mlp_hidden:].any()
    expected_modules = {"token_embed", "pos_embed"} | {
        f"transformer/layer_{l}/{part}" for l in range(3)
        for part in ("attn/query", "attn/key", "attn/value", "attn/linear", "mlp/linear_1",
                     "mlp/linear_2")}
    assert set(params) == expected_modules
    assert set(params["token_embed"]) == {"embeddings"}
    # params stays ours: unpadded, no transformer/ prefix.
    assert model.params["layer_1/attn/query"]["w"].shape == (d, 0)


def test_model_config_has_tracrs_fields_and_values(reverse):
    config = reverse.model_config
    assert [f.name for f in dataclasses.fields(config)] == [
        "num_heads", "num_layers", "key_size", "mlp_hidden_size", "dropout_rate",
        "activation_function", "layer_norm", "causal"]
    assert config.activation_function is jax.nn.relu
    assert (config.dropout_rate, config.layer_norm, config.causal) == (0.0, False, False)
    assert config.num_layers == reverse.depth


def test_causal_config_masks_later_keys(reverse):
    config = dataclasses.replace(reverse.model_config, causal=True)
    encoder = reverse.input_encoder
    first = np.asarray([encoder.encode(["BOS", "a", "b", "c", "a"])])
    second = np.asarray([encoder.encode(["BOS", "a", "b", "a", "c"])])
    params = reverse.tracr_params()
    out_first, out_second = (forward(params, config, ids, encoder.pad_encoding)
                             for ids in (first, second))
    for a, b in zip(out_first.residuals, out_second.residuals):
        assert np.array_equal(a[:, :3], b[:, :3])  # positions before the change see no change
    assert not np.array_equal(out_first.output[:, 3:], out_second.output[:, 3:])
    assert np.all(out_first.attn_logits[0][0, :, 1, 2:] == np.float32(MASKED_LOGIT))


def test_encoders_follow_tracr(reverse):
    encoder = reverse.input_encoder
    assert isinstance(encoder, CategoricalEncoder)
    assert encoder.encoding_map == {"a": 0, "b": 1, "c": 2, "BOS": 3, "PAD": 4}
    assert encoder.decoding_map == {i: t for t, i in encoder.encoding_map.items()}
    assert (encoder.bos_token, encoder.bos_encoding) == ("BOS", 3)
    assert (encoder.pad_token, encoder.pad_encoding) == ("PAD", 4)
    assert encoder.vocab_size == 5 == reverse.tracr_params()["token_embed"]["embeddings"].shape[0]
    assert encoder.encode(["BOS", "c", "a", "PAD"]) == [3, 2, 0, 4]
    assert encoder.decode([3, 2, 0, 4]) == ["BOS", "c", "a", "PAD"]
    output = reverse.output_encoder
    assert output.encoding_map == {"a": 0, "b": 1, "c": 2} and output.bos_token is None
    numerical = compile_program(lib.make_frac_prevs(rasp.tokens == "x"), ["x", "y"], 4)
    assert isinstance(numerical.output_encoder, NumericalEncoder)  # as tracr; not None
    assert numerical.output_encoder.decode([0.5, 1.0]) == [0.5, 1.0]


def test_encoders_keep_equal_but_different_values_apart():
    """A dict would keep one of 1 and True, 0 and 0.0: the encoders of such a vocab or
    output are ValueMaps, with an id for each (tracr, whose value sets are sets, merges them)."""
    program = rasp.SequenceMap(lambda a, b: 0 if a == b else (0.0 if a < b else 1), rasp.tokens,
                               rasp.indices)
    model = compile_program(program, [1, True, 2], 3, bos="BOS", pad="PAD")
    encoder = model.input_encoder
    assert [(type(t), i) for t, i in encoder.encoding_map.items()] == [
        (bool, 0), (int, 1), (int, 2), (str, 3), (str, 4)]
    assert encoder.encode(["BOS", 1, True]) == [3, 1, 0]
    assert encoder.decode([3, 1, 0]) == ["BOS", 1, True]
    assert [type(t) for t in encoder.decode([1, 0])] == [int, bool]
    output = model.output_encoder
    assert [(type(v), i) for v, i in output.encoding_map.items()] == [(int, 0), (float, 1), (int, 2)]
    out = model.apply(["BOS", True, 2, 1])
    assert out.decoded[1:] == [1, 1, 0.0] and type(out.decoded[3]) is float
    assert output.decode(out.unembedded[0, 1:].tolist()) == out.decoded[1:]
    assert [type(v) for v in output.decode(out.unembedded[0, 1:].tolist())] == [
        type(v) for v in out.decoded[1:]]


@pytest.mark.parametrize("tokens, message", [
    (["a", "b"], "BOS token 'BOS' first"),
    ([], "BOS token 'BOS' first"),
    (["BOS", "a", "z"], r"position 2: token 'z' is not in the encoding map"),
    (["BOS", ["a"]], r"position 1: token \['a'\] is not in the encoding map"),
    (["BOS"] + ["a"] * 6, "7 tokens, BOS included; this model takes at most 6"),
    (["BOS", "a", "BOS"], "position 2: the BOS token 'BOS' may only come first"),
    (["BOS", "a", "PAD", "b"], "position 3: token 'b' follows the PAD token 'PAD'"),
    (None, r"apply\(\) takes a list of tokens with the BOS token 'BOS' first .*got NoneType None"),
    ("BOSab", r"apply\(\) takes a list of tokens .*got str 'BOSab'"),
])
def test_apply_rejects_bad_inputs_clearly(reverse, tokens, message):
    with pytest.raises(InvalidInputError, match=message):
        reverse.apply(tokens)


def test_encoder_decode_rejects_unknown_ids(reverse):
    with pytest.raises(InvalidInputError, match="position 1: id 9 is not in the decoding map"):
        reverse.output_encoder.decode([0, 9])


def test_apply_has_tracrs_fields_shapes_and_order(reverse):
    out = reverse.apply(["BOS", "a", "b", "c", "PAD"])
    assert isinstance(out, TracrOutput)
    assert out.decoded == ["BOS", "c", "b", "a", "PAD"]
    width, heads, length = reverse.layout.width, reverse.model_config.num_heads, 5
    assert out.unembedded.shape == (1, length) and out.unembedded_output is out.unembedded
    assert reverse.output_encoder.decode(out.unembedded[0, 1:4].tolist()) == ["c", "b", "a"]
    assert len(out.layer_outputs) == len(out.residuals) == 2 * reverse.depth
    assert all(x.shape == (1, length, width) for x in out.layer_outputs + out.residuals)
    assert [x.shape for x in out.attn_logits] == [(1, heads, length, length)] * reverse.depth
    assert out.transformer_output.shape == out.input_embeddings.shape == (1, length, width)
    assert np.array_equal(out.transformer_output, out.residuals[-1])
    np.testing.assert_allclose(out.residuals[0], out.input_embeddings + out.layer_outputs[0])
    # PAD is masked: the real positions are as without it.
    unpadded = reverse.apply(["BOS", "a", "b", "c"])
    np.testing.assert_allclose(unpadded.transformer_output, out.transformer_output[:, :4],
                               atol=1e-5)


def test_residual_labels_name_every_dimension(reverse):
    labels = reverse.residual_labels
    assert len(labels) == reverse.shape.d_model == len(set(labels))
    assert labels[:2] == ["one", "bos"]
    assert {"tokens:a", "indices:0", "indices:4", "reverse:c"} <= set(labels)
    embeddings = reverse.tracr_params()["token_embed"]["embeddings"]
    bos_row = embeddings[reverse.input_encoder.bos_encoding]
    assert [labels[i] for i in np.flatnonzero(np.asarray(bos_row))] == ["one", "bos"]


# ---------------------------------------------------------------------------- a tracr user


def _tracr_user_run(model, program_label, tokens):
    """Code written only against tracr's documented attributes, as people write to move a
    tracr model into TransformerLens: config, params by haiku name, encoders, labels."""
    cfg = model.model_config
    params = model.tracr_params()
    n_heads, d_head = cfg.num_heads, cfg.key_size
    ids = np.asarray(model.input_encoder.encode(tokens))
    x = np.asarray(params["token_embed"]["embeddings"])[ids] + np.asarray(
        params["pos_embed"]["embeddings"])[: len(ids)]
    attn_outs = []
    for l in range(cfg.num_layers):
        def heads(name):
            w = np.asarray(params[f"transformer/layer_{l}/attn/{name}"]["w"])
            b = np.asarray(params[f"transformer/layer_{l}/attn/{name}"]["b"])
            w = w.reshape(w.shape[0], n_heads, d_head).transpose(1, 0, 2)  # n_heads d_model d_head
            return np.einsum("td,hde->hte", x, w) + b.reshape(n_heads, 1, d_head)
        q, k, v = heads("query"), heads("key"), heads("value")
        scores = np.einsum("hte,hse->hts", q, k) / np.sqrt(d_head)
        if cfg.causal:
            scores = np.where(np.tril(np.ones(scores.shape[1:], bool)), scores, -1e30)
        pattern = np.exp(scores - scores.max(-1, keepdims=True))
        pattern /= pattern.sum(-1, keepdims=True)
        z = np.einsum("hts,hse->the", pattern, v).reshape(len(ids), n_heads * d_head)
        attn_out = z @ np.asarray(params[f"transformer/layer_{l}/attn/linear"]["w"]) + np.asarray(
            params[f"transformer/layer_{l}/attn/linear"]["b"])
        attn_outs.append(attn_out)
        x = x + attn_out
        mlp = lambda name, part: np.asarray(params[f"transformer/layer_{l}/mlp/{name}"][part])
        hidden = np.maximum(x @ mlp("linear_1", "w") + mlp("linear_1", "b"), 0)
        x = x + hidden @ mlp("linear_2", "w") + mlp("linear_2", "b")
    encoder = model.output_encoder
    if isinstance(encoder, NumericalEncoder):
        decoded = x[:, model.residual_labels.index(program_label)].tolist()
    else:
        values = sorted(encoder.encoding_map, key=encoder.encoding_map.get)
        columns = [model.residual_labels.index(f"{program_label}:{value}") for value in values]
        decoded = encoder.decode(x[:, columns].argmax(-1).tolist())
    return [model.input_encoder.bos_token] + decoded[1:], attn_outs


@pytest.mark.parametrize("name, inputs, causal", [
    ("sort_unique", [[3, 1, 2], [5, 4, 1, 2]], False),
    ("frac_prevs", [["x", "a", "x"], ["b", "x", "x", "x"]], False),
    ("reverse", [["a", "b", "c"], ["c", "a"]], True),  # causal: tracr code applies the mask
    ("frac_prevs", [["x", "a", "x"], ["b", "x", "x", "x"]], True),
])
def test_code_written_for_tracr_gets_the_same_answers(name, inputs, causal):
    spec = load_program(name)
    program = spec.make(spec.max_seq_len)
    model = compile_program(program, spec.vocab, spec.max_seq_len, causal=causal, **spec.options)
    assert model.model_config.causal is causal
    for tokens in inputs:
        decoded, attn_outs = _tracr_user_run(model, program.label, ["BOS"] + tokens)
        out = model.apply(["BOS"] + tokens)
        expected = evaluate(program, tokens, causal=causal)
        if isinstance(model.output_encoder, NumericalEncoder):
            np.testing.assert_allclose(decoded[1:], expected, atol=1e-4)
            np.testing.assert_allclose(out.decoded[1:], expected, atol=1e-4)
            np.testing.assert_allclose(out.unembedded[0, 1:], expected, atol=1e-4)
        else:
            assert decoded[1:] == out.decoded[1:] == expected
        assert decoded[0] == out.decoded[0] == "BOS"
        for l, attn_out in enumerate(attn_outs):
            np.testing.assert_allclose(attn_out, out.layer_outputs[2 * l][0], atol=1e-4)
