"""Compression: a compiled model whose residual stream is squeezed through a learnt projection.

This module trains; the rest of the folder holds what it trains: the forward
(compressed_forward.py), the loss and the steps (objective.py), the model
(compressed_model.py) and its files (compressed_files.py).

A compiled model gives every residual dimension one named feature (`sort:a`, `indices:3`):
no two features share a dimension, so nothing interferes. `compress(model, d)` learns a
projection W [d_model, d] and runs the same frozen weights through a d-dimensional
residual stream, which forces features to share dimensions: superposition, with the
ground truth known (tracr paper, section 5; the training code here is our own).

Where W acts (the only trainable weights; every compiled weight stays frozen):

    h0 = (token_embed + pos_embed) @ W              the compressed residual [T, d]
    per sublayer: x = h @ W.T                       the read, back in the d_model features
                  u = attention(x) or mlp(x)        the frozen sublayer, as compiled
                  h = h + u @ W                     the write, compressed again
    readout:      x = h @ W.T, then the compiled readout of the output SOp

So row i of W is feature i's direction in the compressed space, and W @ W.T [D, D] is the
interference between features (the identity when nothing interferes).

The loss (as in the tracr paper): the output loss (for a categorical output, cross-entropy
over its readout dimensions plus a None class at the decoding threshold, so the softmax's
choice is what `decode_nearest` reads; for a numerical one, the squared error in units of
NUMERICAL_ATOL) plus the reconstruction loss: at every read of `read_hooks` (each non-empty
sublayer's input and the final readout) the squared distance between the read x and the
uncompressed model's residual at the same point (`blocks.{l}.hook_resid_pre`,
`blocks.{l}.hook_resid_mid`, the final residual), each feature's squared error weighted
by how much the frozen weights that read it amplify it (`feature_weights`, weighting="use",
the default; "uniform" counts every feature the same), averaged over positions and reads.

`nonlinear=True` (the default) gives every read its own small ReLU decoder on top of the
linear one, x = h @ W.T + relu(h @ A + a) @ B (B starts at zero): W still encodes every
write, so each feature keeps one direction, but a read may learn to filter interference, as
the ReLU readout does in Anthropic's "Toy Models of Superposition".

The defaults (nonlinear reads, "use" weights, output weight 30, learning rate 0.003,
20,000 steps, patience 40) are the recipe measured in docs/superposition.md: at
d = d_model // 2 they keep at least 99% of positions and 95% of whole inputs right on the
bundled sort_unique, sort_freq, histogram, reverse, dyck1 and frac_prevs, each in 5 to 64 s
on two shared CPU cores. The former defaults (linear reads, uniform weights, 3,000 steps)
got 12% and 43% of whole inputs on sort_unique and sort_freq at half width.

Training runs on inputs drawn from the vocab with lengths 1..max_seq_len (every input when
there are at most EXHAUSTIVE_LIMIT of them), several optax (Adam) steps per jitted call, on
the default JAX device (an accelerator when there is one), deterministic for a seed. The
targets come from the uncompressed model inside the same jitted step.
"""

from __future__ import annotations

import math
import time
from numbers import Real
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.errors import (
    InvalidInputError,
    describe_bytes,
)
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.constants import DEFAULT_MAX_PARAMETERS
from rasp_compiler.progress import StepProgress
from rasp_compiler.superposition.compressed_forward import check_width, read_hooks
from rasp_compiler.superposition.compressed_model import CompressedModel, CompressionInfo
from rasp_compiler.superposition.objective import (
    EXHAUSTIVE_LIMIT,
    WEIGHTINGS,
    TrainingSetup,
    evaluate_projection,
    every_input,
    feature_weights,
    input_count,
    make_optimiser,
    random_batch,
    targets_jit,
    train_steps,
)
from rasp_compiler.verify.inputs import check_seed

