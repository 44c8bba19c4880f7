"""What compression minimises and how one training step runs: the targets from the exact
model, the output and reconstruction losses, each feature's weight by how much the frozen
weights that read it amplify it (`feature_weights`), and the jitted Adam steps."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.errors import (
    InvalidInputError,
)
from rasp_compiler.model.forward import build_forward
from rasp_compiler.superposition.compressed_forward import (
    NONE_THRESHOLD,
    NUMERICAL_ATOL,
    NUMERICAL_RTOL,
    compressed_forward,
    read_hooks,
    target_hooks,
)

EXHAUSTIVE_LIMIT = 4096  # train (and evaluate) on every input when there are at most this many
OUTPUT_LOGIT_SCALE = 10.0  # a clean one-hot readout is a confident softmax: loss ~0 when exact
FINAL_LEARNING_RATE = 0.05  # the cosine schedule ends at this share of the learning rate
WEIGHTINGS = ("uniform", "use")


@dataclass(frozen=True)
class TrainingSetup:
    """Everything static about one training run: jitted functions are compiled once per setup
    (the same model and settings in one process reuse the compiled code)."""

    shape: Any  # ModelShape
    out_indices: tuple[int, ...]
    out_coefficients: tuple[float, ...]
    numerical: bool
    vocab_size: int
    max_seq_len: int
    mode: str  # "full" (every input each step), "pick" (random batches of them), "random"
    batch_size: int

    def for_evaluation(self) -> "TrainingSetup":
        """The setup with what only training uses (how batches are drawn) blanked: the
        evaluation's compiled functions are then shared by runs that differ only in that."""
        return replace(self, mode="", batch_size=0)


@functools.lru_cache(maxsize=64)
def base_apply(shape):
    """The uncompressed forward (with cache) of a shape: one function per shape, so models
    compiled alike share every jitted training function."""

    return build_forward(shape, with_cache=True).apply


def make_optimiser(hyper):
    """Adam on a cosine-decayed learning rate (to FINAL_LEARNING_RATE of it at the last
    step), gradients clipped to norm 1. `hyper` = [learning rate, steps, ...] is traced, so
    neither recompiles the training step."""
    import optax

    def schedule(count):
        progress = jnp.minimum(count / jnp.maximum(hyper[1], 1.0), 1.0)
        decay = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return hyper[0] * (FINAL_LEARNING_RATE + (1.0 - FINAL_LEARNING_RATE) * decay)

    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def exact_targets(params, setup: TrainingSetup, ids, mask):
    """The uncompressed residual at every read [R, B, T, D] (no gradient flows into it)."""
    _, cache = base_apply(setup.shape)(params, None, ids, mask)
    hooks = target_hooks(setup.shape)
    return jax.lax.stop_gradient(jnp.stack([cache[name] for name in hooks]))


def objective(params, setup: TrainingSetup, projection, ids, mask, targets, weights):
    """(output loss, reconstruction loss, agreement) of `projection` on one batch, given the
    uncompressed model's residuals at the reads (`targets`) and each read's per-feature
    reconstruction weights [R, D] (`feature_weights`)."""
    reads, _ = compressed_forward(params, setup.shape, projection, ids, mask, with_cache=False)
    valid = mask.astype(jnp.float32)  # BOS and tokens; padding excluded
    tokens = valid.at[:, 0].set(0.0)
    reconstruction = sum(jnp.sum(jnp.sum(w * (x - t) ** 2, axis=-1) * valid) for x, t, w in
                         zip(reads, targets, weights)) / (jnp.sum(valid) * len(reads))
    index = np.asarray(setup.out_indices, np.int32)
    got, want = reads[-1][..., index], targets[-1][..., index]
    if setup.numerical:
        coefficients = np.asarray(setup.out_coefficients, np.float32)
        got_n, want_n = got @ coefficients, want @ coefficients
        # In units of the tolerance: an error at NUMERICAL_ATOL costs 1, as much as a
        # categorical readout that is about to pick the wrong value.
        error = (got_n - want_n) / NUMERICAL_ATOL
        output_loss = jnp.sum(error ** 2 * tokens) / jnp.sum(tokens)
        right = jnp.abs(got_n - want_n) <= NUMERICAL_ATOL + NUMERICAL_RTOL * jnp.abs(want_n)
    else:
        # Classes: the output's values, then None, whose logit is the decoding threshold:
        # the softmax's argmax is exactly what `decode_nearest` reads.
        want_class = nearest_class(want)
        none = jnp.full(got.shape[:-1] + (1,), NONE_THRESHOLD, got.dtype)
        logp = jax.nn.log_softmax(OUTPUT_LOGIT_SCALE * jnp.concatenate([got, none], -1), -1)
        target = jnp.where(want_class >= 0, want_class, got.shape[-1])
        picked = jnp.take_along_axis(logp, target[..., None], -1)[..., 0]
        output_loss = -jnp.sum(picked * tokens) / jnp.sum(tokens)
        right = nearest_class(got) == want_class
    agreement = jnp.sum(right * tokens) / jnp.sum(tokens)
    return output_loss, reconstruction, agreement


def nearest_class(values):
    """The index of the largest readout entry, or -1 (None) when it is below NONE_THRESHOLD."""
    return jnp.where(values.max(axis=-1) >= NONE_THRESHOLD, values.argmax(axis=-1), -1)


