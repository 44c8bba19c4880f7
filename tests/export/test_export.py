"""Export to TransformerLens: the same outputs, the same hooks, the same patches; safetensors
files that load without rasp_compiler; clear errors for what the export cannot promise."""

import importlib.metadata
import json
import random
import sys
import warnings

import importlib

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler import export
from rasp_compiler.model.forward import forward_numpy
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import (
    CompileWarning,
    InvalidInputError,
    LoadError,
    MissingDependencyError,
    SaveError,
    UnsafeAggregateError,
)
from rasp_compiler.lang.evaluator import evaluate
from rasp_compiler.program_files import load_program
from rasp_compiler.model.compiled import Unclean
from rasp_compiler.verify.report import values_match

from cases import CASES

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning"),
    pytest.mark.xdist_group("export"),  # one worker imports torch and TransformerLens
]

TOLERANCE = 1e-5


class _Imported:
    """A module imported when first used, not at collection: torch and TransformerLens
    take seconds to import, and every test process collects this file, while only the
    one running the "export" group needs them."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        if attribute.startswith("_") or attribute == "pytestmark":  # pytest's collection probes
            raise AttributeError(attribute)
        return getattr(importlib.import_module(self._name), attribute)


torch = _Imported("torch")
transformer_lens = _Imported("transformer_lens")
safetensors_torch = _Imported("safetensors.torch")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The models are tiny: on CI's two shared cores torch's worker threads cost more than
    they give (the case table runs 4x faster on one thread)."""
    torch.set_num_threads(1)


@pytest.fixture
def compiled(compiled_case):
    """Each case compiled once per test process (conftest.py), bidirectional or causal. A
    causal compile the compiler refuses as mixing (test_causal shows the refusals are right)
    is compiled with allow_unsafe_aggregates=True, as a user who accepts Unclean would."""

    def get(case, causal=False):
        try:
            return compiled_case(case, causal)
        except UnsafeAggregateError:
            return compiled_case(case, causal, allow_unsafe_aggregates=True)

    return get


@pytest.fixture(scope="module")
def sort_ties():
    spec = load_program("sort_ties")
    program = spec.make(spec.max_seq_len)
    return program, compile_program(program, spec.vocab, spec.max_seq_len)


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _assert_close(theirs, ours, what):
    """Within 1e-5, relative to the activation's largest finite magnitude where that
    exceeds 1; -inf (masked attention scores) exactly where ours has it."""
    ours = np.asarray(ours, np.float64)
    theirs = np.asarray(theirs, np.float64)
    assert theirs.shape == ours.shape, (what, theirs.shape, ours.shape)
    masked = np.isneginf(ours)
    assert np.array_equal(np.isneginf(theirs), masked), f"{what}: masked positions differ"
    if masked.all():
        return
    scale = max(1.0, float(np.abs(ours[~masked]).max()))
    worst = float(np.abs(theirs[~masked] - ours[~masked]).max())
    assert worst <= TOLERANCE * scale, f"{what}: off by {worst:.3g} (scale {scale:.3g})"


def _assert_padding_is_zero(model, name, theirs):
    """The padded parts of q, k, v, z and the MLP units are zero: padding changes nothing."""
    if not name.startswith("blocks."):
        return
    layer = model.shape.layers[int(name.split(".")[1])]
    hook = name.split(".", 2)[2]
    if hook in ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"):
        size = layer.key_size if hook in ("attn.hook_q", "attn.hook_k") else layer.value_size
        assert not theirs[:, :, layer.heads:].any() and not theirs[..., size:].any(), name
    if hook in ("mlp.hook_pre", "mlp.hook_post"):
        assert not theirs[..., layer.mlp_hidden:].any(), name


def _same_output(got, expected, numerical):
    """One decoded row against ours: as many positions, each the same value (numbers
    within verification's tolerance; a blend the same values blended)."""
    if len(got) != len(expected):
        return False
    if numerical:
        return all(values_match(g, e) for g, e in zip(got, expected))
    for g, e in zip(got, expected):
        if isinstance(e, Unclean):  # the blend's weights are floats: compare the values
            if not isinstance(g, Unclean) or {v for v, _ in g.weights} != {
                    v for v, _ in e.weights}:
                return False
        elif not values_match(g, e, categorical=True):
            return False
    return True