EVAL_SAMPLES = 1024  # otherwise: a fixed random sample of this many inputs to evaluate on
TARGET_BYTES = 256 * 1024**2  # the evaluation set's stored targets stay under this
MAX_BATCH_BYTES = 16 * 1024**3  # a training batch's stored reads, at most (a large GPU's memory)
PLATEAU = 0.01  # an evaluation improves on the best loss when it is this much (relative) lower
INITS = ("random", "pca", "identity")
# The recipe before the defaults kept the program (issue 26): linear reads, every feature
# weighted alike. The simplest superposed model; benchmarks that measured it name it.
LINEAR_RECIPE = {"nonlinear": False, "learning_rate": 1e-2, "output_weight": 1.0,
                 "patience": 10, "weighting": "uniform"}


def _check_options(model, d, seed, steps, batch_size, learning_rate, output_weight,
                   reconstruction_weight, hidden, init, target_agreement, eval_every,
                   patience, weighting) -> None:

    if not isinstance(model, CompiledModel):
        raise InvalidInputError(f"compress needs a CompiledModel (from compile_program), got "
                                f"{type(model).__name__}")
    check_width(model, d)
    width = model.shape.d_model

    def whole(name, value, least):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InvalidInputError(f"{name} must be a whole number >= {least}, got {value!r}")

    whole("steps", steps, 0)
    whole("batch_size", batch_size, 1)
    whole("eval_every", eval_every, 1)
    whole("patience", patience, 1)
    if hidden is not None:
        whole("hidden", hidden, 1)
    check_seed(seed, jax_key=True)
    # Sizes bounded before anything is allocated (2**40 used to end in XLA's out-of-memory
    # error): the decoders as compile_program bounds a model, a batch's stored reads by bytes.
    reads = len(read_hooks(model.shape))
    decoder = reads * (hidden or 2 * d) * (d + 1 + width)
    if hidden is not None and decoder > DEFAULT_MAX_PARAMETERS:
        raise InvalidInputError(
            f"hidden={hidden:,} gives the {reads} decoders {decoder:,} parameters, more than "
            f"{DEFAULT_MAX_PARAMETERS:,}; a decoder a few times d wide is the usual choice")
    per_input = 4 * reads * (model.max_seq_len + 1) * width
    if batch_size * per_input > MAX_BATCH_BYTES:
        raise InvalidInputError(
            f"batch_size={batch_size:,} would hold {describe_bytes(batch_size * per_input)} of "
            f"reads per step, more than {describe_bytes(MAX_BATCH_BYTES)}; at most "
            f"{MAX_BATCH_BYTES // per_input:,} for this model")
    for name, value in (("learning_rate", learning_rate), ("output_weight", output_weight),
                        ("reconstruction_weight", reconstruction_weight)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
                or value < 0:
            raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    if learning_rate == 0:
        raise InvalidInputError("learning_rate must be above 0")
    if output_weight == 0 and reconstruction_weight == 0:
        raise InvalidInputError("output_weight and reconstruction_weight are both 0: nothing "
                                "to train; give either a positive weight")
    if isinstance(target_agreement, bool) or not isinstance(target_agreement, Real) \
            or not 0 < target_agreement <= 1:
        raise InvalidInputError(f"target_agreement must be in (0, 1], got {target_agreement!r}")
    if weighting not in WEIGHTINGS:
        raise InvalidInputError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got "
                                f"{weighting!r}: 'use' weighs each feature's reconstruction "
                                f"by what the frozen weights make of it, 'uniform' counts "
                                f"every feature the same")
    if init not in INITS:
        raise InvalidInputError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "identity" and d != width:
        raise InvalidInputError(f"init='identity' needs d = d_model = {width} (got d={d}); "
                                f"use init='random' or 'pca' to compress")


