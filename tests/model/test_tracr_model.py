"""What `compile_rasp_to_model` returns, read the way public tracr converters read it.

Two readers are exercised, each using only tracr's fields (`params` by tracr's
names, `model_config`, `residual_labels`, the encoders):
- TransformerLens's tracr demo: the unembedding is the first `d_vocab_out`
  residual dimensions (true in tracr because its sorted labels put the output first);
- a benchmark-style converter: the residual space is rebuilt from the labels
  with tracr's own `VectorSpaceWithBasis` (which sorts its directions) and the
  unembedding is tracr's `project` onto the output encoder's `basis`.
If our residual were not in tracr's order, both would read the wrong rows.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import random

import jax
import numpy as np
import pytest

from rasp_compiler import compiling, rasp
from rasp_compiler.model import tracr_view
from rasp_compiler.model.compiled import Unclean
from rasp_compiler.model.tracr_model import AssembledModel, BasisDirection, ModelBlock, tracr_sorted
from rasp_compiler.verify.report import values_match

from cases import CASES

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning"),
    # TransformerLens 3 deprecates HookedTransformer, which these converters build.
    pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning"),
    pytest.mark.xdist_group("export"),  # the worker that already imports torch and TransformerLens
]

TOLERANCE = 1e-5


def _imports():
    """torch, TransformerLens and tracr's vector spaces, imported on first use (seconds)."""
    torch = importlib.import_module("torch")
    torch.set_num_threads(1)
    return (torch, importlib.import_module("transformer_lens"),
            importlib.import_module("tracr.craft.bases"),
            importlib.import_module("tracr.craft.vectorspace_fns"))


def _hooked(model, d_vocab_out, unembed):
    """A HookedTransformer with the model's tracr parameters, as the converters build it."""
    torch, tl, _, _ = _imports()
    config = model.model_config
    cfg = tl.HookedTransformerConfig(
        n_layers=config.num_layers, d_model=model.params["token_embed"]["embeddings"].shape[1],
        d_head=config.key_size, n_ctx=model.params["pos_embed"]["embeddings"].shape[0],
        d_vocab=model.params["token_embed"]["embeddings"].shape[0], d_vocab_out=d_vocab_out,
        d_mlp=config.mlp_hidden_size, n_heads=config.num_heads, act_fn="relu",
        attention_dir="causal" if config.causal else "bidirectional",
        normalization_type="LN" if config.layer_norm else None)
    hooked = tl.HookedTransformer(cfg)
    p = model.params
    n, d = config.num_heads, config.key_size
    sd = {"pos_embed.W_pos": p["pos_embed"]["embeddings"],
          "embed.W_E": p["token_embed"]["embeddings"], "unembed.W_U": unembed}
    per_head = lambda w: np.asarray(w).reshape(w.shape[0], n, d).transpose(1, 0, 2)
    for l in range(config.num_layers):
        attn = lambda name: p[f"transformer/layer_{l}/attn/{name}"]
        mlp = lambda name: p[f"transformer/layer_{l}/mlp/{name}"]
        for ours, theirs in (("query", "Q"), ("key", "K"), ("value", "V")):
            sd[f"blocks.{l}.attn.W_{theirs}"] = per_head(attn(ours)["w"])
            sd[f"blocks.{l}.attn.b_{theirs}"] = np.asarray(attn(ours)["b"]).reshape(n, d)
        sd[f"blocks.{l}.attn.W_O"] = np.asarray(attn("linear")["w"]).reshape(n, d, -1)
        sd[f"blocks.{l}.attn.b_O"] = attn("linear")["b"]
        sd[f"blocks.{l}.mlp.W_in"], sd[f"blocks.{l}.mlp.b_in"] = mlp("linear_1").values()
        sd[f"blocks.{l}.mlp.W_out"], sd[f"blocks.{l}.mlp.b_out"] = mlp("linear_2").values()
    hooked.load_state_dict({k: torch.tensor(np.array(v, np.float32)) for k, v in sd.items()},
                           strict=False)
    return hooked