def test_rows_of_different_lengths_are_never_the_same_output():
    assert _same_output([1.0, 2.00001], [1.0, 2.0], numerical=True)
    assert not _same_output([1.0], [1.0, 2.0], numerical=True)  # zip alone would stop at 1
    assert not _same_output([1.0, 2.0, 3.0], [1.0, 2.0], numerical=True)
    assert not _same_output(["a"], ["a", "b"], numerical=False)
    assert not _same_output([1.0, 2.1], [1.0, 2.0], numerical=True)


# ---------------------------------------------------------------------------- every case


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_exported_model_has_our_outputs_and_hooks(case, causal, compiled):
    model = compiled(case, causal)
    hooked = model.to_hooked_transformer()
    readout = model.readouts[model.output]
    assert hooked.cfg.attention_dir == ("causal" if causal else "bidirectional")
    rng = random.Random(case.name)
    for length in sorted({1, model.max_seq_len}):  # the shortest and the longest
        batch = [[rng.choice(model.vocab) for _ in range(length)] for _ in range(3)]
        tokens = hooked.rasp.to_tokens(batch)
        with torch.no_grad():
            logits, theirs = hooked.run_with_cache(tokens)
        ids = _numpy(tokens)
        ours = {}
        final = forward_numpy(model.params, model.shape, ids, np.ones(ids.shape, bool), ours)
        for name, value in ours.items():
            activation = _numpy(theirs[name])
            _assert_close(export.unpadded(model, name, activation), value, f"{name}, n={length}")
            _assert_padding_is_zero(model, name, activation)
        if readout.numerical:
            expected_logits = final[..., list(readout.indices)] @ np.asarray(
                readout.coefficients, np.float64)
            _assert_close(_numpy(logits)[..., 0], expected_logits, "logits")
        else:
            _assert_close(_numpy(logits), final[..., list(readout.indices)], "logits")
        got = hooked.rasp.decode(logits)
        expected = model.run(batch, backend="numpy")
        assert len(got) == len(expected) == len(batch), (batch, got, expected)
        for g, e in zip(got, expected):
            assert _same_output(g, e, readout.numerical), (batch, got, expected)


def test_every_run_with_cache_hook_is_in_the_transformer_lens_cache():
    """The jitted runtime's cache, hook by hook, on a model with every kind of padding
    (layers of 5, 0 and 2 heads with different key sizes); our inputs are padded to a
    bucket length and PAD-masked, theirs are not: positions up to the input's agree."""
    model = compile_program(lib.make_shuffle_dyck(["()", "{}"]), list("(){}"), 6)
    assert [layer.heads for layer in model.shape.layers] == [5, 0, 2]
    hooked = model.to_hooked_transformer()
    batch = [list("({)}"), list("(){}")]  # one length: TransformerLens masks no PAD
    _, ours = model.run_with_cache(batch)
    with torch.no_grad():
        _, theirs = hooked.run_with_cache(hooked.rasp.to_tokens(batch))
    assert set(ours) <= set(theirs.keys())
    t = 1 + len(batch[0])
    for name, value in ours.items():
        value = np.asarray(value)
        attention = name.endswith(("hook_attn_scores", "hook_pattern"))  # [b, h, q, k]
        mine = value[:, :, :t, :t] if attention else value[:, :t]
        _assert_close(export.unpadded(model, name, _numpy(theirs[name])), mine, name)


# ---------------------------------------------------------------------------- weights and files


