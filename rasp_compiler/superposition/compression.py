"""Compression: a compiled model whose residual stream is squeezed through a learnt projection.

Over 600 lines on purpose for now: the compressed model, its training loop and its
save/load; it is split by job in issue 24's layered package, which moves every module in
one step with the weights unchanged.

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

import functools
import hashlib
import itertools
import json
import math
import time
from dataclasses import dataclass, replace
from numbers import Real
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.errors import (
    InvalidInputError,
    InvalidProgramError,
    LoadError,
    SaveError,
    describe_bytes,
)
from rasp_compiler.model.forward import PRECISION, attention_mask, layer_cache
from rasp_compiler.model.hooks import hook
from rasp_compiler.progress import StepProgress

EXHAUSTIVE_LIMIT = 4096  # train (and evaluate) on every input when there are at most this many
EVAL_SAMPLES = 1024  # otherwise: a fixed random sample of this many inputs to evaluate on
TARGET_BYTES = 256 * 1024**2  # the evaluation set's stored targets stay under this
MAX_BATCH_BYTES = 16 * 1024**3  # a training batch's stored reads, at most (a large GPU's memory)
OUTPUT_LOGIT_SCALE = 10.0  # a clean one-hot readout is a confident softmax: loss ~0 when exact
NONE_THRESHOLD = 0.5  # a categorical readout whose largest entry is below this reads as None
NUMERICAL_ATOL = 0.01  # a compressed model is approximate: numbers count as right within
NUMERICAL_RTOL = 0.01  # NUMERICAL_ATOL + NUMERICAL_RTOL * |expected|
FINAL_LEARNING_RATE = 0.05  # the cosine schedule ends at this share of the learning rate
# The recipe before the defaults kept the program (issue 26): linear reads, every feature
# weighted alike. The simplest superposed model; benchmarks that measured it name it.
LINEAR_RECIPE = {"nonlinear": False, "learning_rate": 1e-2, "output_weight": 1.0,
                 "patience": 10, "weighting": "uniform"}
PLATEAU = 0.01  # an evaluation improves on the best loss when it is this much (relative) lower
FORMAT_VERSION = 1
CONFIG_FILE = "compression.json"
ARRAYS_FILE = "compression.npz"
BASE_FOLDER = "base"
INITS = ("random", "pca", "identity")
WEIGHTINGS = ("uniform", "use")


@dataclass(frozen=True)
class CompressionInfo:
    """How a compressed model was trained, and how well it did (saved with it)."""

    d: int
    d_model: int
    seed: int
    nonlinear: bool
    hidden: int  # width of each read's ReLU decoder (0: linear reads)
    init: str
    steps: int  # steps taken
    max_steps: int
    batch_size: int
    learning_rate: float
    output_weight: float
    reconstruction_weight: float
    exhaustive: bool  # trained on every input (else on fresh random inputs each step)
    training_inputs: int  # distinct inputs trained on (exhaustive) or evaluated on (sampled)
    stopped: str  # "target" (agreement reached), "plateau" (early stop) or "budget"
    agreement: float  # per-position agreement with the uncompressed model on the eval set
    loss: float
    output_loss: float
    reconstruction_loss: float
    seconds: float
    # (step, seconds since the start, loss, agreement) at every evaluation
    history: tuple[tuple[int, float, float, float], ...] = ()
    # the reconstruction loss's weights (`feature_weights`); saves from before the option
    # were trained with "uniform"
    weighting: str = "uniform"

    def reached(self, agreement: float) -> tuple[int, float] | None:
        """(step, seconds) of the first evaluation at or above `agreement`; None if never."""
        for step, seconds, _, measured in self.history:
            if measured >= agreement:
                return step, seconds
        return None


@dataclass(frozen=True)
class CompressionAccuracy:
    """A compressed model against the reference evaluator: rates, not a pass/fail verdict."""

    inputs_checked: int
    positions_checked: int
    undefined: int  # inputs on which the evaluator has no answer (not counted)
    position_accuracy: float  # positions decoded to the evaluator's value
    sequence_accuracy: float  # inputs right at every position
    mismatches: tuple  # the first few (input, position, expected, got)

    def __str__(self) -> str:
        lines = [
            f"{self.position_accuracy:.2%} of {self.positions_checked:,} positions and "
            f"{self.sequence_accuracy:.2%} of {self.inputs_checked:,} inputs right "
            f"({self.undefined} undefined inputs skipped)"
        ]
        lines += [f"  input {list(xs)} position {p}: expected {e!r}, got {g!r}"
                  for xs, p, e, g in self.mismatches]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- forward


def _mm(a, b):
    return jnp.matmul(a, b, precision=PRECISION)


def read_hooks(shape) -> list[str]:
    """The reads that matter, in order: the input of every non-empty sublayer (an attention
    sublayer without heads or an MLP of width 0 reads nothing), then the readout's. Only
    these get a nonlinear decoder and count in the reconstruction loss."""
    names = []
    for l, layer in enumerate(shape.layers):
        if layer.heads:
            names.append(hook(l, "hook_attn_in"))
        if layer.mlp_hidden:
            names.append(hook(l, "hook_mlp_in"))
    return names + ["hook_readout_in"]


def _target_hooks(shape) -> list[str]:
    """The uncompressed residual each read of `read_hooks` is compared with."""
    last = hook(len(shape.layers) - 1, "hook_resid_post")
    return [name.replace("hook_attn_in", "hook_resid_pre").replace("hook_mlp_in",
                                                                    "hook_resid_mid")
            if name != "hook_readout_in" else last for name in read_hooks(shape)]


def compressed_forward(params: dict, shape, projection: dict, ids, mask, with_cache: bool):
    """The compressed model: (token ids [B, T], key mask [B, T]) -> the reads (and cache).

    `projection` holds "W" [D, d] and, for a nonlinear model, "readers": per read of
    `read_hooks` {"w1" [d, hidden], "b1" [hidden], "w2" [hidden, D]}. Returns the reads
    [B, T, D] in `read_hooks` order (the last is what the readout reads) and the cache
    (TransformerLens hook names; residuals, embeddings and sublayer outputs compressed
    [.., d]; q, k, v, patterns, MLP activations and the reads in the original features).

    A sublayer's weights are folded into W (q = h @ (W.T @ W_q), the write z @ (W_o @ W)),
    so no [.., D] product is formed beyond the reads themselves: the same numbers, about
    half the arithmetic at d = D / 2.
    """
    w = projection["W"]
    readers = projection.get("readers") or {}
    batch, length = ids.shape
    cache: dict[str, jnp.ndarray] = {}
    reads = []

    def read(h, name):
        """The read x [.., D] and `into(M)` = x @ M, computed from h [.., d] directly."""
        hidden = None
        x = _mm(h, w.T)
        if name in readers:
            r = readers[name]
            hidden = jax.nn.relu(_mm(h, r["w1"]) + r["b1"])
            x = x + _mm(hidden, r["w2"])
        if name in read_names:
            reads.append(x)
        if with_cache:
            cache[name] = x

        def into(m):
            out = _mm(h, _mm(w.T, m))
            return out if hidden is None else out + _mm(hidden, _mm(readers[name]["w2"], m))

        return into

    read_names = set(read_hooks(shape))
    embed = params["token_embed"]["embeddings"][ids]
    pos_embed = jnp.broadcast_to(params["pos_embed"]["embeddings"][:length][None], embed.shape)
    embed_c, pos_c = _mm(embed, w), _mm(pos_embed, w)
    h = embed_c + pos_c
    if with_cache:
        cache.update({"hook_embed": embed_c, "hook_pos_embed": pos_c})
    allowed = attention_mask(mask, shape.causal)
    for l, layer in enumerate(shape.layers):
        prefix, heads, dk, dv = f"layer_{l}", layer.heads, layer.key_size, layer.value_size
        resid_pre = h
        into = read(h, hook(l, "hook_attn_in"))
        qkv = into(jnp.concatenate([params[f"{prefix}/attn/{name}"]["w"]
                                    for name in ("query", "key", "value")], axis=1))
        q = qkv[..., : heads * dk].reshape(batch, length, heads, dk)
        k = qkv[..., heads * dk: 2 * heads * dk].reshape(batch, length, heads, dk)
        v = qkv[..., 2 * heads * dk:].reshape(batch, length, heads, dv)
        scores = jnp.einsum("bqhe,bkhe->bhqk", q, k, precision=PRECISION)
        scores = jnp.where(allowed, scores, -jnp.inf)
        pattern = jax.nn.softmax(scores, axis=-1)
        z = jnp.einsum("bhqk,bkhe->bqhe", pattern, v, precision=PRECISION)
        attn_out = _mm(z.reshape(batch, length, heads * dv),
                       _mm(params[f"{prefix}/attn/linear"]["w"], w))
        h = h + attn_out
        resid_mid = h
        into = read(h, hook(l, "hook_mlp_in"))
        pre = into(params[f"{prefix}/mlp/linear_1"]["w"])
        post = jax.nn.relu(pre)
        mlp_out = _mm(post, _mm(params[f"{prefix}/mlp/linear_2"]["w"], w))
        h = h + mlp_out
        if with_cache:
            cache.update(layer_cache(l, (resid_pre, q, k, v, scores, pattern, z, attn_out,
                                         resid_mid, pre, post, mlp_out, h)))
    read(h, "hook_readout_in")
    return reads, cache


# ---------------------------------------------------------------------------- objective


@dataclass(frozen=True)
class _Plan:
    """Everything static about one training run: jitted functions are compiled once per plan
    (the same model and settings in one process reuse the compiled code)."""

    shape: Any  # ModelShape
    out_indices: tuple[int, ...]
    out_coefficients: tuple[float, ...]
    numerical: bool
    vocab_size: int
    max_seq_len: int
    mode: str  # "full" (every input each step), "pick" (random batches of them), "random"
    batch_size: int

    def for_evaluation(self) -> "_Plan":
        """The plan with what only training uses (how batches are drawn) blanked: the
        evaluation's compiled functions are then shared by runs that differ only in that."""
        return replace(self, mode="", batch_size=0)


