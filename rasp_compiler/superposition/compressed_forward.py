"""The compressed forward: the compiled model's frozen weights run through a d-dimensional
residual stream (compression.py's module doc has the equations), as a JAX function of the
projection, plus the reads it makes in order (`read_hooks`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.errors import (
    InvalidInputError,
)
from rasp_compiler.model.forward import PRECISION, attention_mask, layer_cache
from rasp_compiler.model.hooks import hook

NONE_THRESHOLD = 0.5  # a categorical readout whose largest entry is below this reads as None
NUMERICAL_ATOL = 0.01  # a compressed model is approximate: numbers count as right within
NUMERICAL_RTOL = 0.01  # NUMERICAL_ATOL + NUMERICAL_RTOL * |expected|


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


def target_hooks(shape) -> list[str]:
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


@functools.partial(jax.jit, static_argnames="shape")
def final_read(params, shape, projection, ids, mask):
    return compressed_forward(params, shape, projection, ids, mask, with_cache=False)[0][-1]


@functools.partial(jax.jit, static_argnames="shape")
def all_hooks(params, shape, projection, ids, mask):
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