def _initial_projection(key, width: int, d: int, init: str, hidden: int, shape,
                        pca_rows=None) -> dict:
    """W: orthonormal columns (a random rotation cut to d, or the top-d principal directions
    of the uncompressed residual) or the identity; readers whose second layer is zero, so a
    nonlinear model starts as the linear one."""
    key_w, key_readers = jax.random.split(key)
    if init == "identity":
        w = jnp.eye(width, dtype=jnp.float32)
    elif init == "pca":
        _, vectors = jnp.linalg.eigh(pca_rows.T @ pca_rows)
        w = vectors[:, ::-1][:, :d]
    else:
        w = jnp.linalg.qr(jax.random.normal(key_w, (width, d), jnp.float32))[0]
    projection: dict[str, Any] = {"W": w}
    if hidden:
        names = read_hooks(shape)
        projection["readers"] = {
            name: {"w1": jax.random.normal(k, (d, hidden), jnp.float32) / math.sqrt(d),
                   "b1": jnp.zeros((hidden,), jnp.float32),
                   "w2": jnp.zeros((hidden, width), jnp.float32)}
            for name, k in zip(names, jax.random.split(key_readers, len(names)))
        }
    return projection


def compress(model, d: int, *, seed: int = 0, steps: int = 20000, batch_size: int = 64,
             learning_rate: float = 3e-3, output_weight: float = 30.0,
             reconstruction_weight: float = 1.0, nonlinear: bool = True,
             hidden: int | None = None, init: str = "random", target_agreement: float = 1.0,
             eval_every: int = 100, patience: int = 40, weighting: str = "use",
             progress: bool = False):
    """Learn W [d_model, d] (see the module doc) and return the `CompressedModel`.

    Trains for at most `steps` Adam steps (cosine-decayed `learning_rate`, gradients
    clipped to norm 1) on batches of `batch_size` inputs. Every `eval_every` steps it
    measures the per-position agreement with the uncompressed model on the evaluation set
    (every input when there are at most EXHAUSTIVE_LIMIT, else EVAL_SAMPLES fixed random
    ones) and stops early once it reaches `target_agreement` ("target") or when the loss
    has not improved by PLATEAU for `patience` evaluations ("plateau"); the best
    evaluation's weights are kept. `nonlinear=True` (the default) adds a ReLU decoder of
    width `hidden` (default 2 d) to every read; `nonlinear=False` gives linear reads, the
    plainest model to study but one that loses the program at half width. `weighting`:
    "use" (the default) weighs each feature's reconstruction error at a read by the gain
    of the frozen weights reading it (`feature_weights`), "uniform" counts all alike.
    `init`: "random" (a random rotation), "pca" (the best rank-d linear reconstruction) or
    "identity" (only for d = d_model: the exact model). The same seed gives the same model
    on the same device.
    """
    _check_options(model, d, seed, steps, batch_size, learning_rate, output_weight,
                   reconstruction_weight, hidden, init, target_agreement, eval_every, patience,
                   weighting)
    seed = int(seed)
    started = time.perf_counter()
    width, shape = model.shape.d_model, model.shape
    hidden_width = (hidden or 2 * d) if nonlinear else 0
    readout = model.readouts[model.output]
    params = model.params
    key_init, key_data, key_eval = jax.random.split(jax.random.PRNGKey(seed), 3)
    vocab_size = len(model.vocab)
    # Every read's target is stored for the evaluation set: bound its size.
    per_input = 4 * len(read_hooks(shape)) * (model.max_seq_len + 1) * width
    count = input_count(vocab_size, model.max_seq_len)
    exhaustive = count <= EXHAUSTIVE_LIMIT and count * per_input <= TARGET_BYTES
    if exhaustive:
        eval_ids, eval_mask = (jnp.asarray(a) for a in every_input(model))
    else:
        eval_ids, eval_mask = random_batch(key_eval, vocab_size, model.max_seq_len,
                                             min(EVAL_SAMPLES, max(64, TARGET_BYTES // per_input)))
    n_data = int(eval_ids.shape[0])
    setup = TrainingSetup(
        shape=shape,
        out_indices=tuple(int(i) for i in readout.indices),
        out_coefficients=tuple(float(c) for c in readout.coefficients) if readout.numerical
        else (),
        numerical=readout.numerical, vocab_size=vocab_size, max_seq_len=model.max_seq_len,
        mode="random" if not exhaustive else "full" if n_data <= batch_size else "pick",
        batch_size=batch_size)
    eval_plan = setup.for_evaluation()
    # Every evaluation input's targets, computed once (at most tens of MB): training on
    # every input then runs one forward per step.
    eval_targets = jnp.concatenate([
        targets_jit(params, eval_plan, eval_ids[i: i + 1024], eval_mask[i: i + 1024])
        for i in range(0, n_data, 1024)], axis=1)
    data = (eval_ids, eval_mask, eval_targets) if exhaustive else ()
    weights = jnp.asarray(feature_weights(params, shape, weighting))
    pca_rows = None
    if init == "pca":  # the principal directions of the loss's own weighted residual
        pca_rows = (eval_targets * eval_mask[None, :, :, None]
                    * jnp.sqrt(weights)[:, None, None, :]).reshape(-1, width)
    projection = _initial_projection(key_init, width, d, init, hidden_width, shape, pca_rows)
    hyper = jnp.asarray([learning_rate, steps, output_weight, reconstruction_weight],
                        jnp.float32)

    def measure(proj):
        output_loss, reconstruction, agreement = (float(v) for v in evaluate_projection(
            params, eval_plan, proj, eval_ids, eval_mask, eval_targets, weights))
        total = output_weight * output_loss + reconstruction_weight * reconstruction
        return total, output_loss, reconstruction, agreement

    opt_state = make_optimiser(hyper).init(projection)
    bar = StepProgress(f"compress {model.output} to d={d}", steps) if progress else None
    scores = measure(projection)
    best, best_scores, best_loss = projection, scores, scores[0]
    history = [(0, time.perf_counter() - started, scores[0], scores[3])]
    done, stale, stopped = 0, 0, "budget"
    key = key_data
    try:
        while True:
            if scores[3] >= target_agreement:
                stopped = "target"
                break
            if done >= steps:
                break
            count = min(eval_every, steps - done)
            projection, opt_state, key = train_steps(projection, opt_state, key, count, hyper,
                                                      params, data, weights, setup=setup)
            done += count
            scores = measure(projection)
            history.append((done, time.perf_counter() - started, scores[0], scores[3]))
            if bar:
                bar.update(done, loss=scores[0], agreement=scores[3])
            if (scores[3], -scores[0]) > (best_scores[3], -best_scores[0]):
                best, best_scores = projection, scores
            if scores[0] < best_loss * (1 - PLATEAU):
                best_loss, stale = scores[0], 0
            else:
                stale += 1
                if stale >= patience:
                    stopped = "plateau"
                    break
    finally:
        if bar:  # also on Ctrl-C: what is printed next starts on a line of its own
            bar.close()
    info = CompressionInfo(
        d=d, d_model=width, seed=seed, nonlinear=bool(nonlinear), hidden=hidden_width,
        init=init, steps=done, max_steps=steps, batch_size=batch_size,
        learning_rate=float(learning_rate), output_weight=float(output_weight),
        reconstruction_weight=float(reconstruction_weight), exhaustive=exhaustive,
        training_inputs=n_data, stopped=stopped, agreement=best_scores[3],
        loss=best_scores[0], output_loss=best_scores[1], reconstruction_loss=best_scores[2],
        seconds=time.perf_counter() - started, history=tuple(history), weighting=weighting,
    )
    readers = {name: {k: np.asarray(v, np.float32) for k, v in r.items()}
               for name, r in best.get("readers", {}).items()} or None
    return CompressedModel(model, np.asarray(best["W"], np.float32), readers, info)
