"""Sparse autoencoders recover features where the answer is known: orthogonal features,
as many dimensions as features or more."""

from __future__ import annotations

import numpy as np
import pytest

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.superposition.sae import SparseAutoencoder, train_sae
from rasp_compiler.superposition.scoring import score_dictionary

# One worker: its fixtures (a trained compression) and the jitted training steps are
# made once, not once per worker.
pytestmark = pytest.mark.xdist_group("compression")

FEATURES, D, ROWS = 6, 10, 1200


@pytest.fixture(scope="module")
def toy():
    """Sparse non-negative features along orthonormal directions: x = a @ F."""
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(D, FEATURES)))[0].T  # [6, 10], orthonormal rows
    active = rng.random((ROWS, FEATURES)) < 0.2
    values = active * rng.uniform(0.5, 1.5, (ROWS, FEATURES))
    return directions, values, values @ directions


@pytest.mark.parametrize("kind, options", [("relu", {}), ("topk", {"k": 2})])
def test_sae_recovers_orthogonal_features(toy, kind, options):
    directions, values, x = toy
    sae = train_sae(x, 12, kind=kind, steps=300, seed=0, **options)
    assert isinstance(sae, SparseAutoencoder) and sae.directions.shape == (12, D)
    np.testing.assert_allclose(np.linalg.norm(sae.directions, axis=1), 1, atol=1e-5)
    best = (directions @ sae.directions.T).max(axis=1)  # signed: latents fire one way
    assert best.min() > 0.95, best
    codes = sae.encode(x)
    assert codes.shape == (ROWS, 12) and codes.min() >= 0
    if kind == "topk":
        assert (np.count_nonzero(codes, axis=1) <= 2).all()
    error = np.sum((sae.reconstruct(x) - x) ** 2) / np.sum((x - x.mean(0)) ** 2)
    assert error < 0.1, error


def test_scorer_reads_an_sae_with_its_codes(toy):
    """The scorer takes the SAE itself: its directions, codes and reconstruction."""
    from rasp_compiler.superposition.scoring import ResidualSample

    directions, values, x = toy
    sae = train_sae(x, 12, steps=300, seed=0)
    labels = tuple(f"f{i}" for i in range(FEATURES))
    sample = ResidualSample("toy", x.astype(np.float32), values.astype(np.float32), labels,
                            tuple((i, 1) for i in range(ROWS)))
    score = score_dictionary(sae, directions, sample, labels=labels, signed=True)
    assert score.recovered == 1.0 and score.mean_max_cosine > 0.95
    assert score.recall > 0.9 and score.precision > 0.9
    assert score.l0 < 2.5 and score.reconstruction_error < 0.1
    assert score.dead_latents == sum(not (sae.encode(x)[:, j] > 1e-6).any() for j in range(12))


@pytest.mark.parametrize("arguments, options, message", [
    (("x", 4), {}, "must be an \\[N, d\\] array"),
    ((np.zeros((0, 3)), 4), {}, "non-empty"),
    ((np.full((3, 2), np.nan), 4), {}, "NaN"),
    ((np.zeros((3, 2)), 0), {}, "latents must be a whole number >= 1"),
    ((np.zeros((3, 2)), 4), {"kind": "gated"}, "kind must be one of relu, topk"),
    ((np.zeros((3, 2)), 4), {"kind": "topk"}, "needs k"),
    ((np.zeros((3, 2)), 4), {"kind": "topk", "k": 5}, "in 1..4"),
    ((np.zeros((3, 2)), 4), {"k": 2}, "with kind='relu' set l1"),
    ((np.zeros((3, 2)), 4), {"l1": -1.0}, "l1 must be a finite number >= 0"),
    ((np.zeros((3, 2)), 4), {"seed": 2**70}, "seed must be a whole number from 0 to"),
    ((np.zeros((3, 2)), 4), {"seed": float("nan")}, "seed must be a whole number >= 0"),
    ((np.zeros((3, 2)), 10**9), {}, "latents=1,000,000,000 gives the SAE"),
])
def test_bad_arguments_are_refused(arguments, options, message):
    with pytest.raises(InvalidInputError, match=message):
        train_sae(*arguments, **options)


def test_same_seed_same_sae_and_progress_is_shown(toy, capsys):
    _, _, x = toy
    first = train_sae(x, 12, steps=200, seed=3, progress=True)
    err = capsys.readouterr().err
    assert "SAE (relu, 12 latents): 200/200 steps (100%), mse" in err
    assert err.endswith("\n") and "\r" not in err
    again = train_sae(x, 12, steps=200, seed=3)
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(again.w_dec, first.w_dec)
    np.testing.assert_array_equal(again.w_enc, first.w_enc)
    assert not np.allclose(train_sae(x, 12, steps=200, seed=4).w_dec, first.w_dec)