def training_batch(setup: TrainingSetup, key, params, data):
    """One training batch (ids, mask, targets): all of `data`, a random pick of it, or fresh
    random inputs with their targets computed here."""
    if setup.mode == "full":
        return data
    if setup.mode == "pick":
        ids, mask, targets = data
        pick = jax.random.randint(key, (setup.batch_size,), 0, ids.shape[0])
        return ids[pick], mask[pick], targets[:, pick]
    ids, mask = random_batch(key, setup.vocab_size, setup.max_seq_len, setup.batch_size)
    return ids, mask, exact_targets(params, setup, ids, mask)


@functools.partial(jax.jit, static_argnames="setup")
def train_steps(projection, opt_state, key, count, hyper, params, data, weights,
                 setup: TrainingSetup):
    """`count` optimiser steps in one call (a device-side loop: no Python per step).
    `hyper`: [learning rate, steps, output weight, reconstruction weight]."""
    import optax

    optimiser = make_optimiser(hyper)

    def loss(proj, ids, mask, targets):
        output_loss, reconstruction, _ = objective(params, setup, proj, ids, mask, targets,
                                                    weights)
        return hyper[2] * output_loss + hyper[3] * reconstruction

    def body(_, carry):
        proj, opt_state, key = carry
        key, sub = jax.random.split(key)
        grads = jax.grad(loss)(proj, *training_batch(setup, sub, params, data))
        updates, opt_state = optimiser.update(grads, opt_state, proj)
        return optax.apply_updates(proj, updates), opt_state, key

    return jax.lax.fori_loop(0, count, body, (projection, opt_state, key))


evaluate_projection = jax.jit(objective, static_argnames="setup")


def feature_weights(params, shape, weighting: str) -> np.ndarray:
    """Per read of `read_hooks` and per feature, how much an error in that feature costs
    in the reconstruction loss [R, D].

    "uniform": 1 everywhere (every feature counts the same at every read).
    "use": 1 plus the feature's downstream gain at that read, so an error is weighed by what
    the frozen weights make of it. A compiled MLP that turns a number into categories reads
    it with a gain in the hundreds (sort_freq's first MLP reads `hist.attn` with a row norm
    of 244): an error of 0.01 there shifts its pre-activations by 2.4, while the same error in
    a feature nothing reads costs nothing. The gain of feature i:
      - attention: per head, the squared norms of row i and of column i of
        W_QK = W_q W_k^T (an error in a query or key feature moves the scores by that much)
        plus the squared norm of row i of W_OV = W_v W_o (what it changes in the write);
      - MLP: the squared norm of row i of its first layer (the pre-activations it moves);
      - readout: 0 (the output loss already weighs the output's features).
    """
    if weighting not in WEIGHTINGS:
        raise InvalidInputError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got "
                                f"{weighting!r}")
    width = shape.d_model
    rows = []
    for name in read_hooks(shape):
        gain = np.zeros(width, np.float64)
        if weighting == "use" and name != "hook_readout_in":
            l = int(name.split(".")[1])
            layer, prefix = shape.layers[l], f"layer_{l}"
            if name.endswith("hook_attn_in"):
                w_q, w_k, w_v = (np.asarray(params[f"{prefix}/attn/{n}"]["w"], np.float64)
                                 for n in ("query", "key", "value"))
                w_o = np.asarray(params[f"{prefix}/attn/linear"]["w"], np.float64)
                dk, dv = layer.key_size, layer.value_size
                for h in range(layer.heads):
                    qk = w_q[:, h * dk:(h + 1) * dk] @ w_k[:, h * dk:(h + 1) * dk].T
                    ov = w_v[:, h * dv:(h + 1) * dv] @ w_o[h * dv:(h + 1) * dv]
                    gain += (qk ** 2).sum(1) + (qk ** 2).sum(0) + (ov ** 2).sum(1)
            else:
                gain += (np.asarray(params[f"{prefix}/mlp/linear_1"]["w"], np.float64) ** 2).sum(1)
        rows.append(1.0 + gain)
    return np.asarray(rows, np.float32)
targets_jit = jax.jit(exact_targets, static_argnames="setup")


def input_count(vocab_size: int, max_seq_len: int) -> int:
    return sum(vocab_size ** n for n in range(1, max_seq_len + 1))


def every_input(model) -> tuple[np.ndarray, np.ndarray]:
    """Every input of 1..max_seq_len tokens, packed to the full length (BOS + max_seq_len)."""
    rows = [list(row) for n in range(1, model.max_seq_len + 1)
            for row in itertools.product(range(len(model.vocab)), repeat=n)]
    return model.runtime.pack(rows, model.max_seq_len + 1, len(rows))


def random_batch(key, vocab_size: int, max_seq_len: int, batch: int):
    """`batch` random inputs on the device: lengths uniform in 1..max_seq_len, tokens uniform
    (ids as the runtime packs them: BOS first, PAD after the tokens)."""
    length = max_seq_len + 1
    key_tokens, key_lengths = jax.random.split(key)
    tokens = jax.random.randint(key_tokens, (batch, length), 0, vocab_size)
    lengths = jax.random.randint(key_lengths, (batch, 1), 1, max_seq_len + 1)
    mask = jnp.arange(length)[None] <= lengths
    ids = jnp.where(mask, tokens, vocab_size + 1).at[:, 0].set(vocab_size)
    return ids.astype(jnp.int32), mask
