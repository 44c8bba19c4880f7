"""Compressed models: the exact model at full width, a measured accuracy at a modest width,
determinism, the run/cache/accuracy surface, save/load, and clear errors for bad arguments."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from rasp_compiler import compile_program, load_program
from rasp_compiler.cli import main
from rasp_compiler.superposition.compressed_files import COMPRESSION_CONFIG_FILE as CONFIG_FILE
from rasp_compiler.superposition.compressed_forward import read_hooks
from rasp_compiler.superposition.compressed_model import CompressedModel
from rasp_compiler.superposition.compression import compress
from rasp_compiler.errors import InvalidInputError, InvalidProgramError, LoadError, SaveError
from rasp_compiler.verify.inputs import all_inputs

from picture_checks import assert_picture

# One worker: its fixtures (a trained compression) and the jitted training steps are
# made once, not once per worker.
pytestmark = pytest.mark.xdist_group("compression")

MAX_SEQ_LEN = 4
# shift_by (the tokens two places on, None before them) at max_seq_len 4 has 12 features; to
# d=7 it was right at every position of every input after 100 steps with each of seeds 0..3
# (measured), and stopped there: the test asserts 95% within 400 steps.
SMALL_D, SMALL_STEPS, SMALL_ACCURACY = 7, 400, 0.95
WIDTH = 12


@pytest.fixture(scope="module")
def shift():
    """One head and no MLP: the fastest model to compile and train, and None outputs."""
    spec = load_program("shift_by")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile_program(spec.make(), spec.vocab, MAX_SEQ_LEN)


@pytest.fixture(scope="module")
def exact(shift):
    """Full width, W the identity: must be the compiled model itself."""
    return compress(shift, shift.shape.d_model, init="identity")


@pytest.fixture(scope="module")
def small(shift):
    """Linear reads (not the default), so the tests below can check the read is h @ W.T."""
    return compress(shift, SMALL_D, seed=0, steps=SMALL_STEPS, nonlinear=False)


INPUTS = [["a", "b", "a"], ["c"], ["a", "c", "b", "c"], ["b", "a"]]


def test_full_width_identity_is_the_exact_model(shift, exact):
    assert exact.info.steps == 0 and exact.info.stopped == "target"
    np.testing.assert_array_equal(exact.W, np.eye(shift.shape.d_model))
    every = [list(xs) for xs in all_inputs(shift.vocab, MAX_SEQ_LEN)]
    assert exact.run(every) == shift.run(every)
    accuracy = exact.accuracy()
    assert accuracy.position_accuracy == accuracy.sequence_accuracy == 1.0
    assert accuracy.inputs_checked == len(every)
    _, compressed_cache = exact.run_with_cache(INPUTS)
    _, cache = shift.run_with_cache(INPUTS)
    for name, value in cache.items():
        np.testing.assert_allclose(compressed_cache[name], value, atol=1e-5, err_msg=name)


def test_small_program_reaches_the_measured_accuracy(shift, small):
    accuracy = small.accuracy()
    assert accuracy.position_accuracy >= SMALL_ACCURACY, accuracy
    assert small.info.stopped == "target" and small.info.agreement == 1.0
    assert small.info.reached(1.0) == small.info.history[-1][:2]
    assert 0 <= accuracy.sequence_accuracy <= accuracy.position_accuracy
    assert small.W.shape == (shift.shape.d_model, SMALL_D)
    assert small.info.steps <= SMALL_STEPS and small.info.history[0][0] == 0
    assert f"of {accuracy.positions_checked:,} positions" in str(accuracy)


def test_same_seed_same_model_other_seed_another(shift, small):
    again = compress(shift, SMALL_D, seed=0, steps=SMALL_STEPS, nonlinear=False)
    np.testing.assert_array_equal(again.W, small.W)
    # same shapes: no new compilation
    other = compress(shift, SMALL_D, seed=1, steps=100, nonlinear=False)
    assert not np.allclose(other.W, small.W)


def test_a_stalled_loss_stops_early_and_progress_is_shown(shift, capsys):
    """A learning rate too small to move the loss: after `patience` evaluations without a 1%
    improvement training stops ("plateau"), well inside the budget, keeping the best W; the
    progress (a line in a log) shows the step, loss and agreement."""
    stalled = compress(shift, SMALL_D, seed=0, steps=SMALL_STEPS, learning_rate=1e-9,
                       eval_every=5, patience=2, progress=True)
    assert stalled.info.stopped == "plateau"
    assert stalled.info.steps == 10 and [h[0] for h in stalled.info.history] == [0, 5, 10]
    assert stalled.info.agreement == max(h[3] for h in stalled.info.history) < 1.0
    err = capsys.readouterr().err
    assert "compress shift_by_2 to d=7: 10/400 steps (2%), loss" in err  # the last line
    assert "agreement" in err and err.endswith("\n") and "\r" not in err
    quiet = compress(shift, SMALL_D, seed=0, steps=10, learning_rate=1e-9, eval_every=5)
    assert capsys.readouterr().err == "" and quiet.info.stopped == "budget"


def test_training_on_random_inputs_when_there_are_too_many_to_list(shift, monkeypatch):
    """Past EXHAUSTIVE_LIMIT inputs, each step draws fresh random inputs on the device (their
    targets computed by the exact model in the same step), and the evaluation set is a fixed
    random sample: inputs of 1..max_seq_len tokens, BOS first, PAD after the tokens."""
    import jax

    from rasp_compiler.superposition import compression
    from rasp_compiler.superposition.objective import random_batch

    ids, mask = (np.asarray(a) for a in random_batch(
        jax.random.PRNGKey(0), len(shift.vocab), MAX_SEQ_LEN, 256))
    bos, pad = len(shift.vocab), len(shift.vocab) + 1
    lengths = mask.sum(axis=1) - 1
    assert (ids[:, 0] == bos).all() and set(lengths) == set(range(1, MAX_SEQ_LEN + 1))
    assert ((ids[:, 1:] < bos) == mask[:, 1:]).all() and (ids[~mask] == pad).all()
    monkeypatch.setattr(compression, "EXHAUSTIVE_LIMIT", 10)
    # As many evaluation inputs as there are inputs in all: the evaluation reuses the
    # exhaustive runs' compiled shapes, and only the random-batch step compiles anew.
    every = len(list(all_inputs(shift.vocab, MAX_SEQ_LEN)))
    monkeypatch.setattr(compression, "EVAL_SAMPLES", every)
    sampled = compress(shift, SMALL_D, seed=0, steps=SMALL_STEPS)
    assert not sampled.info.exhaustive and sampled.info.training_inputs == every
    assert sampled.info.agreement == 1.0 and sampled.info.stopped == "target"
    assert sampled.accuracy().position_accuracy >= SMALL_ACCURACY


def test_cache_has_the_compiled_hooks_with_a_compressed_residual(shift, small):
    outputs, cache = small.run_with_cache(INPUTS)
    assert outputs == small.run(INPUTS)
    _, base_cache = shift.run_with_cache(INPUTS)
    assert set(base_cache) <= set(cache)
    assert set(cache) - set(base_cache) == {"blocks.0.hook_attn_in", "blocks.0.hook_mlp_in",
                                            "hook_readout_in"}
    # The MLP is empty: its read counts for nothing and gets no decoder.
    assert read_hooks(shift.shape) == ["blocks.0.hook_attn_in", "hook_readout_in"]
    for name in small.residual_hooks + ["hook_embed", "blocks.0.hook_attn_out"]:
        assert cache[name].shape[-1] == SMALL_D, name
    np.testing.assert_allclose(cache["blocks.0.hook_resid_mid"],
                               cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"],
                               atol=1e-5)
    np.testing.assert_allclose(cache["blocks.0.hook_attn_in"],
                               cache["blocks.0.hook_resid_pre"] @ small.W.T, atol=1e-5)


def test_nonlinear_reads_add_a_relu_decoder_to_the_linear_read(shift, small):
    """x = h @ W.T + relu(h @ w1 + b1) @ w2 at every read; with w2 = 0 (how training
    starts) the model is the linear one."""
    rng = np.random.default_rng(0)
    hidden = 5

    def readers(scale):
        return {name: {"w1": rng.normal(size=(SMALL_D, hidden)).astype(np.float32),
                       "b1": rng.normal(size=hidden).astype(np.float32),
                       "w2": scale * rng.normal(size=(hidden, WIDTH)).astype(np.float32)}
                for name in read_hooks(shift.shape)}

    start = CompressedModel(shift, small.W, readers(0.0), small.info)
    assert start.run(INPUTS) == small.run(INPUTS)
    trained = readers(0.3)
    model = CompressedModel(shift, small.W, trained, small.info)
    _, cache = model.run_with_cache(INPUTS)
    for name, resid in (("blocks.0.hook_attn_in", "blocks.0.hook_resid_pre"),
                        ("hook_readout_in", "blocks.0.hook_resid_post")):
        h, r = cache[resid], trained[name]
        expected = h @ small.W.T + np.maximum(h @ r["w1"] + r["b1"], 0) @ r["w2"]
        np.testing.assert_allclose(cache[name], expected, atol=1e-4, err_msg=name)


def test_feature_directions_are_rows_of_W_with_the_true_activations(shift, small):
    truth = small.feature_directions()
    assert truth.labels == tuple(shift.residual_labels)
    np.testing.assert_array_equal(truth.directions, small.W)
    np.testing.assert_allclose(truth.norms, np.linalg.norm(small.W, axis=1))
    _, cache = shift.run_with_cache(INPUTS)
    np.testing.assert_array_equal(truth.activations(INPUTS, "blocks.0.hook_resid_mid"),
                                  cache["blocks.0.hook_resid_mid"])
    assert set(truth.activations(INPUTS)) == set(small.residual_hooks)
    np.testing.assert_allclose(small.interference(), small.W @ small.W.T)


def test_a_numerical_output_at_full_width_is_exact():
    """frac_prevs reads a number: decoded from its linear form, compared within tolerance."""
    spec = load_program("frac_prevs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = compile_program(spec.make(), spec.vocab, 3)
    exact = compress(model, model.shape.d_model, init="identity")
    assert exact.info.stopped == "target" and exact.info.output_loss < 1e-8
    accuracy = exact.accuracy()
    assert accuracy.position_accuracy == 1.0 and accuracy.inputs_checked == 39
    (row,) = exact.run([["a", "x", "x"]])
    assert row == pytest.approx([0.0, 0.5, 2 / 3], abs=1e-5)


def test_pca_init_starts_from_the_top_principal_directions(shift):
    model = compress(shift, SMALL_D, init="pca", steps=0)
    np.testing.assert_allclose(model.W.T @ model.W, np.eye(SMALL_D), atol=1e-5)
    assert model.info.init == "pca" and model.info.stopped == "budget"


def test_save_and_load_round_trip(shift, small, tmp_path):
    folder = small.save(tmp_path / "small")
    assert sorted(p.name for p in folder.iterdir()) == ["base", "compression.json",
                                                        "compression.npz"]
    loaded = CompressedModel.load(folder)
    np.testing.assert_array_equal(loaded.W, small.W)
    assert loaded.info == small.info and loaded.readers is None
    assert loaded.run(INPUTS) == small.run(INPUTS)
    with pytest.raises(InvalidProgramError, match="pass program="):
        loaded.accuracy()
    program = load_program("shift_by").make()
    assert loaded.accuracy(program=program) == small.accuracy()
    small.save(folder)  # an earlier save is replaced


def test_load_refuses_edited_and_missing_files(small, tmp_path):
    folder = small.save(tmp_path / "m")
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["info"]["steps"] += 1
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(LoadError, match="checksum mismatch"):
        CompressedModel.load(folder)
    (folder / "compression.npz").unlink()
    with pytest.raises(LoadError, match="compression.npz missing"):
        CompressedModel.load(folder)


def test_load_holds_compression_npz_to_its_config_before_reading_it(small, tmp_path):
    """Names and shapes follow from compression.json and the base model; an extra or
    oversized entry is refused from the zip directory, before any data is read."""
    import time
    import tracemalloc
    import zipfile

    folder = small.save(tmp_path / "m")
    good = (folder / "compression.npz").read_bytes()
    with zipfile.ZipFile(folder / "compression.npz", "a", zipfile.ZIP_DEFLATED,
                         compresslevel=1) as archive:
        with archive.open("zzz.npy", "w", force_zip64=True) as entry:
            for _ in range(25):  # 400 MB of zeros, 1.8 MB on disk
                entry.write(bytes(1 << 24))
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(LoadError, match=r"compression.npz: unexpected parameters zzz"):
        CompressedModel.load(folder)
    elapsed, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 2 and peak < 50e6, (elapsed, peak)
    (folder / "compression.npz").write_bytes(good)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["info"]["d"] = 10**9
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(LoadError, match=r"info.d is 1000000000 and info.d_model 12; the base "
                                        r"model's residual has 12 dims"):
        CompressedModel.load(folder)


def test_save_refuses_a_file_or_a_foreign_folder(small, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SaveError, match="it is a file"):
        small.save(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(SaveError, match="holds other files"):
        small.save(tmp_path / "other")


@pytest.mark.parametrize("d, message", [
    (0, r"d=0: the compressed residual must have 1\.\.12 dimensions"),
    (13, r"d=13: the compressed residual must have 1\.\.12"),
    (2.5, "d must be a whole number"),
    (True, "d must be a whole number"),
])
def test_bad_widths_are_refused(shift, d, message):
    with pytest.raises(InvalidInputError, match=message):
        compress(shift, d)


@pytest.mark.parametrize("options, message", [
    ({"init": "identity"}, "init='identity' needs d = d_model = 12"),
    ({"init": "zeros"}, "init must be one of random, pca, identity"),
    ({"weighting": "gain"}, "weighting must be one of uniform, use, got 'gain'"),
    ({"steps": -1}, "steps must be a whole number >= 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"output_weight": 0, "reconstruction_weight": 0}, "nothing to train"),
    ({"target_agreement": 0}, r"target_agreement must be in \(0, 1\]"),
    # JAX keys keep 32 bits: 2**70 raised OverflowError, NaN a raw TypeError, and 2**32
    # silently trained seed 0's model.
    ({"seed": 2**70}, "seed must be a whole number from 0 to 4,294,967,295, got "
                      "1,180,591,620,717,411,303,424"),
    ({"seed": 2**32}, "a larger one would repeat a smaller one's model"),
    ({"seed": float("nan")}, r"seed must be a whole number >= 0, got nan \(float\)"),
    ({"seed": -1}, "a negative seed would repeat"),
    ({"seed": True}, "seed must be a whole number"),
    ({"hidden": 2**40, "nonlinear": True}, "hidden=1,099,511,627,776 gives the 2 decoders"),
    ({"batch_size": 2**40}, r"batch_size=1,099,511,627,776 would hold .* of reads per step"),
])
def test_bad_options_are_refused(shift, options, message):
    with pytest.raises(InvalidInputError, match=message):
        compress(shift, 5, **options)


def test_compress_refuses_what_is_not_a_compiled_model():
    with pytest.raises(InvalidInputError, match="needs a CompiledModel"):
        compress("hist", 3)


def test_cli_compresses_nonlinear_saves_and_draws(shift, tmp_path, capsys):
    """Also the nonlinear variant: a ReLU decoder per read, saved and loaded with W."""
    folder, picture, page = tmp_path / "saved", tmp_path / "w.png", tmp_path / "page.html"
    code = main(["compress", "shift_by", "--max-seq-len", str(MAX_SEQ_LEN), "--dim",
                 str(SMALL_D), "--steps", "20", "--nonlinear", "-q", "-o", str(folder),
                 "--picture", str(picture), "--html", str(page)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "residual 12 -> 7, nonlinear reads (hidden 14)" in out
    assert "accuracy against the evaluator" in out
    assert_picture(picture)
    loaded = CompressedModel.load(folder)
    assert set(loaded.readers) == set(read_hooks(shift.shape))
    assert loaded.readers["hook_readout_in"]["w1"].shape == (SMALL_D, 2 * SMALL_D)
    assert loaded.info.nonlinear and loaded.info.steps == 20
    # The decoders start as zero (the linear model) and training moved them.
    assert np.abs(loaded.readers["hook_readout_in"]["w2"]).max() > 0
    # The explorer's page: the interference matrix, and the examples run compressed.
    text = page.read_text()
    assert '"interference":[[' in text and '"exact_output":[' in text
    assert "nonlinear (a ReLU decoder of width 14 per read)" in text


def test_cli_refuses_a_width_over_d_model(capsys):
    assert main(["compress", "shift_by", "--max-seq-len", "3", "--dim", "99", "-q"]) == 2
    assert "d=99: the compressed residual must have 1..11 dimensions" in capsys.readouterr().err


def test_cli_compress_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "--help"])
    assert exit_info.value.code == 0
    assert "--dim D" in capsys.readouterr().out


@pytest.fixture(scope="module")
def histogram4():
    spec = load_program("histogram")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile_program(spec.make(4), spec.vocab, 4)


def test_use_weights_follow_the_frozen_weights_gain(histogram4):
    """The MLP reads hist.attn (a fraction) with a gain in the hundreds: its reconstruction
    weight there is 1 + that row's squared norm; a feature no weight reads keeps weight 1,
    and "uniform" is 1 everywhere."""
    from rasp_compiler.superposition.objective import feature_weights

    model = histogram4
    labels = model.residual_labels
    weights = feature_weights(model.params, model.shape, "use")
    assert weights.shape == (len(read_hooks(model.shape)), model.shape.d_model)
    mlp = read_hooks(model.shape).index("blocks.0.hook_mlp_in")
    row = np.asarray(model.params["layer_0/mlp/linear_1"]["w"])[labels.index("hist.attn")]
    assert weights[mlp, labels.index("hist.attn")] == pytest.approx(1 + row @ row, rel=1e-5)
    assert weights[mlp, labels.index("hist.attn")] > 1000
    assert (weights[-1] == 1).all()  # the readout: the output loss weighs it already
    attention = read_hooks(model.shape).index("blocks.0.hook_attn_in")
    assert all(weights[attention, i] == 1 for i, label in enumerate(labels)
               if label.startswith("hist"))
    assert (feature_weights(model.params, model.shape, "uniform") == 1).all()


def test_the_default_recipe_keeps_the_program_at_half_width(histogram4):
    """histogram at max_seq_len 4 (d_model 11) to d = 5: measured, the defaults reach every
    position of every input with seeds 0, 1 and 2 (stopping at the target after 2,600,
    4,400 and 6,800 steps; seed 3: 99.1% of positions, 99.2% of inputs), where the former
    defaults (linear reads, uniform weights, 3,000 steps at learning rate 0.01, output
    weight 1) reached 78% of positions and 75% of inputs. The test asserts the issue's
    targets: 99% and 95%."""
    half = histogram4.shape.d_model // 2
    compressed = compress(histogram4, half, seed=0)
    accuracy = compressed.accuracy()  # against the evaluator, every input of 1..4 tokens
    assert accuracy.position_accuracy >= 0.99 and accuracy.sequence_accuracy >= 0.95, accuracy
    assert compressed.info.nonlinear and compressed.info.weighting == "use"
    np.testing.assert_array_equal(compressed.feature_directions().directions, compressed.W)


def test_a_save_from_before_the_weighting_option_loads_as_uniform(small, tmp_path):
    """Saves written before `weighting` existed lack info.weighting; they were trained with
    every feature weighted alike, so they load as "uniform"."""
    from rasp_compiler.superposition.compressed_files import ARRAYS_FILE, _checksum

    folder = small.save(tmp_path / "old")
    data = json.loads((folder / CONFIG_FILE).read_text())
    assert data["info"]["weighting"] == "use"
    del data["info"]["weighting"], data["checksum"]
    with np.load(folder / ARRAYS_FILE) as arrays:
        data["checksum"] = _checksum(data, dict(arrays))
    (folder / CONFIG_FILE).write_text(json.dumps(data))
    loaded = CompressedModel.load(folder)
    assert loaded.info.weighting == "uniform"
    np.testing.assert_array_equal(loaded.W, small.W)


def test_cli_reads_are_nonlinear_by_default_and_linear_on_request(shift, capsys):
    """The command line trains compress's own recipe (nonlinear reads); --linear asks for
    the simplest superposed model."""
    for flag, says in (([], "nonlinear reads"), (["--linear"], "-> 7, linear,")):
        code = main(["compress", "shift_by", "--max-seq-len", str(MAX_SEQ_LEN), "--dim",
                     str(SMALL_D), "--steps", "20", "-q", *flag])
        out = capsys.readouterr().out
        assert code == 0, out
        assert says in out, out
