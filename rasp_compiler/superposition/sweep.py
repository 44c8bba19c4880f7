"""How superposition degrades as the width shrinks, and the pictures of a compressed model:
`sweep` compresses one model to several widths and scores an SAE at each
(scripts/superposition_sweep.py draws the table), `interference_picture` (W W^T),
`feature_norms_picture` and `sweep_picture`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rasp_compiler.diagnostics.colours import diverging_cmap
from rasp_compiler.diagnostics.pictures import _pyplot
from rasp_compiler.errors import InvalidInputError, SaveError
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.superposition.compressed_forward import check_width, residual_hook_names
from rasp_compiler.superposition.compression import compress
from rasp_compiler.superposition.sae import KINDS, train_sae
from rasp_compiler.superposition.scoring import (
    ACTIVE,
    residual_sample,
    score_dictionary,
    scored_features,
)


@dataclass(frozen=True)
class SweepPoint:
    """One compression width of a sweep: how the model did, and how well an SAE recovered
    the features there."""

    d: int
    d_model: int
    position_accuracy: float
    sequence_accuracy: float
    agreement: float  # with the uncompressed model, on the training evaluation set
    steps: int
    compress_seconds: float
    hook: str
    features: int  # features scored at the hook
    sae_latents: int
    mean_max_cosine: float
    recovered: float
    chance: float
    reconstruction_error: float
    l0: float
    precision: float | None
    recall: float | None
    recovered_by_firing: float
    sae_seconds: float


def sweep(model, dims: Sequence[int], *, program=None, hook: str | None = None,
          seed: int = 0, sae_latents: int | None = None, sae_kind: str = "relu",
          sae_options: dict | None = None, progress: bool = False,
          **compress_options) -> list[SweepPoint]:
    """Compress `model` to each width in `dims`; measure its accuracy against the evaluator
    and how well an SAE at `hook` (default: the last residual) recovers the true features.

    The SAE gets `sae_latents` latents (default: as many as the scored features: more let
    it give co-occurring features one latent per combination) and `sae_options` (passed to
    `train_sae`); `compress_options` go to `compress`.
    """

    _check_sweep(model, dims, hook, sae_latents, sae_kind, sae_options, compress_options)
    points = []
    for d in dims:
        compressed = compress(model, d, seed=seed, progress=progress, **compress_options)
        accuracy = compressed.accuracy(program=program)
        at = hook or compressed.residual_hooks[-1]
        sample = residual_sample(compressed, at)
        scored = len(scored_features(sample.labels, compressed.W, sample, None, ACTIVE))
        latents = sae_latents or scored
        sae = train_sae(sample, latents, kind=sae_kind, seed=seed, progress=progress,
                        **(sae_options or {}))
        score = score_dictionary(sae, compressed.feature_directions(), sample, signed=True)
        points.append(SweepPoint(
            d=d, d_model=compressed.d_model, position_accuracy=accuracy.position_accuracy,
            sequence_accuracy=accuracy.sequence_accuracy, agreement=compressed.info.agreement,
            steps=compressed.info.steps, compress_seconds=compressed.info.seconds, hook=at,
            features=len(score.features), sae_latents=latents,
            mean_max_cosine=score.mean_max_cosine, recovered=score.recovered,
            chance=score.chance, reconstruction_error=score.reconstruction_error,
            l0=score.l0, precision=score.precision, recall=score.recall,
            recovered_by_firing=score.recovered_by_firing, sae_seconds=sae.info.seconds))
    return points


def _check_sweep(model, dims, hook, sae_latents, sae_kind, sae_options,
                 compress_options) -> None:
    """Refuse a sweep's bad arguments before any training: a mistake in the last width, the
    hook or the SAE's options would otherwise surface after minutes of compressing."""
    import inspect

    if not isinstance(model, CompiledModel):
        raise InvalidInputError(f"sweep needs a CompiledModel (from compile_program), got "
                                f"{type(model).__name__}")
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise InvalidInputError(f"dims must be a non-empty list of widths, got {dims!r}")
    for d in dims:
        check_width(model, d)
    hooks = residual_hook_names(model.depth)
    if hook is not None and hook not in hooks:
        raise InvalidInputError(f"unknown hook {hook!r}: a compressed model's residual is at "
                                f"{', '.join(hooks)}")
    if sae_latents is not None and (isinstance(sae_latents, bool) or not isinstance(
            sae_latents, (int, np.integer)) or sae_latents < 1):
        raise InvalidInputError(f"sae_latents must be a whole number >= 1 (or None: one per "
                                f"live feature), got {sae_latents!r}")
    if sae_kind not in KINDS:
        raise InvalidInputError(f"sae_kind must be one of {', '.join(KINDS)}, got {sae_kind!r}")
    for what, options, function, taken in (
            ("sae_options", sae_options or {}, train_sae, {"data", "latents", "kind", "seed",
                                                           "progress"}),
            ("compress options", compress_options, compress, {"model", "d", "seed",
                                                              "progress"})):
        known = set(inspect.signature(function).parameters) - taken
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidInputError(f"sweep cannot pass {what} {', '.join(unknown)}; it "
                                    f"passes on {', '.join(sorted(known))}")