def _label_value(label: str, known: dict):
    """A residual label as a tracr direction: the output's own directions as the encoder
    holds them, other values parsed back from text (True/False, int, float, else str)."""
    if label in known:
        return known[label]
    name, _, text = label.partition(":")
    if not _:
        return (name, None)
    try:
        return (name, ast.literal_eval(text))  # 1, 2.5, True, (0, 1), -0.0
    except (ValueError, SyntaxError):
        return (name, text)


def _benchmark_converter(model):
    """The residual rebuilt from `residual_labels` by tracr's sorting vector space, the
    unembedding projected onto `output_encoder.basis` by tracr's own `project`."""
    _, _, bases, vectorspace_fns = _imports()
    known = {str(d): (d.name, d.value) for d in model.output_encoder.basis}
    residual = bases.VectorSpaceWithBasis(
        [bases.BasisDirection(*_label_value(label, known)) for label in model.residual_labels])
    output = bases.VectorSpaceWithBasis(model.output_encoder.basis)
    # tracr's space sorts its directions: our labels must already be in that order.
    assert [str(d) for d in residual.basis] == model.residual_labels
    unembed = vectorspace_fns.project(residual, output).matrix
    if _merged_by_tracr(model):  # see test_tracrs_vector_spaces_merge_equal_values
        unembed = _unembed_by_label(model)
    return _hooked(model, len(model.output_encoder.basis), unembed)


def _merged_by_tracr(model) -> bool:
    """Whether the output holds values Python calls equal (0 and 0.0): tracr's directions
    compare by (name, value), so its vector spaces take two such directions for one."""
    values = [d.value for d in model.output_encoder.basis]
    return len(set(values)) < len(values)


def _unembed_by_label(model) -> np.ndarray:
    """The output read by label, as docs/tracr.md recommends: column j is the residual
    dimension labelled like the output encoder's j-th direction."""
    unembed = np.zeros((len(model.residual_labels), len(model.output_encoder.basis)))
    for j, direction in enumerate(model.output_encoder.basis):
        unembed[model.residual_labels.index(str(direction)), j] = 1.0
    return unembed


def _decode(model, logits):
    encoder = model.output_encoder
    if hasattr(encoder, "encoding_map"):
        return [encoder.decode(row) for row in logits.argmax(-1).tolist()]
    return logits[..., 0].tolist()


def _matches(got, expected, numerical):
    """Position by position; argmax cannot say None or a blend, so those positions of a
    categorical output are skipped (our decoder reports them; the logits are still compared)."""
    for g, e in zip(got, expected):
        if numerical:
            if not values_match(g, e):
                return False
        elif e is not None and not isinstance(e, Unclean) and not values_match(
                g, e, categorical=True):
            return False
    return True


@pytest.fixture
def assembled(compiled_case):
    """Each case's compiled model seen as tracr's object (unsafe aggregates allowed where
    the causal compile refuses them, as the export tests do)."""
    from rasp_compiler.errors import UnsafeAggregateError

    def get(case, causal):
        try:
            return AssembledModel(compiled_case(case, causal))
        except UnsafeAggregateError:
            return AssembledModel(compiled_case(case, causal, allow_unsafe_aggregates=True))

    return get


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_benchmark_converter_reproduces_every_case(case, causal, assembled):
    torch, _, _, _ = _imports()
    model = assembled(case, causal)
    hooked = _benchmark_converter(model)
    numerical = model.compiled.readouts[model.compiled.output].numerical
    rng = random.Random(case.name)
    bos = model.input_encoder.bos_token
    for length in sorted({1, model.compiled.max_seq_len}):
        batch = [[rng.choice(model.compiled.vocab) for _ in range(length)] for _ in range(3)]
        ids = np.asarray([model.input_encoder.encode([bos, *tokens]) for tokens in batch])
        with torch.no_grad():
            logits, cache = hooked.run_with_cache(torch.tensor(ids))
        logits = logits.numpy().astype(np.float64)
        ours = tracr_view.forward(model.params, model.model_config, ids,  # numpy: no XLA compiles
                                  model.input_encoder.pad_encoding)
        columns = ours.output[..., _output_columns(model)]
        np.testing.assert_allclose(logits, columns, atol=TOLERANCE * max(1, np.abs(columns).max()))
        for l in range(model.model_config.num_layers):
            np.testing.assert_allclose(
                cache[f"blocks.{l}.hook_resid_post"].numpy(),
                ours.residuals[2 * l + 1], atol=1e-4, rtol=1e-5)
        got = _decode(model, logits[:, 1:])
        expected = model.compiled.run(batch, backend="numpy")
        for g, e in zip(got, expected):
            assert _matches(g, e, numerical), (batch, got, expected)