@functools.lru_cache(maxsize=64)
def _base_apply(shape):
    """The uncompressed forward (with cache) of a shape: one function per shape, so models
    compiled alike share every jitted training function."""
    from rasp_compiler.model.forward import build_forward

    return build_forward(shape, with_cache=True).apply


def _optimiser(hyper):
    """Adam on a cosine-decayed learning rate (to FINAL_LEARNING_RATE of it at the last
    step), gradients clipped to norm 1. `hyper` = [learning rate, steps, ...] is traced, so
    neither recompiles the training step."""
    import optax

    def schedule(count):
        progress = jnp.minimum(count / jnp.maximum(hyper[1], 1.0), 1.0)
        decay = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return hyper[0] * (FINAL_LEARNING_RATE + (1.0 - FINAL_LEARNING_RATE) * decay)

    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def _targets(params, plan: _Plan, ids, mask):
    """The uncompressed residual at every read [R, B, T, D] (no gradient flows into it)."""
    _, cache = _base_apply(plan.shape)(params, None, ids, mask)
    hooks = _target_hooks(plan.shape)
    return jax.lax.stop_gradient(jnp.stack([cache[name] for name in hooks]))


def _objective(params, plan: _Plan, projection, ids, mask, targets, weights):
    """(output loss, reconstruction loss, agreement) of `projection` on one batch, given the
    uncompressed model's residuals at the reads (`_targets`) and each read's per-feature
    reconstruction weights [R, D] (`feature_weights`)."""
    reads, _ = compressed_forward(params, plan.shape, projection, ids, mask, with_cache=False)
    valid = mask.astype(jnp.float32)  # BOS and tokens; padding excluded
    tokens = valid.at[:, 0].set(0.0)
    reconstruction = sum(jnp.sum(jnp.sum(w * (x - t) ** 2, axis=-1) * valid) for x, t, w in
                         zip(reads, targets, weights)) / (jnp.sum(valid) * len(reads))
    index = np.asarray(plan.out_indices, np.int32)
    got, want = reads[-1][..., index], targets[-1][..., index]
    if plan.numerical:
        coefficients = np.asarray(plan.out_coefficients, np.float32)
        got_n, want_n = got @ coefficients, want @ coefficients
        # In units of the tolerance: an error at NUMERICAL_ATOL costs 1, as much as a
        # categorical readout that is about to pick the wrong value.
        error = (got_n - want_n) / NUMERICAL_ATOL
        output_loss = jnp.sum(error ** 2 * tokens) / jnp.sum(tokens)
        right = jnp.abs(got_n - want_n) <= NUMERICAL_ATOL + NUMERICAL_RTOL * jnp.abs(want_n)
    else:
        # Classes: the output's values, then None, whose logit is the decoding threshold:
        # the softmax's argmax is exactly what `decode_nearest` reads.
        want_class = _nearest_class(want)
        none = jnp.full(got.shape[:-1] + (1,), NONE_THRESHOLD, got.dtype)
        logp = jax.nn.log_softmax(OUTPUT_LOGIT_SCALE * jnp.concatenate([got, none], -1), -1)
        target = jnp.where(want_class >= 0, want_class, got.shape[-1])
        picked = jnp.take_along_axis(logp, target[..., None], -1)[..., 0]
        output_loss = -jnp.sum(picked * tokens) / jnp.sum(tokens)
        right = _nearest_class(got) == want_class
    agreement = jnp.sum(right * tokens) / jnp.sum(tokens)
    return output_loss, reconstruction, agreement


