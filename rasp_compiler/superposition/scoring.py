"""Superposition with ground truth: score any dictionary of directions against the known
features of a compressed compiled model.

A compressed model (compression.py) writes feature i along row i of W, so the true
dictionary is known exactly, and the uncompressed model says which features are active at
every position. An interpretability method that claims to find features (an SAE from
sae.py, or anything a user brings as an [m, d] array) is scored here by how well its
directions match the true ones and how well its latents fire where the features are active.

    truth = compressed.feature_directions()
    sample = residual_sample(compressed, "blocks.2.hook_resid_post")
    score = score_dictionary(my_directions, truth, sample, codes=my_codes)

Which features are scored: with a sample, those active somewhere in it and not constant
(the `one` feature is in the mean, which an SAE's bias absorbs; a feature not yet written at
the hook cannot be found there); without one, every feature.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.superposition.objective import EXHAUSTIVE_LIMIT, input_count
from rasp_compiler.superposition.sae import SparseAutoencoder
from rasp_compiler.verify.inputs import all_inputs, random_inputs

RECOVERED = 0.9  # a true feature is recovered when some latent's cosine with it reaches this
ACTIVE = 0.01  # a true feature is active where |its value| exceeds this
FIRES = 1e-6  # a latent fires where its code exceeds this
DUPLICATE = 0.9  # two latents are duplicates when their directions' cosine reaches this



@dataclass(frozen=True, eq=False)
class FeatureDirections:
    """Every original feature's direction in the compressed space, and its true values."""

    labels: tuple[str, ...]  # 'sop:value' (or 'sop' for a numerical SOp), one per feature
    directions: np.ndarray  # [D, d]: row i is feature i's direction (row i of W)
    model: Any = field(repr=False)  # the CompressedModel

    @property
    def norms(self) -> np.ndarray:
        """[D] each feature's length in the compressed space (W's row norms)."""
        return np.linalg.norm(self.directions, axis=1)

    def activations(self, batch, hook: str | None = None, *, ids: bool = False):
        """The uncompressed model's feature values [B, T, D] at `hook` (a residual hook, see
        `CompressedModel.residual_hooks`) for `batch`, or all of them as a dict."""
        base = self.model.base
        if hook is not None:
            check_hook(self.model, hook)
        _, cache = base.run_with_cache(batch, ids=ids)
        hooks = self.model.residual_hooks
        if hook is not None:
            return cache[hook]
        return {name: cache[name] for name in hooks}


def check_hook(model, hook: str) -> None:
    if hook not in model.residual_hooks:
        raise InvalidInputError(
            f"unknown hook {hook!r}: a compressed model's residual is at "
            f"{', '.join(model.residual_hooks)}"
        )


@dataclass(frozen=True, eq=False)
class ResidualSample:
    """Paired activations at one hook, one row per (input, position): the compressed
    residual a method sees and the true feature values behind it."""

    hook: str
    compressed: np.ndarray  # [N, d]
    true: np.ndarray  # [N, D]
    labels: tuple[str, ...]
    positions: tuple[tuple[int, int], ...]  # (input index, position; 0 is BOS)
    # Per feature, its categorical SOp (None: numerical); the values of one SOp form a group
    # that `score_dictionary` may centre (see there). Empty: no groups known.
    groups: tuple[str | None, ...] = ()

    def __len__(self) -> int:
        return len(self.positions)


def residual_sample(model, hook: str, inputs=None, *, samples: int | None = None,
                    seed: int = 0, include_bos: bool = False) -> ResidualSample:
    """The compressed model's residual and the true features at `hook` on `inputs` (a
    list of token sequences); by default every input when there are at most
    EXHAUSTIVE_LIMIT, else `samples` (default 1000) random ones. BOS positions are left
    out unless `include_bos` (they hold the `bos` feature and the attention sink)."""

    check_hook(model, hook)
    if inputs is None:
        count = input_count(len(model.vocab), model.max_seq_len)
        if samples is None and count <= EXHAUSTIVE_LIMIT:
            inputs = all_inputs(model.vocab, model.max_seq_len)
        else:
            inputs = random_inputs(model.vocab, model.max_seq_len, samples or 1000, seed)
    inputs = [list(xs) for xs in inputs]
    if not inputs:
        raise InvalidInputError("residual_sample needs at least one input")
    compressed_rows, true_rows, positions = [], [], []
    for start in range(0, len(inputs), 1024):
        part = inputs[start: start + 1024]
        _, cache = model.run_with_cache(part)
        _, true_cache = model.base.run_with_cache(part)
        for b, xs in enumerate(part):
            for p in range(0 if include_bos else 1, len(xs) + 1):
                compressed_rows.append(cache[hook][b, p])
                true_rows.append(true_cache[hook][b, p])
                positions.append((start + b, p))
    return ResidualSample(hook, np.asarray(compressed_rows, np.float32),
                          np.asarray(true_rows, np.float32), tuple(model.residual_labels),
                          tuple(positions), feature_groups(model))