def test_weights_have_transformer_lens_names_shapes_and_no_scaling(sort_ties):
    _, model = sort_ties
    hooked = model.to_hooked_transformer()
    weights = export.transformer_lens_weights(model)
    parameters = dict(hooked.named_parameters())
    assert set(weights) == set(parameters)
    for name, value in weights.items():
        assert value.dtype == np.float32
        assert tuple(parameters[name].shape) == value.shape, name
        assert np.array_equal(_numpy(parameters[name]), value), name
        if ".b_" in name:
            assert not value.any(), name  # no biases
    config = hooked.cfg
    assert (config.use_attn_scale, config.normalization_type, config.act_fn) == (
        False, None, "relu")
    assert config.n_heads == max(layer.heads for layer in model.shape.layers)
    assert config.d_vocab == len(model.vocab) + 2 and config.n_ctx == model.max_seq_len + 1
    # Our query weights unchanged: nothing is folded in, since nothing divides the scores.
    w_q = np.asarray(model.params["layer_1/attn/query"]["w"])
    assert np.array_equal(weights["blocks.1.attn.W_Q"][0, :, : w_q.shape[1]], w_q)


def test_safetensors_load_into_a_fresh_hooked_transformer_from_file_and_config(sort_ties,
                                                                               tmp_path):
    program, model = sort_ties
    folder = model.save_safetensors(tmp_path / "export")
    # From here on only json, safetensors, torch and TransformerLens: no rasp_compiler.
    config = json.loads((folder / "config.json").read_text())
    assert config["transformer_lens_versions"] == ">=2,<4"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        fresh = transformer_lens.HookedTransformer(transformer_lens.HookedTransformerConfig(
            **config["transformer_lens_config"], device="cpu"))
    loaded = fresh.load_state_dict(safetensors_torch.load_file(folder / config["weights"]),
                                   strict=False)
    assert not loaded.unexpected_keys
    assert all(key.endswith((".IGNORE", ".mask")) for key in loaded.missing_keys)  # buffers
    encoding = config["encoding"]
    token_ids = {token: i for token, i in encoding["input_encoding"]}
    inputs = [[3, 1, 2, 1, 4], [2, 2, 1, 4, 4]]
    tokens = torch.tensor([[token_ids[encoding["bos"]]] + [token_ids[t] for t in xs]
                           for xs in inputs])
    with torch.no_grad():
        logits = fresh(tokens)
        exported = model.to_hooked_transformer()(tokens)
    assert torch.equal(logits, exported)
    values = encoding["output_decoding"]
    decoded = [[values[i] for i in row[1:]] for row in logits.argmax(-1).tolist()]
    assert decoded == [evaluate(program, xs) for xs in inputs] == model.run(inputs)
    assert encoding["residual_labels"] == model.residual_labels
    # The same folder read back through this package.
    read_config, read_encoding = export.read_export_config(folder)
    assert read_config == config["transformer_lens_config"]
    assert read_encoding == model.to_hooked_transformer().rasp