def _nearest_class(values):
    """The index of the largest readout entry, or -1 (None) when it is below NONE_THRESHOLD."""
    return jnp.where(values.max(axis=-1) >= NONE_THRESHOLD, values.argmax(axis=-1), -1)


def _batch(plan: _Plan, key, params, data):
    """One training batch (ids, mask, targets): all of `data`, a random pick of it, or fresh
    random inputs with their targets computed here."""
    if plan.mode == "full":
        return data
    if plan.mode == "pick":
        ids, mask, targets = data
        pick = jax.random.randint(key, (plan.batch_size,), 0, ids.shape[0])
        return ids[pick], mask[pick], targets[:, pick]
    ids, mask = _random_inputs(key, plan.vocab_size, plan.max_seq_len, plan.batch_size)
    return ids, mask, _targets(params, plan, ids, mask)


@functools.partial(jax.jit, static_argnames="plan")
def _train_steps(projection, opt_state, key, count, hyper, params, data, weights,
                 plan: _Plan):
    """`count` optimiser steps in one call (a device-side loop: no Python per step).
    `hyper`: [learning rate, steps, output weight, reconstruction weight]."""
    import optax

    optimiser = _optimiser(hyper)

    def loss(proj, ids, mask, targets):
        output_loss, reconstruction, _ = _objective(params, plan, proj, ids, mask, targets,
                                                    weights)
        return hyper[2] * output_loss + hyper[3] * reconstruction

    def body(_, carry):
        proj, opt_state, key = carry
        key, sub = jax.random.split(key)
        grads = jax.grad(loss)(proj, *_batch(plan, sub, params, data))
        updates, opt_state = optimiser.update(grads, opt_state, proj)
        return optax.apply_updates(proj, updates), opt_state, key

    return jax.lax.fori_loop(0, count, body, (projection, opt_state, key))