def interference_picture(model, path, *, features: Sequence[str] | None = None) -> Path:
    """The superposition picture: W @ W.T with every feature labelled. Entry (i, j) is how
    much a read of feature i picks up of feature j; an uncompressed model is the identity."""

    plt = _pyplot()
    labels = list(model.residual_labels)
    keep = list(range(len(labels))) if features is None else [labels.index(f) for f in features]
    matrix = model.interference()[np.ix_(keep, keep)]
    names = [labels[i] for i in keep]
    size = 3 + 0.13 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    limit = max(1.0, float(np.abs(matrix).max()))
    image = ax.imshow(matrix, cmap=diverging_cmap(), vmin=-limit, vmax=limit)  # blue positive
    fontsize = max(3, min(8, int(400 / max(len(names), 1))))
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(names)), names, fontsize=fontsize)
    ax.set_title(f"{model.name}: W W^T, {model.d_model} features in d={model.d} (blue "
                 f"positive, red negative)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return _save(fig, plt, path)


def feature_norms_picture(model, path) -> Path:
    """Each feature's length in the compressed space (row norms of W): features the training
    kept (about 1) and those it let go (about 0)."""

    plt = _pyplot()
    labels = list(model.residual_labels)
    norms = np.linalg.norm(model.W, axis=1)
    fig, ax = plt.subplots(figsize=(7, 1 + 0.14 * len(labels)))
    ax.barh(range(len(labels)), norms, color="tab:blue")
    ax.set_yticks(range(len(labels)), labels, fontsize=max(3, min(8, int(500 / len(labels)))))
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("|W_i| (1: as long as in the exact model)")
    ax.set_title(f"{model.name}: feature norms at d={model.d} of {model.d_model}", fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def sweep_picture(sweeps: dict[str, Sequence[SweepPoint]], path) -> Path:
    """Per program, against d / d_model: the compressed model's accuracy, and how well an SAE
    recovered the true features: the share some latent fires for (F1 >= 0.9), and the mean
    max cosine above chance, (cosine - chance) / (1 - chance): 0 for random directions."""

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in sweeps.items():
        points = sorted(points, key=lambda p: p.d)
        ratio = [p.d / p.d_model for p in points]
        line = left.plot(ratio, [p.position_accuracy for p in points], marker="o", label=name)[0]
        left.plot(ratio, [p.sequence_accuracy for p in points], linestyle=":",
                  color=line.get_color())
        right.plot(ratio, [p.recovered_by_firing for p in points], marker="o",
                   color=line.get_color(), label=name)
        right.plot(ratio, [(p.mean_max_cosine - p.chance) / (1 - p.chance) for p in points],
                   linestyle="--", color=line.get_color())
    left.set_title("accuracy (solid: positions, dotted: whole inputs)", fontsize=9)
    right.set_title("SAE: features fired for, F1 >= 0.9 (solid);\nmean max cosine above "
                    "chance (dashed)", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("d / d_model")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path) -> Path:
    path = Path(path)
    try:
        fig.savefig(path, dpi=110, format=path.suffix.lstrip(".") or "png")
    except OSError as exc:  # e.g. a full disk or a read-only file: say which file
        raise SaveError(f"cannot write the picture to {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return path


