"""The scorer against ground truth: the truth scores 1, random directions score what theory
says, a permuted and rescaled copy is still recovered; samples, sweeps and pictures of a
compressed model."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from rasp_compiler import compile_program, load_program
from rasp_compiler.superposition.compression import compress
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.superposition.scoring import ResidualSample, chance_max_cosine, residual_sample, score_dictionary
from rasp_compiler.superposition.sweep import feature_norms_picture, interference_picture, sweep, sweep_picture

from picture_checks import assert_picture

# One worker: its fixtures (a trained compression) and the jitted training steps are
# made once, not once per worker.
pytestmark = pytest.mark.xdist_group("compression")

RNG = np.random.default_rng(7)
TRUE = RNG.normal(size=(30, 12))  # 30 features squeezed into 12 dimensions


def test_the_true_directions_score_one():
    score = score_dictionary(TRUE, TRUE)
    assert score.mean_max_cosine == pytest.approx(1.0)
    assert score.recovered == 1.0 and len(score.features) == 30
    assert [f.latent for f in score.features] == list(range(30))
    assert score.duplicate_latents == 0


def test_a_permuted_rescaled_copy_is_still_recovered():
    order = RNG.permutation(30)
    scales = RNG.choice([-3.0, -0.5, 0.2, 4.0], size=(30, 1))
    score = score_dictionary(scales * TRUE[order], TRUE)
    assert score.mean_max_cosine == pytest.approx(1.0) and score.recovered == 1.0
    assert [f.latent for f in score.features] == list(np.argsort(order))
    # With signs compared, the negatively scaled latents no longer match their features.
    signed = score_dictionary(scales * TRUE[order], TRUE, signed=True)
    assert signed.recovered == pytest.approx(np.mean(scales > 0))


def test_duplicated_latents_are_counted():
    """A latent within 0.9 cosine of an earlier one is a duplicate: a rescaled copy, a
    slightly bent one, and (unless signs are compared) a negated one."""
    bent = TRUE[1] + 0.1 * np.linalg.norm(TRUE[1]) * TRUE[2] / np.linalg.norm(TRUE[2])
    dictionary = np.vstack([TRUE[:5], 3 * TRUE[0], bent, -TRUE[3]])
    score = score_dictionary(dictionary, TRUE[:5])
    assert score.duplicate_latents == 3 and score.recovered == 1.0
    assert score_dictionary(dictionary, TRUE[:5], signed=True).duplicate_latents == 2
    assert score_dictionary(TRUE[:5], TRUE[:5]).duplicate_latents == 0


@pytest.mark.parametrize("signed", [False, True])
def test_random_directions_score_what_theory_says(signed):
    """The mean of many random dictionaries' scores against the exact expectation (density
    of the angle to a random direction, sin^(d-2)), within five standard errors."""
    m, draws = 40, 300
    scores = [score_dictionary(RNG.normal(size=(m, 12)), TRUE, signed=signed).mean_max_cosine
              for _ in range(draws)]
    expected = chance_max_cosine(12, m, signed=signed)
    assert abs(np.mean(scores) - expected) < 5 * np.std(scores) / math.sqrt(draws)
    assert score_dictionary(RNG.normal(size=(m, 12)), TRUE).chance == pytest.approx(
        chance_max_cosine(12, m))


def test_chance_has_the_closed_forms():
    assert chance_max_cosine(2, 1) == pytest.approx(2 / math.pi, abs=1e-6)  # E|cos| on a circle
    assert chance_max_cosine(3, 1) == pytest.approx(0.5, abs=1e-6)  # |cos| uniform on a sphere
    assert chance_max_cosine(3, 1, signed=True) == pytest.approx(0.0, abs=1e-6)
    assert chance_max_cosine(1, 3) == 1.0
    assert chance_max_cosine(12, 400) > chance_max_cosine(12, 40)


def test_activation_metrics_from_codes():
    """Codes that are the true activations (latents in another order, one never firing)
    give precision and recall 1, an L0 of the active count, one dead latent."""
    labels = ("x", "y", "z")
    directions = np.eye(3)
    values = (RNG.random((200, 3)) < 0.3).astype(np.float32)
    sample = ResidualSample("h", values.copy(), values, labels, tuple((i, 1) for i in range(200)))
    dictionary = np.vstack([directions[[2, 0, 1]], [[1.0, 1.0, 0.0]]])
    codes = np.hstack([values[:, [2, 0, 1]], np.zeros((200, 1))])
    score = score_dictionary(dictionary, directions, sample, codes=codes,
                             reconstruction=codes @ dictionary, labels=labels)
    assert [f.latent for f in score.features] == [1, 2, 0]
    assert score.precision == score.recall == score.recovered_by_firing == 1.0
    assert [f.firing_latent for f in score.features] == [1, 2, 0]
    assert score.dead_latents == 1 and score.l0 == pytest.approx(values.sum(1).mean())
    assert score.reconstruction_error == pytest.approx(0.0, abs=1e-12)
    assert "not recovered" not in score.table()


@pytest.mark.parametrize("call, message", [
    (lambda: score_dictionary(np.ones((3, 5)), TRUE), "have 5 dimensions, the true ones 12"),
    (lambda: score_dictionary([[np.nan] * 12], TRUE), "NaN"),
    (lambda: score_dictionary(np.ones(12), TRUE), "2-D array"),
    (lambda: score_dictionary(TRUE, TRUE, labels=["a"]), "1 labels for 30 true directions"),
    (lambda: score_dictionary(TRUE, TRUE, features=["nope"]), "unknown features"),
    (lambda: score_dictionary(TRUE, TRUE, threshold=0), "threshold must be in"),
    (lambda: score_dictionary(TRUE, TRUE, codes=np.ones((2, 30))), "pass the sample too"),
])
def test_bad_scorer_arguments_are_refused(call, message):
    with pytest.raises(InvalidInputError, match=message):
        call()


# ---------------------------------------------------------------------- with a compressed model


@pytest.fixture(scope="module")
def exact():
    """hist at max_seq_len 4, compressed to its full width from the identity: W = I."""
    spec = load_program("histogram")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = compile_program(spec.make(), spec.vocab, 4)
    return compress(model, model.shape.d_model, init="identity")


def test_the_sample_pairs_the_residual_with_the_true_features(exact):
    sample = residual_sample(exact, "blocks.0.hook_resid_post")
    assert len(sample) == sum(n * 3 ** n for n in range(1, 5))  # every position of every input
    np.testing.assert_allclose(sample.compressed, sample.true @ exact.W, atol=1e-5)
    score = score_dictionary(exact.W, exact.feature_directions(), sample, codes=sample.true,
                             reconstruction=sample.compressed)
    labels = [f.label for f in score.features]
    assert "one" not in labels and "bos" not in labels  # constant / absent without BOS
    assert {"tokens:a", "hist:4"} <= set(labels)
    assert score.recovered == score.precision == score.recall == 1.0


def test_centring_matches_a_dictionary_that_absorbed_each_sops_mean(exact):
    """Exactly one token is active at each position, so a dictionary with a bias may hold
    each token's direction minus the tokens' mean: that still matches, unless centre=False."""
    sample = residual_sample(exact, "blocks.0.hook_resid_pre")
    tokens = [i for i, label in enumerate(exact.residual_labels) if label.startswith("tokens:")]
    share = sample.true[:, tokens].mean(axis=0)
    shifted = exact.W[tokens] - share @ exact.W[tokens]
    truth = exact.feature_directions()
    kept = [exact.residual_labels[i] for i in tokens]
    assert score_dictionary(shifted, truth, sample, features=kept).recovered == 1.0
    assert score_dictionary(shifted, truth, sample, features=kept, centre=False).recovered == 0.0
    assert score_dictionary(shifted, truth, features=kept).recovered == 0.0  # no sample: raw


def test_unknown_hooks_are_refused(exact):
    with pytest.raises(InvalidInputError, match="unknown hook 'blocks.1.hook_resid_post'"):
        residual_sample(exact, "blocks.1.hook_resid_post")
    with pytest.raises(InvalidInputError, match="blocks.0.hook_resid_pre, blocks.0.hook_resid_mid"):
        exact.feature_directions().activations([["a"]], "hook_embed")


def test_pictures_are_written(exact, tmp_path):
    assert_picture(interference_picture(exact, tmp_path / "w.png"))
    assert interference_picture(exact, tmp_path / "part.svg", features=["tokens:a", "hist:1"]
                                ).read_text().startswith("<?xml")
    assert_picture(feature_norms_picture(exact, tmp_path / "n.png"))


def test_a_sweep_measures_accuracy_and_recovery(exact, tmp_path):
    points = sweep(exact.base, [exact.d_model], init="identity",
                   sae_options={"steps": 100})
    (point,) = points
    assert point.d == point.d_model == 11 and point.steps == 0
    assert point.position_accuracy == point.sequence_accuracy == 1.0
    assert point.features > 0 and point.sae_latents == point.features
    assert 0 <= point.recovered <= 1 and point.chance < 1
    assert_picture(sweep_picture({"hist": points}, tmp_path / "sweep.png"))


@pytest.mark.parametrize("arguments, message", [
    ({"dims": [5, 0]}, r"d=0: the compressed residual must have 1\.\.11"),
    ({"dims": []}, "dims must be a non-empty list"),
    ({"hook": "blocks.3.hook_resid_post"}, "unknown hook 'blocks.3.hook_resid_post'"),
    ({"sae_latents": 0}, "sae_latents must be a whole number >= 1"),
    ({"sae_kind": "gated"}, "sae_kind must be one of relu, topk"),
    ({"sae_options": {"stepz": 10}}, "sweep cannot pass sae_options stepz"),
    ({"stepz": 10}, "sweep cannot pass compress options stepz"),
])
def test_a_sweeps_bad_arguments_are_refused_before_any_training(exact, arguments, message):
    arguments = {"dims": [5], **arguments}
    with pytest.raises(InvalidInputError, match=message):
        sweep(exact.base, **arguments)