def feature_groups(model) -> tuple[str | None, ...]:
    """Per feature of a compressed model, its categorical SOp, or None for a numerical one."""
    return tuple(None if dim.is_numerical else dim.sop for dim in model.base.layout.dims)




@functools.lru_cache(maxsize=256)
def chance_max_cosine(d: int, m: int, signed: bool = False) -> float:
    """E[max over m random unit directions in R^d of |cos| (or cos, `signed`) with a fixed
    direction]: what a dictionary of m random directions scores per feature.

    The angle theta between a fixed and a uniformly random direction has density
    proportional to sin(theta)^(d - 2); the expectation integrates 1 - P(max <= t).
    """
    if d < 1 or m < 1:
        raise InvalidInputError(f"chance_max_cosine needs d >= 1 and m >= 1, got {d}, {m}")
    if d == 1:  # every direction is +-1 times the feature
        return 1.0 if not signed else 1.0 - 2.0 * 0.5 ** m
    theta = np.linspace(0.0, math.pi, 100_001)
    density = np.sin(theta) ** (d - 2)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cdf /= cdf[-1]  # H(theta) = P(angle <= theta)
    t = np.linspace(-1.0 if signed else 0.0, 1.0, 50_001)
    angle = np.arccos(t)
    at = lambda a: np.interp(a, theta, cdf)
    below = (1.0 - at(angle)) if signed else (at(math.pi - angle) - at(angle))
    tail = 1.0 - below ** m
    integral = float(np.sum((tail[1:] + tail[:-1]) / 2 * np.diff(t)))
    return integral - 1.0 if signed else integral




@dataclass(frozen=True)
class FeatureMatch:
    label: str
    latent: int  # the best-matching latent
    cosine: float
    recovered: bool
    active: float | None = None  # share of sample rows where the feature is active
    precision: float | None = None  # of the rows where the latent fires, the share with the feature
    recall: float | None = None  # of the rows with the feature, the share where the latent fires
    firing_latent: int | None = None  # the latent whose firing best matches the feature's
    firing_f1: float | None = None  # its F1 score: 1 when it fires exactly where the feature is


@dataclass(frozen=True)
class DictionaryScore:
    """How well a dictionary recovers the true features (see `score_dictionary`)."""

    features: tuple[FeatureMatch, ...]  # the scored features
    mean_max_cosine: float
    recovered: float  # share of scored features with a latent at cosine >= threshold
    threshold: float
    latents: int
    chance: float  # mean_max_cosine of as many random directions
    duplicate_latents: int  # latents within DUPLICATE cosine of an earlier latent
    dead_latents: int | None = None  # latents that never fire on the sample (needs codes)
    l0: float | None = None  # mean latents firing per sample row (needs codes)
    reconstruction_error: float | None = None  # unexplained variance share (needs a reconstruction)
    precision: float | None = None  # mean over recovered features
    recall: float | None = None
    # share of scored features some latent fires for with F1 >= threshold (direction aside)
    recovered_by_firing: float | None = None

    def __str__(self) -> str:
        def maybe(value, form):
            return "n/a" if value is None else format(value, form)

        lines = [
            f"{len(self.features)} features, {self.latents} latents: mean max cosine "
            f"{self.mean_max_cosine:.3f} (random directions: {self.chance:.3f}), "
            f"{self.recovered:.0%} recovered at cosine >= {self.threshold}",
            f"dead latents {maybe(self.dead_latents, 'd')}, duplicate latents "
            f"{self.duplicate_latents}, L0 {maybe(self.l0, '.2f')}, reconstruction error "
            f"{maybe(self.reconstruction_error, '.2%')}, precision {maybe(self.precision, '.2f')}"
            f", recall {maybe(self.recall, '.2f')}, recovered by firing "
            f"{maybe(self.recovered_by_firing, '.0%')}",
        ]
        return "\n".join(lines)

    def table(self) -> str:
        """One line per scored feature: its best latent, cosine, and firing agreement."""
        def maybe(value):
            return "  -  " if value is None else f"{value:5.2f}"

        width = max((len(f.label) for f in self.features), default=7)
        lines = [f"{'feature':<{width}}  latent  cosine  active  precision  recall  "
                 f"firing latent  F1"]
        for f in self.features:
            firing = "     -" if f.firing_latent is None else f"{f.firing_latent:6d}"
            lines.append(f"{f.label:<{width}}  {f.latent:6d}  {f.cosine:6.3f}  "
                         f"{maybe(f.active)}   {maybe(f.precision)}      {maybe(f.recall)}  "
                         f"       {firing}  {maybe(f.firing_f1)}"
                         f"{'' if f.recovered else '   (not recovered)'}")
        return "\n".join(lines)