def _output_columns(model):
    return [model.residual_labels.index(str(d)) for d in model.output_encoder.basis]


def test_transformer_lens_demo_runs_unchanged():
    """The demo's program and steps: its unembedding is np.eye(d_model, d_vocab_out), right
    only if the output's directions sort first, as they do in tracr for this program."""
    torch, _, _, _ = _imports()
    length = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    opp_index = length - rasp.indices - 1
    flip = rasp.Select(rasp.indices, opp_index, rasp.Comparison.EQ)
    reverse = rasp.Aggregate(flip, rasp.tokens)
    model = compiling.compile_rasp_to_model(reverse, vocab={1, 2, 3}, max_seq_len=5,
                                            compiler_bos="BOS")
    d_model = model.params["token_embed"]["embeddings"].shape[1]
    d_vocab_out = model.params["token_embed"]["embeddings"].shape[0] - 2
    hooked = _hooked(model, d_vocab_out, np.eye(d_model, d_vocab_out))
    for tokens in ([1, 2, 3], [3, 1, 1, 2, 2], [2]):
        out = model.apply(["BOS", *tokens])
        ids = torch.tensor(model.input_encoder.encode(["BOS", *tokens]))[None]
        logits, cache = hooked.run_with_cache(ids)
        decoded = model.output_encoder.decode(logits[0].argmax(-1).tolist())
        assert ["BOS"] + decoded[1:] == out.decoded == ["BOS", *tokens[::-1]]
        for l in range(hooked.cfg.n_layers):
            np.testing.assert_allclose(cache["attn_out", l][0].detach().numpy(),
                                       np.asarray(out.layer_outputs[2 * l][0]), atol=1e-5)
            np.testing.assert_allclose(cache["mlp_out", l][0].detach().numpy(),
                                       np.asarray(out.layer_outputs[2 * l + 1][0]), atol=1e-5)


def test_input_ids_are_tracrs():
    """The same ids tracr's encoder gives: the token directions in tracr's sorted order."""
    _, _, bases, _ = _imports()
    for vocab in ({1, 2, 3}, {"b", "a", "c"}, {0, 5, 10, 9}, {1, "x", 2.5}):
        model = compiling.compile_rasp_to_model(rasp.Map(lambda x: x, rasp.tokens), vocab, 3)
        space = bases.VectorSpaceWithBasis.from_values("tokens", set(vocab) | {
            compiling.COMPILER_BOS, compiling.COMPILER_PAD})
        assert model.input_encoder.encoding_map == {d.value: i for i, d in enumerate(space.basis)}
        assert [(d.name, d.value) for d in model.input_encoder.basis] == [
            (d.name, d.value) for d in space.basis]