def test_export_destination_is_checked(sort_ties, tmp_path):
    _, model = sort_ties
    (tmp_path / "file").write_text("x")
    with pytest.raises(SaveError, match="it is a file; name a folder"):
        model.save_safetensors(tmp_path / "file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(SaveError, match=r"holds other files \(notes.txt\) and no export"):
        model.save_safetensors(tmp_path / "busy")
    model.save_safetensors(tmp_path / "again")
    model.save_safetensors(tmp_path / "again")  # an earlier export is replaced
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [
        "config.json", "model.safetensors"]


# ---------------------------------------------------------------------------- patching


def _fetch_pattern_hook(model) -> str:
    (head,) = [h for layer in model.info.layers for h in layer.heads if h.selector == "fetch"]
    return f"blocks.{head.layer}.attn.hook_pattern", head.index


def test_a_transformer_lens_patch_changes_the_output_as_in_our_runtime(sort_ties):
    """Swap what two output positions fetch (rows of the `fetch` head's pattern): the
    program predicts the sorted output with those two positions swapped."""
    program, model = sort_ties
    hooked = model.to_hooked_transformer()
    name, head = _fetch_pattern_hook(model)
    xs = [3, 1, 2, 1]
    sorted_xs = evaluate(program, xs)
    first, last = 1, len(xs)  # query positions (BOS is 0)

    def swap_rows(pattern):
        patched = pattern.clone() if hasattr(pattern, "clone") else pattern.copy()
        patched[:, head, [first, last]] = pattern[:, head, [last, first]]
        return patched

    tokens = hooked.rasp.to_tokens([xs])
    with torch.no_grad():
        theirs = hooked.rasp.decode(hooked.run_with_hooks(
            tokens, fwd_hooks=[(name, lambda pattern, hook: swap_rows(pattern))]))[0]
    (ours,) = model.run_with_hooks([xs], [(name, swap_rows)])
    predicted = list(sorted_xs)
    predicted[0], predicted[-1] = sorted_xs[-1], sorted_xs[0]
    assert theirs == ours == predicted == [3, 1, 2, 1]
    assert sorted_xs == [1, 1, 2, 3]


def test_a_residual_patch_acts_like_the_patched_input(sort_ties):
    """Overwrite position 2's token embedding with token 4's: the output is the program's
    on the input with a 4 there, in TransformerLens and in our runtime."""
    program, model = sort_ties
    hooked = model.to_hooked_transformer()
    xs = [3, 1, 2, 1]
    four = np.asarray(model.params["token_embed"]["embeddings"])[model.vocab.index(4)]

    def put_four(embed):
        patched = embed.clone() if hasattr(embed, "clone") else embed.copy()
        patched[:, 2] = torch.tensor(four) if hasattr(embed, "clone") else four
        return patched

    tokens = hooked.rasp.to_tokens([xs])
    with torch.no_grad():
        theirs = hooked.rasp.decode(hooked.run_with_hooks(
            tokens, fwd_hooks=[("hook_embed", lambda embed, hook: put_four(embed))]))[0]
    (ours,) = model.run_with_hooks([xs], [("hook_embed", put_four)])
    assert theirs == ours == evaluate(program, [3, 4, 2, 1]) == [1, 2, 3, 4]


def test_our_runtime_refuses_unknown_hooks_and_misshapen_patches(sort_ties):
    _, model = sort_ties
    ids = np.zeros((1, 3), np.int64)
    mask = np.ones((1, 3), bool)
    with pytest.raises(InvalidInputError, match="no hook named 'blocks.9.hook_resid_pre'"):
        forward_numpy(model.params, model.shape, ids, mask, hooks={
            "blocks.9.hook_resid_pre": lambda x: x})
    with pytest.raises(InvalidInputError, match=r"returned shape \(1, 3\); the activation"):
        forward_numpy(model.params, model.shape, ids, mask, hooks={
            "hook_embed": lambda x: x[..., 0]})


# ---------------------------------------------------------------------------- what logits mean


def test_unclean_aggregates_are_explained_and_decoded_as_unclean():
    program = rasp.Aggregate(
        rasp.Select(rasp.Map(lambda i: i // 2, rasp.indices),
                    rasp.Map(lambda i: i // 2, rasp.indices), rasp.Comparison.EQ),
        rasp.tokens).named("pairs")
    with pytest.warns(CompileWarning):
        model = compile_program(program, ["a", "b"], 4, allow_unsafe_aggregates=True)
    with pytest.warns(CompileWarning, match="pairs may select positions holding different "
                                            "values .* encoding.decode"):
        hooked = model.to_hooked_transformer()
    assert hooked.rasp.unclean_aggregates == ("pairs",)
    assert "Caution" in hooked.rasp.logits
    with torch.no_grad():
        logits = hooked(hooked.rasp.to_tokens([["a", "b", "a", "a"]]))
    (decoded,) = hooked.rasp.decode(logits)
    (ours,) = model.run([["a", "b", "a", "a"]])
    assert isinstance(decoded[0], Unclean) and isinstance(ours[0], Unclean)
    assert {v for v, _ in decoded[0].weights} == {"a", "b"}
    assert decoded[2:] == ours[2:] == ["a", "a"]


def test_numerical_output_is_one_number_not_a_logit():
    program = lib.make_frac_prevs(rasp.tokens == "x")
    model = compile_program(program, ["x", "y"], 5)
    hooked = model.to_hooked_transformer()
    assert hooked.cfg.d_vocab_out == 1 and hooked.rasp.numerical_output
    assert "not a logit" in hooked.rasp.logits and hooked.rasp.output_decoding == ()
    inputs = [["x", "y", "x", "x"], ["y", "y", "x", "y"]]
    with torch.no_grad():
        logits = hooked(hooked.rasp.to_tokens(inputs))
    decoded = hooked.rasp.decode(logits)
    assert len(decoded) == len(inputs)
    for got, xs in zip(decoded, inputs):
        np.testing.assert_allclose(got, evaluate(program, xs), atol=1e-5)  # shapes too
    np.testing.assert_allclose(_numpy(logits)[1, 1:, 0], [0, 0, 1 / 3, 1 / 4], atol=1e-5)


def test_encoding_refuses_what_the_exported_model_cannot_run(sort_ties):
    _, model = sort_ties
    encoding = export.export_encoding(model)
    with pytest.raises(InvalidInputError, match="input 1 has 2 tokens and input 0 has 3: the "
                                                "exported model runs batches of one length"):
        encoding.encode([[1, 2, 3], [1, 2]])
    with pytest.raises(InvalidInputError, match="input 0, position 1: token 9 is not in the vocab"):
        encoding.encode([[1, 9]])
    with pytest.raises(InvalidInputError, match="input 0 has 7 tokens; this model takes 1 to 6"):
        encoding.encode([[1] * 7])
    with pytest.raises(InvalidInputError, match="expected logits"):
        encoding.decode(np.zeros((1, 3, 7)))
    assert encoding.encode([[4, 1]]).tolist() == [[encoding.bos_id, 3, 0]]
    assert encoding.encode(np.array([[4, 1]])).tolist() == [[encoding.bos_id, 3, 0]]
    assert (encoding.bos_id, encoding.pad_id) == (4, 5)


def test_a_saved_config_is_read_back_or_refused_clearly(sort_ties, tmp_path):
    _, model = sort_ties
    folder = model.save_safetensors(tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    config["encoding"]["input_encoding"][0] = "oops"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadError, match=r"encoding.input_encoding\[0\]: expected a list"):
        export.read_export_config(folder)
    (folder / "config.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(LoadError, match="is not a rasp_compiler export"):
        export.read_export_config(folder)


def test_tf32_on_a_gpu_is_caught_and_off_by_default(monkeypatch):
    """torch's default float32 matmul precision is "highest" (no TF32), on CUDA too; a
    changed setting would break attention logits, so exporting to CUDA then warns."""
    assert torch.get_float32_matmul_precision() == "highest"
    assert export.tf32_problem(torch, "cuda") is None
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert "set_float32_matmul_precision('highest')" in export.tf32_problem(torch, "cuda")
    assert export.tf32_problem(torch, "cpu") is None


# ---------------------------------------------------------------------------- dependencies


@pytest.mark.parametrize("version, expected", [
    ("4.0.0", r"TransformerLens 4.0.0 is installed, but exporting needs TransformerLens "
              r">=2,<4, the versions with HookedTransformer \(TransformerLens 4 removed"),
    ("1.19.0", r"TransformerLens 1.19.0 is installed, but exporting needs TransformerLens >=2,<4"),
])
def test_an_unsupported_transformer_lens_is_a_clear_error(sort_ties, monkeypatch, version,
                                                          expected):
    _, model = sort_ties
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: version if name == "transformer-lens" else real(name))
    with pytest.raises(MissingDependencyError, match=expected) as error:
        model.to_hooked_transformer()
    assert "pip install 'rasp-compiler[export]'" in str(error.value)
    assert isinstance(error.value, ImportError)
    assert export.transformer_lens_version_problem("3.9.0") is None
    assert export.transformer_lens_version_problem("2.0.0") is None


def test_missing_export_dependencies_name_the_extra(sort_ties, monkeypatch, tmp_path):
    _, model = sort_ties

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(MissingDependencyError, match=r"transformer-lens package \(>=2,<4\), "
                                                     r"which is not installed; install the "
                                                     r"export extra: pip install "
                                                     r"'rasp-compiler\[export\]'"):
        model.to_hooked_transformer()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"needs the torch package"):
        model.to_hooked_transformer()
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(MissingDependencyError, match=r"saving safetensors needs the "
                                                     r"safetensors.numpy package"):
        model.save_safetensors(tmp_path / "export")