def _matrix(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a 2-D array of numbers, got "
                                f"{type(value).__name__}") from None
    if array.ndim != 2 or 0 in array.shape:
        raise InvalidInputError(f"{name} must be a non-empty 2-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{name} holds NaN or infinite values")
    return array


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(norms > 1e-12, rows / np.maximum(norms, 1e-12), 0.0)


def score_dictionary(dictionary, truth, sample: ResidualSample | None = None, *,
                     codes=None, reconstruction=None, labels: Sequence[str] | None = None,
                     features: Sequence[str] | None = None, threshold: float = RECOVERED,
                     signed: bool = False, centre: bool = True,
                     active_threshold: float = ACTIVE,
                     fire_threshold: float = FIRES) -> DictionaryScore:
    """Score `dictionary` against the true feature directions.

    dictionary: an [m, d] array of directions (rows; any length, any order) or a
        SparseAutoencoder (its decoder rows; with a sample, its codes and reconstruction).
    truth: a compressed model's `feature_directions()` or an [D, d] array (then name the
        features with `labels`).
    sample: a `residual_sample` at the hook the dictionary was made for: it picks the
        features to score (active there, not constant) and enables the activation metrics.
    codes: your method's latent activations [N, m] on the sample's rows (dead latents, L0,
        precision/recall); reconstruction: its reconstruction [N, d] of `sample.compressed`.
    features: score only these labels. signed: compare cosines with their sign (an SAE's
        latents fire one way); by default a direction and its negative are the same.
    centre: with a sample, a latent may also match a feature's centred direction: exactly
        one value of a categorical SOp is active at every position, so the data fix each
        value's direction only up to a shift shared by the SOp's values, which a dictionary
        with a bias absorbs. The centred direction of value v is W_v minus the mean of the
        SOp's value directions weighted by how often each is active in the sample.
    """

    if isinstance(dictionary, SparseAutoencoder):
        if sample is not None:
            codes = dictionary.encode(sample.compressed) if codes is None else codes
            if reconstruction is None:
                reconstruction = dictionary.decode(codes)
        dictionary = dictionary.directions
    latents = _matrix(dictionary, "the dictionary")
    if isinstance(truth, FeatureDirections):
        labels, true = truth.labels, _matrix(truth.directions, "the true directions")
    else:
        true = _matrix(truth, "the true directions")
        labels = tuple(labels) if labels is not None else tuple(f"feature {i}"
                                                                for i in range(len(true)))
    if len(labels) != len(true):
        raise InvalidInputError(f"{len(labels)} labels for {len(true)} true directions")
    if latents.shape[1] != true.shape[1]:
        raise InvalidInputError(
            f"the dictionary's directions have {latents.shape[1]} dimensions, the true ones "
            f"{true.shape[1]}; score directions in the compressed space (d = {true.shape[1]})"
        )
    if not 0 < threshold <= 1:
        raise InvalidInputError(f"threshold must be in (0, 1], got {threshold!r}")
    if sample is not None:
        if sample.true.shape[1] != len(true) or sample.compressed.shape[1] != true.shape[1]:
            raise InvalidInputError(
                f"the sample ({sample.true.shape[1]} features, d={sample.compressed.shape[1]}) "
                f"is not from this model ({len(true)} features, d={true.shape[1]})")
        if tuple(sample.labels) != tuple(labels):
            raise InvalidInputError("the sample's feature labels differ from the truth's")

    chosen = scored_features(labels, true, sample, features, active_threshold)
    unit_latents, unit_true = _unit(latents), _unit(true)
    cosine = unit_true @ unit_latents.T  # [D, m]
    similarity = cosine if signed else np.abs(cosine)
    if centre and sample is not None and sample.groups:
        centred = _unit(_centred(true, sample)) @ unit_latents.T
        similarity = np.maximum(similarity, centred if signed else np.abs(centred))
    best = similarity.argmax(axis=1)
    best_cos = similarity[np.arange(len(true)), best]

    fires = active = None
    if codes is not None:
        if sample is None:
            raise InvalidInputError("codes are latent activations on a sample's rows: pass "
                                    "the sample too")
        codes = _matrix(codes, "codes")
        if codes.shape != (len(sample), len(latents)):
            raise InvalidInputError(f"codes must be [{len(sample)} sample rows, {len(latents)} "
                                    f"latents], got {list(codes.shape)}")
        fires = codes > fire_threshold
    if sample is not None:
        active = np.abs(sample.true) > active_threshold
    f1 = None
    if fires is not None:
        both = active.T.astype(np.float64) @ fires.astype(np.float64)  # [D, m] rows in common
        sizes = active.sum(axis=0)[:, None] + fires.sum(axis=0)[None, :]
        f1 = np.where(sizes > 0, 2 * both / np.maximum(sizes, 1), 0.0)
    matches = []
    for i in chosen:
        j, cos = int(best[i]), float(best_cos[i])
        share = precision = recall = None
        if active is not None:
            share = float(active[:, i].mean())
        if fires is not None:
            fired, present = fires[:, j], active[:, i]
            both = float(np.sum(fired & present))
            precision = both / fired.sum() if fired.any() else 0.0
            recall = both / present.sum() if present.any() else 0.0
        firing = None if f1 is None else int(f1[i].argmax())
        matches.append(FeatureMatch(labels[i], j, cos, cos >= threshold, share, precision, recall,
                                    firing, None if f1 is None else float(f1[i, firing])))
    recovered = [m for m in matches if m.recovered]
    pair = unit_latents @ unit_latents.T
    pair = pair if signed else np.abs(pair)
    duplicates = int(np.sum(np.any(np.tril(pair >= DUPLICATE, k=-1), axis=1)))
    error = None
    if reconstruction is not None:
        if sample is None:
            raise InvalidInputError("a reconstruction is of a sample's rows: pass the sample")
        reconstruction = _matrix(reconstruction, "reconstruction")
        if reconstruction.shape != sample.compressed.shape:
            raise InvalidInputError(f"reconstruction must be shaped like the sample "
                                    f"{list(sample.compressed.shape)}, got "
                                    f"{list(reconstruction.shape)}")
        x = sample.compressed.astype(np.float64)
        spread = np.sum((x - x.mean(0)) ** 2)
        error = float(np.sum((x - reconstruction) ** 2) / spread) if spread > 0 else 0.0
    mean = lambda values: float(np.mean(values)) if values else None
    return DictionaryScore(
        features=tuple(matches),
        mean_max_cosine=mean([m.cosine for m in matches]) or 0.0,
        recovered=len(recovered) / max(len(matches), 1),
        threshold=threshold,
        latents=len(latents),
        chance=chance_max_cosine(true.shape[1], len(latents), signed),
        duplicate_latents=duplicates,
        dead_latents=None if fires is None else int(np.sum(~fires.any(axis=0))),
        l0=None if fires is None else float(fires.sum(axis=1).mean()),
        reconstruction_error=error,
        precision=mean([m.precision for m in recovered]) if fires is not None else None,
        recall=mean([m.recall for m in recovered]) if fires is not None else None,
        recovered_by_firing=None if f1 is None else
        sum(m.firing_f1 >= threshold for m in matches) / max(len(matches), 1),
    )