def test_tracrs_defaults_and_imports():
    from rasp_compiler import compile_rasp_to_model

    assert compile_rasp_to_model is compiling.compile_rasp_to_model
    model = compiling.compile_rasp_to_model(rasp.Map(lambda x: x + 1, rasp.tokens), {1, 2}, 3)
    assert model.input_encoder.bos_token == "compiler_bos"
    assert model.input_encoder.pad_token == "compiler_pad"
    assert "tokens:compiler_bos" in model.residual_labels
    assert "tokens:compiler_pad" in model.residual_labels
    assert model.apply(["compiler_bos", 1, 2]).decoded == ["compiler_bos", 2, 3]
    assert model.model is model  # code written for a TracrOutput-style result reads .model
    assert model.run([[1, 2]]) == model.compiled.run([[1, 2]]) == [[2, 3]]  # ours, through the view


def test_forward_is_a_jax_function_with_tracrs_fields():
    model = compiling.compile_rasp_to_model(
        rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
                                      rasp.numerical(rasp.Map(lambda x: x, rasp.tokens)),
                                      default=0)), {1, 2, 3}, 4)
    ids = np.asarray([model.input_encoder.encode(["compiler_bos", 3, 1, 2])])
    out = jax.jit(model.forward)(model.params, ids)
    expected = tracr_view.forward(model.params, model.model_config, ids,
                                  model.input_encoder.pad_encoding)
    for ours, theirs in zip(out.transformer_output.residuals, expected.residuals):
        np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.unembedded_output)[0, 1:], [3, 2, 2], atol=1e-5)
    grads = jax.grad(lambda p: model.forward(p, ids).unembedded_output.sum())(model.params)
    assert set(grads) == set(model.params)  # gradients reach every parameter tracr has


@pytest.mark.parametrize("program, extra_layer", [
    # numerical Map of tokens: our model reads it as a form of the token one-hots (0 layers)
    (lambda: rasp.numerical(rasp.Map(lambda x: 2 * x - 1, rasp.tokens)), True),
    # a form over an Aggregate written by attention: the last MLP has room for it
    (lambda: rasp.numerical(rasp.LinearSequenceMap(
        rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
                                      rasp.numerical(rasp.Map(lambda x: x, rasp.tokens)),
                                      default=0)),
        rasp.numerical(rasp.Map(lambda x: x, rasp.tokens)), 2, -1)), False),
], ids=["no-layers", "last-mlp"])
def test_a_numerical_output_gets_its_own_dimension(program, extra_layer):
    """tracr's reading of a numerical output is its one labelled dimension: our model may
    leave it as a linear form, so the view writes it down exactly."""
    program = program()
    model = compiling.compile_rasp_to_model(program, {1, 2, 3}, 3)
    assert model.residual_labels.count(program.label) == 1
    assert model.model_config.num_layers == model.compiled.depth + extra_layer
    column = model.residual_labels.index(program.label)
    for tokens in itertools.chain.from_iterable(
            itertools.product((1, 2, 3), repeat=n) for n in (1, 2, 3)):
        out = model.apply(["compiler_bos", *tokens])
        expected = rasp.evaluate(program, list(tokens))
        np.testing.assert_allclose(out.transformer_output[0, 1:, column], expected, atol=1e-5)
        np.testing.assert_allclose(out.unembedded[0, 1:], expected, atol=1e-5)
        assert out.decoded[1:] == pytest.approx(expected)


def test_graph_has_tracrs_node_keys():
    from rasp_compiler import lib

    program = lib.make_sort_unique(rasp.tokens, rasp.tokens)
    model = compiling.compile_rasp_to_model(program, {1, 2, 3}, 4)
    graph = model.graph
    assert graph.nodes[program.label]["EXPR"] is program or graph.nodes[program.label][
        "EXPR"].label == program.label
    for label, node in graph.nodes(data=True):
        assert node["ID"] == label and node["EXPR"].label == label
        if isinstance(node["EXPR"], rasp.SOp):
            assert node["OUTPUT_BASIS"] == tracr_sorted(node["OUTPUT_BASIS"])
            assert all(d.name == label for d in node["OUTPUT_BASIS"])
        assert node["MODEL_BLOCK"] is None or isinstance(node["MODEL_BLOCK"], ModelBlock)
    assert graph.nodes["tokens"]["VALUE_SET"] == {1, 2, 3}
    assert graph.nodes["indices"]["VALUE_SET"] == {0, 1, 2, 3}
    assert graph.nodes[program.label]["VALUE_SET"] == {1, 2, 3}
    assert graph.nodes[program.label]["MODEL_BLOCK"].kind == "attention"
    for name in graph.nodes[program.label]["MODEL_BLOCK"].names:  # names are hooks' prefixes
        assert name.startswith("blocks.")
    assert set(graph.predecessors(program.label)) == {c.label for c in program.children}