_evaluate = jax.jit(_objective, static_argnames="plan")


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
_targets_jit = jax.jit(_targets, static_argnames="plan")


# ---------------------------------------------------------------------------- inputs


def _input_count(vocab_size: int, max_seq_len: int) -> int:
    return sum(vocab_size ** n for n in range(1, max_seq_len + 1))


def _every_input(model) -> tuple[np.ndarray, np.ndarray]:
    """Every input of 1..max_seq_len tokens, packed to the full length (BOS + max_seq_len)."""
    rows = [list(row) for n in range(1, model.max_seq_len + 1)
            for row in itertools.product(range(len(model.vocab)), repeat=n)]
    return _pack(len(model.vocab), rows, model.max_seq_len + 1, len(rows))


def _pack(vocab_size: int, rows, length: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Token-id rows as a padded batch, the compiled model's convention: ids [batch, length]
    (BOS = vocab_size first, the tokens, then PAD = vocab_size + 1) and the key mask
    (filler rows keep BOS visible, so no softmax is all masked)."""
    ids = np.full((batch, length), vocab_size + 1, dtype=np.int32)
    mask = np.zeros((batch, length), dtype=bool)
    mask[:, 0] = True
    for b, row in enumerate(rows):
        ids[b, 0] = vocab_size
        ids[b, 1: len(row) + 1] = row
        mask[b, : len(row) + 1] = True
    return ids, mask


def _bucket_length(n_tokens: int, max_seq_len: int) -> int:
    """Padded length (BOS included) for n tokens: a power of two of at least 8, at most the
    model's length; inputs of similar length share one compiled shape."""
    return min(max(8, 1 << math.ceil(math.log2(n_tokens + 1))), max_seq_len + 1)


def _random_inputs(key, vocab_size: int, max_seq_len: int, batch: int):
    """`batch` random inputs on the device: lengths uniform in 1..max_seq_len, tokens uniform
    (ids as `_pack` makes them: BOS first, PAD after the tokens)."""
    length = max_seq_len + 1
    key_tokens, key_lengths = jax.random.split(key)
    tokens = jax.random.randint(key_tokens, (batch, length), 0, vocab_size)
    lengths = jax.random.randint(key_lengths, (batch, 1), 1, max_seq_len + 1)
    mask = jnp.arange(length)[None] <= lengths
    ids = jnp.where(mask, tokens, vocab_size + 1).at[:, 0].set(vocab_size)
    return ids.astype(jnp.int32), mask


# ---------------------------------------------------------------------------- training


def check_width(model, d) -> None:
    """Refuse a compressed width that is not a whole number in 1..d_model."""
    width = model.shape.d_model
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise InvalidInputError(f"d must be a whole number of dimensions, got {d!r}")
    if not 1 <= d <= width:
        raise InvalidInputError(
            f"d={d}: the compressed residual must have 1..{width} dimensions (d_model of the "
            f"{model.output} model is {width}); pick d in that range"
        )


def residual_hook_names(depth: int) -> list[str]:
    """The hooks holding a compressed model's residual [.., d], layer by layer."""
    return [hook(l, f"hook_resid_{part}") for l in range(depth)
            for part in ("pre", "mid", "post")]


def _check_options(model, d, seed, steps, batch_size, learning_rate, output_weight,
                   reconstruction_weight, hidden, init, target_agreement, eval_every,
                   patience, weighting) -> None:
    from rasp_compiler.model.compiled import CompiledModel
    from rasp_compiler.model.constants import DEFAULT_MAX_PARAMETERS
    from rasp_compiler.verify.inputs import check_seed

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
    count = _input_count(vocab_size, model.max_seq_len)
    exhaustive = count <= EXHAUSTIVE_LIMIT and count * per_input <= TARGET_BYTES
    if exhaustive:
        eval_ids, eval_mask = (jnp.asarray(a) for a in _every_input(model))
    else:
        eval_ids, eval_mask = _random_inputs(key_eval, vocab_size, model.max_seq_len,
                                             min(EVAL_SAMPLES, max(64, TARGET_BYTES // per_input)))
    n_data = int(eval_ids.shape[0])
    plan = _Plan(
        shape=shape,
        out_indices=tuple(int(i) for i in readout.indices),
        out_coefficients=tuple(float(c) for c in readout.coefficients) if readout.numerical
        else (),
        numerical=readout.numerical, vocab_size=vocab_size, max_seq_len=model.max_seq_len,
        mode="random" if not exhaustive else "full" if n_data <= batch_size else "pick",
        batch_size=batch_size)
    eval_plan = plan.for_evaluation()
    # Every evaluation input's targets, computed once (at most tens of MB): training on
    # every input then runs one forward per step.
    eval_targets = jnp.concatenate([
        _targets_jit(params, eval_plan, eval_ids[i: i + 1024], eval_mask[i: i + 1024])
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
        output_loss, reconstruction, agreement = (float(v) for v in _evaluate(
            params, eval_plan, proj, eval_ids, eval_mask, eval_targets, weights))
        total = output_weight * output_loss + reconstruction_weight * reconstruction
        return total, output_loss, reconstruction, agreement

    opt_state = _optimiser(hyper).init(projection)
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
            projection, opt_state, key = _train_steps(projection, opt_state, key, count, hyper,
                                                      params, data, weights, plan=plan)
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


# ---------------------------------------------------------------------------- the model


class CompressedModel:
    """A compiled model run through a compressed residual stream; behaves like the model.

    `base` is the exact compiled model, `W` [d_model, d] the learnt projection, `readers`
    the nonlinear reads' decoders (None when linear), `info` the training facts.
    """

    def __init__(self, base, W: np.ndarray, readers: dict | None, info: CompressionInfo):
        self.base = base
        self.W = np.asarray(W, np.float32)
        self.readers = readers
        self.info = info
        self._projection: dict[str, Any] = {"W": jnp.asarray(self.W)}
        if readers:
            self._projection["readers"] = jax.tree_util.tree_map(jnp.asarray, readers)

    def _forward(self, ids, mask):
        return _final_read(self.base.params, self.base.shape, self._projection, ids, mask)

    def _forward_cached(self, ids, mask):
        return _all_hooks(self.base.params, self.base.shape, self._projection, ids, mask)

    # -------------------------------------------------------------- facts

    @property
    def d(self) -> int:
        return self.W.shape[1]

    @property
    def d_model(self) -> int:
        return self.W.shape[0]

    @property
    def output(self) -> str:
        return self.base.output

    @property
    def name(self) -> str:
        """The program's name where known (the base model's `source`), else the output's."""
        return self.base.name

    @property
    def vocab(self) -> tuple:
        return self.base.vocab

    @property
    def max_seq_len(self) -> int:
        return self.base.max_seq_len

    @property
    def causal(self) -> bool:
        return self.base.causal

    @property
    def residual_labels(self) -> list[str]:
        """The original features (`sop:value`), one per row of W."""
        return self.base.residual_labels

    @property
    def residual_hooks(self) -> list[str]:
        """Hooks holding the compressed residual [.., d]: where an SAE can be trained."""
        return residual_hook_names(self.base.depth)

    def interference(self) -> np.ndarray:
        """W @ W.T [D, D]: entry (i, j) is how much reading feature i picks up of feature j
        (the identity for an uncompressed model; off-diagonal entries are superposition)."""
        return self.W @ self.W.T

    def feature_directions(self):
        """The ground truth: every original feature's direction in the compressed space and
        (through `activations`) its true value at any hook for any input."""
        from rasp_compiler.superposition.experiments import FeatureDirections

        return FeatureDirections(tuple(self.residual_labels), self.W.copy(), self)

    def __repr__(self) -> str:
        kind = f"nonlinear reads (hidden {self.info.hidden})" if self.readers else "linear"
        return (f"CompressedModel({self.output!r}: residual {self.d_model} -> {self.d}, {kind}, "
                f"{self.info.steps} steps, agreement {self.info.agreement:.2%} with the exact "
                f"model)")

    def _repr_html_(self) -> str:
        """A notebook's display: a compact summary."""
        from rasp_compiler.model.html import compressed_model_html

        return compressed_model_html(self)

    def show(self, tokens=None, *more_inputs, height: int = 720):
        """The explorer for `tokens`, inline in a notebook (see rasp_compiler.explorer.notebook)."""
        from rasp_compiler.explorer.notebook import show

        return show(self, tokens, *more_inputs, height=height)

    def summary(self) -> str:
        i = self.info
        return "\n".join([
            repr(self),
            f"trained {i.steps:,}/{i.max_steps:,} steps in {i.seconds:.1f}s, stopped: "
            f"{i.stopped}; on {'every input' if i.exhaustive else 'random inputs'} "
            f"({i.training_inputs:,} evaluated)",
            f"loss {i.loss:.4g} = {i.output_weight:g} x output {i.output_loss:.4g} + "
            f"{i.reconstruction_weight:g} x reconstruction {i.reconstruction_loss:.4g}",
        ])

    # -------------------------------------------------------------- running

    def _readout(self, label: str):
        if label not in self.base.readouts:
            raise InvalidInputError(f"{label!r} has no readout in this model; readable SOps: "
                                    f"{', '.join(self.base.readouts)}")
        return self.base.readouts[label]

    def _packed_buckets(self, rows: list[list[int]], chunk: int = 1024):
        """(members, ids, mask) per padded batch, grouped like the compiled model's buckets."""
        buckets: dict[int, list[int]] = {}
        for b, row in enumerate(rows):
            buckets.setdefault(_bucket_length(len(row), self.max_seq_len), []).append(b)
        for length, members in sorted(buckets.items()):
            for start in range(0, len(members), chunk):
                part = members[start: start + chunk]
                padded = max(8, 1 << math.ceil(math.log2(len(part))))
                ids, mask = _pack(len(self.vocab), [rows[b] for b in part], length, padded)
                yield part, ids, mask

    def residual(self, batch, *, ids: bool = False) -> list[np.ndarray]:
        """Per input, what the readout reads: the final residual decompressed [T, D]."""
        rows = self.base.encode_ids(batch) if ids else self.base.encode(batch)
        out: list[np.ndarray | None] = [None] * len(rows)
        for members, packed, mask in self._packed_buckets(rows):
            reads = np.asarray(self._forward(packed, mask))
            for i, b in enumerate(members):
                out[b] = reads[i, : len(rows[b]) + 1]
        return out

    def run(self, batch, *, label: str | None = None, ids: bool = False) -> list[list]:
        """Decoded outputs (or SOp `label`), one list per input, no BOS.

        Compressed readouts are never clean one-hots, so a categorical value decodes to the
        largest readout entry (None when it is below NONE_THRESHOLD), a numerical one to
        its linear form.
        """
        readout = self._readout(label or self.output)
        return [decode_nearest(readout, r[1:, list(readout.indices)])
                for r in self.residual(batch, ids=ids)]

    def run_with_cache(self, batch, *, ids: bool = False):
        """Outputs and every activation under the compiled model's hook names, all inputs
        padded to one length. The residual hooks (`hook_resid_*`, `hook_embed`,
        `hook_pos_embed`, `hook_attn_out`, `hook_mlp_out`) hold the compressed [.., d]
        stream; the reads `blocks.{l}.hook_attn_in`, `blocks.{l}.hook_mlp_in` and
        `hook_readout_in` the decompressed [.., D] one the frozen weights see."""
        from rasp_compiler.model.compiled import ActivationCache

        rows = self.base.encode_ids(batch) if ids else self.base.encode(batch)
        if not rows:
            raise InvalidInputError("run_with_cache got an empty batch; give at least one "
                                    "sequence")
        length = _bucket_length(max(len(r) for r in rows), self.max_seq_len)
        readout = self._readout(self.output)
        outputs: list[list] = []
        activations: dict[str, np.ndarray] = {}
        chunk = 1024
        for start in range(0, len(rows), chunk):
            part = rows[start: start + chunk]
            packed, mask = _pack(len(self.vocab), part, length, min(chunk, len(rows)))
            cache = self._forward_cached(packed, mask)
            final = np.asarray(cache["hook_readout_in"])
            outputs += [decode_nearest(readout, final[b, 1: len(r) + 1][:, list(readout.indices)])
                        for b, r in enumerate(part)]
            for name, value in cache.items():
                value = np.asarray(value)
                if name not in activations:
                    activations[name] = np.empty((len(rows),) + value.shape[1:], value.dtype)
                activations[name][start: start + len(part)] = value[: len(part)]
        return outputs, ActivationCache(activations, [len(r) for r in rows])

    # -------------------------------------------------------------- accuracy

    def accuracy(self, *, exhaustive_up_to: int | None = None, samples: int | None = None,
                 inputs=None, seed: int = 0, program=None, atol: float = NUMERICAL_ATOL,
                 rtol: float = NUMERICAL_RTOL, chunk: int = 1024) -> CompressionAccuracy:
        """The share of positions (and of whole inputs) decoded to the evaluator's value.

        Inputs as in `verify`: every input up to `exhaustive_up_to` tokens, `samples`
        random ones, and/or `inputs`; with none given, every input when there are at most
        EXHAUSTIVE_LIMIT, else 1000 random ones. `program` defaults to the compiled
        model's (a loaded model has none: pass it). Categorical values must be the same
        value; numbers within `atol + rtol * |expected|`.
        """
        from rasp_compiler.errors import EvaluationError
        from rasp_compiler.lang import rasp
        from rasp_compiler.lang.evaluator import evaluate_all
        from rasp_compiler.lang.graph import build_graph
        from rasp_compiler.verify.inputs import all_inputs, random_inputs
        from rasp_compiler.verify.report import values_match

        program = program if program is not None else self.base.program
        if program is None:
            raise InvalidProgramError(
                "accuracy needs the RASP program to compare with (a loaded model does not keep "
                "it): pass program=, e.g. load_program(name).make(model.max_seq_len)"
            )
        if exhaustive_up_to is None and samples is None and inputs is None:
            if _input_count(len(self.vocab), self.max_seq_len) <= EXHAUSTIVE_LIMIT:
                exhaustive_up_to = self.max_seq_len
            else:
                samples = 1000
        if exhaustive_up_to is not None and not 1 <= exhaustive_up_to <= self.max_seq_len:
            raise InvalidInputError(f"exhaustive_up_to must be in 1..{self.max_seq_len}, got "
                                    f"{exhaustive_up_to}")
        streams = []
        if exhaustive_up_to is not None:
            streams.append(all_inputs(self.vocab, exhaustive_up_to))
        if samples is not None:
            streams.append(random_inputs(self.vocab, self.max_seq_len, samples, seed))
        if inputs is not None:
            streams.append([tuple(xs) for xs in inputs])
        graph = build_graph(program)
        categorical = rasp.is_categorical(graph.output_expr)
        checked = positions = right_positions = right_inputs = undefined = 0
        mismatches = []
        stream = itertools.chain.from_iterable(streams)
        while batch := [tuple(xs) for xs in itertools.islice(stream, chunk)]:
            outputs = self.run([list(xs) for xs in batch])
            for xs, got_row in zip(batch, outputs):
                try:
                    expected_row = evaluate_all(graph, list(xs), causal=self.causal).output_values
                except EvaluationError:
                    undefined += 1
                    continue
                checked += 1
                all_right = True
                for position, (got, expected) in enumerate(zip(got_row, expected_row)):
                    positions += 1
                    if values_match(got, expected, rtol, atol, categorical):
                        right_positions += 1
                    else:
                        all_right = False
                        if len(mismatches) < 10:
                            mismatches.append((xs, position, expected, got))
                right_inputs += all_right
        return CompressionAccuracy(
            inputs_checked=checked, positions_checked=positions, undefined=undefined,
            position_accuracy=right_positions / max(positions, 1),
            sequence_accuracy=right_inputs / max(checked, 1), mismatches=tuple(mismatches))

    # -------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> Path:
        """Write `path/base/` (the compiled model's own save), `path/compression.npz` (W and
        the readers) and `path/compression.json` (the training facts and a checksum)."""
        return save_compressed(self, path)

    @classmethod
    def load(cls, path: str | Path, *, max_parameters: int | None = None) -> "CompressedModel":
        """A compressed model saved by `save`, checked; any problem raises LoadError.
        `max_parameters` bounds what the saved files may declare (as CompiledModel.load)."""
        return load_compressed(path, max_parameters)


@functools.partial(jax.jit, static_argnames="shape")
def _final_read(params, shape, projection, ids, mask):
    return compressed_forward(params, shape, projection, ids, mask, with_cache=False)[0][-1]


@functools.partial(jax.jit, static_argnames="shape")
def _all_hooks(params, shape, projection, ids, mask):
    return compressed_forward(params, shape, projection, ids, mask, with_cache=True)[1]


def decode_nearest(readout, values: np.ndarray) -> list:
    """Decode [n, k] readout columns of a compressed model: the nearest clean value."""
    if readout.numerical:
        numbers = values.astype(np.float64) @ np.asarray(readout.coefficients, np.float64)
        return [float(x) for x in numbers]
    if values.shape[1] == 0:
        return [None] * values.shape[0]
    return [readout.values[int(row.argmax())] if row.max() >= NONE_THRESHOLD else None
            for row in values]


# ---------------------------------------------------------------------------- save / load


def _checksum(data: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the canonical JSON, then each array's name, dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(json.dumps([key, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class _SavedCompression:
    format: int
    info: CompressionInfo
    readers: tuple[str, ...]  # the read hooks with a decoder (empty: linear)


def check_compressed_destination(folder: Path) -> None:
    """Refuse to save onto a file or into a folder holding anything but an earlier save."""
    if folder.exists() and not folder.is_dir():
        raise SaveError(f"cannot save the compressed model to {folder}: it is a file; name a "
                        f"folder (new, empty, or holding an earlier compressed save)")
    if folder.is_dir():
        try:
            entries = sorted(p.name for p in folder.iterdir())
        except OSError as exc:
            raise SaveError(f"cannot save the compressed model to {folder}: {exc}") from exc
        if entries and CONFIG_FILE not in entries:
            raise SaveError(f"cannot save the compressed model to {folder}: the folder holds "
                            f"other files ({', '.join(entries[:3])}) and no compressed model; "
                            f"choose a new or empty folder")


def save_compressed(model: CompressedModel, path: str | Path) -> Path:
    from rasp_compiler.model.json_codec import to_json
    from rasp_compiler.model.persistence import save_model

    folder = Path(path)
    check_compressed_destination(folder)
    readers = model.readers or {}
    arrays = {"W": np.ascontiguousarray(model.W, np.float32)}
    for name, reader in readers.items():
        for key, value in reader.items():
            arrays[f"readers::{name}::{key}"] = np.ascontiguousarray(value, np.float32)
    data = to_json(_SavedCompression(FORMAT_VERSION, model.info, tuple(sorted(readers))))
    data["checksum"] = _checksum(data, arrays)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_model(model.base, folder / BASE_FOLDER)
        with open(folder / ARRAYS_FILE, "wb") as handle:
            np.savez(handle, **arrays)
        (folder / CONFIG_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError as exc:
        raise SaveError(f"cannot save the compressed model to {folder}: {exc}") from exc
    return folder


def load_compressed(path: str | Path, max_parameters: int | None = None) -> CompressedModel:
    from rasp_compiler.compiler.size import DEFAULT_MAX_PARAMETERS
    from rasp_compiler.model.compiled import CompiledModel
    from rasp_compiler.model.json_codec import from_json
    from rasp_compiler.model.npz_reader import read_arrays
    from rasp_compiler.model.persistence import check_declared_size

    folder = Path(path)
    limit = DEFAULT_MAX_PARAMETERS if max_parameters is None else max_parameters

    def fail(problem: str):
        return LoadError(f"cannot load the compressed model saved in {folder}: {problem}")

    if not folder.is_dir():
        raise fail("it is a file, not a saved model's folder" if folder.exists()
                   else "no such folder")
    missing = [name for name in (CONFIG_FILE, ARRAYS_FILE, BASE_FOLDER)
               if not (folder / name).exists()]
    if missing:
        raise fail(f"{', '.join(missing)} missing; a compressed model is a folder holding "
                   f"{CONFIG_FILE}, {ARRAYS_FILE} and {BASE_FOLDER}/, written by "
                   f"CompressedModel.save or `rasp-compiler compress -o`")
    try:
        if (folder / CONFIG_FILE).stat().st_size > 16 * 1024**2:
            raise fail(f"{CONFIG_FILE} is larger than any compressed model's (16 MB)")
        data = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise fail(f"{CONFIG_FILE} cannot be read ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise fail(f"{CONFIG_FILE}: format: expected {FORMAT_VERSION}, got "
                   f"{data.get('format') if isinstance(data, dict) else data!r}")
    checksum = data.pop("checksum", None)
    try:
        saved = from_json(data, _SavedCompression)
    except LoadError as problem:
        raise fail(f"{CONFIG_FILE}: {problem}") from None
    base = CompiledModel.load(folder / BASE_FOLDER, max_parameters=limit)
    info = saved.info
    width = base.shape.d_model
    # The arrays' names and shapes follow from compression.json and the base model: hold
    # compression.npz to them before reading any of its data.
    if not 1 <= info.d <= width or info.d_model != width:
        raise fail(f"{CONFIG_FILE}: info.d is {info.d} and info.d_model {info.d_model}; the "
                   f"base model's residual has {width} dims (d must be 1..{width})")
    if info.hidden < 0 or bool(saved.readers) != (info.hidden > 0):
        raise fail(f"{CONFIG_FILE}: info.hidden {info.hidden} does not match the readers "
                   f"{list(saved.readers)} (nonlinear reads have hidden > 0, linear ones 0)")
    if saved.readers and set(saved.readers) != set(read_hooks(base.shape)):
        raise fail(f"{CONFIG_FILE}: readers {list(saved.readers)} are not this model's reads "
                   f"{read_hooks(base.shape)}")
    expected = {"W": ((width, info.d), "[d_model, d]")}
    for name in saved.readers:
        expected.update({f"readers::{name}::w1": ((info.d, info.hidden), "[d, hidden]"),
                         f"readers::{name}::b1": ((info.hidden,), "[hidden]"),
                         f"readers::{name}::w2": ((info.hidden, width), "[hidden, d_model]")})
    try:
        check_declared_size(expected, limit, CONFIG_FILE,
                            "CompressedModel.load(path, max_parameters=N)")
        arrays = read_arrays(folder / ARRAYS_FILE, expected, CONFIG_FILE)
    except LoadError as problem:
        raise fail(str(problem)) from problem.__cause__
    if checksum != _checksum(data, arrays):
        raise fail(f"{CONFIG_FILE} or {ARRAYS_FILE} was edited or corrupted (checksum "
                   f"mismatch); compress the model again")
    readers = {name: {key: arrays[f"readers::{name}::{key}"] for key in ("w1", "b1", "w2")}
               for name in saved.readers} or None
    return CompressedModel(base, arrays["W"], readers, info)


__all__ = ["CompressedModel", "CompressionAccuracy", "CompressionInfo", "compress",
           "compressed_forward", "decode_nearest", "feature_weights", "read_hooks"]