def _centred(true: np.ndarray, sample: ResidualSample) -> np.ndarray:
    """The true directions, each categorical SOp's values shifted by their mean direction
    where the sample has exactly one of them active at every row (else left as they are)."""
    out = true.copy()
    members: dict[str, list[int]] = {}
    for i, group in enumerate(sample.groups):
        if group is not None:
            members.setdefault(group, []).append(i)
    for group, index in members.items():
        values = sample.true[:, index]
        if len(index) > 1 and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
            out[index] = true[index] - values.mean(axis=0) @ true[index]
    return out


def scored_features(labels, true, sample, features, active_threshold) -> list[int]:
    if features is not None:
        index = {label: i for i, label in enumerate(labels)}
        unknown = [f for f in features if f not in index]
        if unknown:
            raise InvalidInputError(f"unknown features {unknown}; the features are "
                                    f"{', '.join(labels)}")
        return [index[f] for f in features]
    if sample is None:
        return list(range(len(labels)))
    values = sample.true
    live = np.any(np.abs(values) > active_threshold, axis=0)
    constant = np.ptp(values, axis=0) <= 1e-6
    chosen = [i for i in range(len(labels)) if live[i] and not constant[i]]
    if not chosen:
        raise InvalidInputError(f"no feature varies in the sample at {sample.hook}; sample "
                                f"more inputs or another hook")
    return chosen