def test_get_compiled_model_says_what_to_use():
    model = compiling.compile_rasp_to_model(rasp.Map(lambda x: x, rasp.tokens), {1}, 2)
    with pytest.raises(NotImplementedError, match=r"model\.forward\(model\.params"):
        model.get_compiled_model()


def test_converters_see_tracrs_encoder_classes():
    """Converters pick argmax or squeeze by isinstance against tracr's encoder classes."""
    encoder = importlib.import_module("tracr.transformer.encoder")
    categorical = compiling.compile_rasp_to_model(rasp.Map(lambda x: x, rasp.tokens), {1}, 2)
    numerical = compiling.compile_rasp_to_model(
        rasp.numerical(rasp.Map(lambda x: x, rasp.tokens)), {1}, 2)
    assert isinstance(categorical.output_encoder, encoder.CategoricalEncoder)
    assert isinstance(categorical.input_encoder, encoder.CategoricalEncoder)
    assert isinstance(numerical.output_encoder, encoder.NumericalEncoder)
    assert not isinstance(numerical.output_encoder, encoder.CategoricalEncoder)


def test_basis_directions_equal_tracrs():
    _, _, bases, _ = _imports()
    ours, theirs = BasisDirection("x", 1), bases.BasisDirection("x", 1)
    assert ours == theirs and theirs == ours and hash(ours) == hash(theirs)
    assert {theirs} & {ours}
    mixed = [BasisDirection("x", "a"), BasisDirection("x", 2), BasisDirection("one")]
    assert [str(d) for d in tracr_sorted(mixed)] == [
        str(d) for d in sorted(bases.BasisDirection(d.name, d.value) for d in mixed)]


def test_tracrs_vector_spaces_merge_equal_values(compiled_case):
    """Where an output holds 0 and 0.0 (two values here, one in tracr, whose value sets
    merge them), tracr's `project` cannot tell their directions apart; reading by label
    can. The benchmark test above reads such outputs by label for that reason."""
    _, _, bases, vectorspace_fns = _imports()
    (case,) = [case for case in CASES if case.name == "mixed_zero_types"]
    model = AssembledModel(compiled_case(case))
    assert _merged_by_tracr(model)
    residual = bases.VectorSpaceWithBasis(
        [bases.BasisDirection(*_label_value(label, {})) for label in model.residual_labels])
    projected = vectorspace_fns.project(
        residual, bases.VectorSpaceWithBasis(model.output_encoder.basis)).matrix
    assert not np.array_equal(projected, _unembed_by_label(model))


def test_tokens_equal_in_python_keep_their_own_ids():
    """1 and True are two tokens here (tracr's sets would merge them): two ids, two
    directions, and the model reads each as itself."""
    program = rasp.Map(lambda x: repr(x), rasp.tokens)
    model = compiling.compile_rasp_to_model(program, [1, True, 2], 3)
    ids = model.input_encoder.encode(["compiler_bos", 1, True, 2])
    assert len(set(ids)) == 4
    assert "tokens:1" in model.residual_labels and "tokens:True" in model.residual_labels
    for tokens in itertools.product([1, True, 2], repeat=3):
        assert model.apply(["compiler_bos", *tokens]).decoded[1:] == [repr(t) for t in tokens]
