"""The forward pass of a compiled model: its shape, the dm-haiku transform, a numpy twin.

The model is an ordinary transformer: token and position embeddings, then per
layer one multi-head attention sublayer and one ReLU MLP sublayer, each added
to the residual stream; no layer norm, no biases. Each layer has its own head
count, key/value sizes and MLP width (nothing is padded to the widest layer).

The parameters (built by compiler/assemble.py from the lowered weights, no random init)
live under haiku names:
    token_embed/embeddings [vocab + 2, d_model]   (rows: vocab..., BOS, PAD)
    pos_embed/embeddings   [max_seq_len + 1, d_model]
    layer_{l}/attn/{query,key} w [d_model, heads * key_size]
    layer_{l}/attn/value w [d_model, heads * value_size]
    layer_{l}/attn/linear w [heads * value_size, d_model]
    layer_{l}/mlp/linear_1 w [d_model, hidden], layer_{l}/mlp/linear_2 w [hidden, d_model]

Every matmul runs at HIGHEST precision: on recent NVIDIA GPUs the default is
TF32 (10-bit mantissa), which breaks attention logits of size ~40.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.model.hooks import LAYER_HOOKS, hook
from rasp_compiler.model.hooks import hook_names as all_hook_names

PRECISION = jax.lax.Precision.HIGHEST


@dataclass(frozen=True)
class LayerShape:
    heads: int
    key_size: int
    value_size: int
    mlp_hidden: int


@dataclass(frozen=True)
class ModelShape:
    """Everything the forward pass needs to know besides the parameter values."""

    vocab_size: int  # tokens + BOS + PAD
    max_positions: int  # max_seq_len + 1 (BOS)
    d_model: int
    layers: tuple[LayerShape, ...]
    causal: bool = False  # attention masked to keys at or before the query


def _param(scope: str, shape: tuple[int, ...], name: str = "w") -> jnp.ndarray:
    with hk.name_scope(scope):
        return hk.get_parameter(name, shape, init=jnp.zeros)


def attention_mask(key_mask, causal: bool, xp=jnp):
    """[B, 1, T, T]: which keys each query may attend to (padding masked; the future too
    when causal). BOS, key 0, is always visible."""
    mask = key_mask[:, None, None, :]
    if causal:
        length = key_mask.shape[1]
        mask = mask & xp.tril(xp.ones((length, length), dtype=bool))[None, None]
    return mask


def build_forward(shape: ModelShape, *, with_cache: bool) -> hk.Transformed:
    """A haiku transform: (token_ids [B, T], key_mask [B, T]) -> final residual (and cache).

    The cache maps TransformerLens hook names to activations, batch first.
    """

    def forward(token_ids: jnp.ndarray, key_mask: jnp.ndarray):
        batch, length = token_ids.shape
        d = shape.d_model
        token_table = _param("token_embed", (shape.vocab_size, d), "embeddings")
        position_table = _param("pos_embed", (shape.max_positions, d), "embeddings")
        embed = token_table[token_ids]
        pos_embed = jnp.broadcast_to(position_table[:length][None], (batch, length, d))
        residual = embed + pos_embed
        cache = {"hook_embed": embed, "hook_pos_embed": pos_embed}
        for l, layer in enumerate(shape.layers):
            resid_pre = residual
            h, dk, dv = layer.heads, layer.key_size, layer.value_size
            with hk.name_scope(f"layer_{l}"):
                with hk.name_scope("attn"):
                    w_q = _param("query", (d, h * dk))
                    w_k = _param("key", (d, h * dk))
                    w_v = _param("value", (d, h * dv))
                    w_o = _param("linear", (h * dv, d))
                with hk.name_scope("mlp"):
                    w_1 = _param("linear_1", (d, layer.mlp_hidden))
                    w_2 = _param("linear_2", (layer.mlp_hidden, d))
            q = jnp.einsum("btd,de->bte", residual, w_q, precision=PRECISION)
            k = jnp.einsum("btd,de->bte", residual, w_k, precision=PRECISION)
            v = jnp.einsum("btd,de->bte", residual, w_v, precision=PRECISION)
            q = q.reshape(batch, length, h, dk)
            k = k.reshape(batch, length, h, dk)
            v = v.reshape(batch, length, h, dv)
            scores = jnp.einsum("bqhe,bkhe->bhqk", q, k, precision=PRECISION)
            scores = jnp.where(attention_mask(key_mask, shape.causal), scores, -jnp.inf)
            pattern = jax.nn.softmax(scores, axis=-1)
            z = jnp.einsum("bhqk,bkhe->bqhe", pattern, v, precision=PRECISION)
            attn_out = jnp.einsum(
                "bqe,ed->bqd", z.reshape(batch, length, h * dv), w_o, precision=PRECISION
            )
            residual = residual + attn_out
            resid_mid = residual
            pre = jnp.einsum("btd,dh->bth", residual, w_1, precision=PRECISION)
            post = jax.nn.relu(pre)
            mlp_out = jnp.einsum("bth,hd->btd", post, w_2, precision=PRECISION)
            residual = residual + mlp_out
            if with_cache:
                cache.update(layer_cache(l, (resid_pre, q, k, v, scores, pattern, z, attn_out,
                                             resid_mid, pre, post, mlp_out, residual)))
        if with_cache:
            return residual, cache
        return residual

    return hk.transform(forward)


def forward_numpy(params: dict, shape: ModelShape, token_ids: np.ndarray,
                  key_mask: np.ndarray, cache: dict | None = None,
                  hooks: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                  ) -> np.ndarray:
    """The same forward pass in float32 numpy: no XLA compilation, for many tiny models.

    An independent implementation of the model; tests check it against the haiku one.
    Given a `cache` dict, it records every activation `build_forward`'s cache has,
    under the same (TransformerLens) hook names. `hooks` maps hook names to
    functions that replace the activation there (an activation patch, as
    TransformerLens's `fwd_hooks`); the rest of the forward sees, and `cache`
    records, what the function returns.
    """
    p = {module: {k: np.asarray(v, dtype=np.float32) for k, v in inner.items()}
         for module, inner in params.items()}
    hooks = hooks or {}
    unknown = sorted(set(hooks) - set(hook_names(shape))) if hooks else []
    if unknown:
        raise InvalidInputError(
            f"no hook named {', '.join(map(repr, unknown))} in this model; its hooks are "
            f"hook_embed, hook_pos_embed and blocks.{{0..{len(shape.layers) - 1}}}.* "
            f"(see hook_names)"
        )

    def visit(name: str, value: np.ndarray) -> np.ndarray:
        if name in hooks:
            patched = np.asarray(hooks[name](value), dtype=np.float32)
            if patched.shape != value.shape:
                raise InvalidInputError(
                    f"the hook on {name} returned shape {patched.shape}; the activation there "
                    f"has shape {value.shape}"
                )
            value = patched
        if cache is not None:
            cache[name] = value
        return value

    batch, length = token_ids.shape
    embed = visit("hook_embed", p["token_embed"]["embeddings"][token_ids])
    pos_embed = visit("hook_pos_embed", np.broadcast_to(
        p["pos_embed"]["embeddings"][:length][None], embed.shape))
    residual = embed + pos_embed
    for l, layer in enumerate(shape.layers):
        h, dk, dv = layer.heads, layer.key_size, layer.value_size
        prefix = f"layer_{l}"
        residual = visit(hook(l, "hook_resid_pre"), residual)
        project = lambda name, size: (residual @ p[f"{prefix}/attn/{name}"]["w"]).reshape(
            batch, length, h, size)
        q = visit(hook(l, "attn.hook_q"), project("query", dk))
        k = visit(hook(l, "attn.hook_k"), project("key", dk))
        v = visit(hook(l, "attn.hook_v"), project("value", dv))
        scores = np.einsum("bqhe,bkhe->bhqk", q, k)
        scores = np.where(attention_mask(key_mask, shape.causal, np), scores, -np.inf)
        scores = visit(hook(l, "attn.hook_attn_scores"), scores.astype(np.float32, copy=False))
        pattern = np.zeros_like(scores)
        if h:
            weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
            pattern = weights / weights.sum(axis=-1, keepdims=True)
        pattern = visit(hook(l, "attn.hook_pattern"), pattern)
        z = visit(hook(l, "attn.hook_z"), np.einsum("bhqk,bkhe->bqhe", pattern, v))
        attn_out = z.reshape(batch, length, h * dv) @ p[f"{prefix}/attn/linear"]["w"]
        attn_out = visit(hook(l, "hook_attn_out"), attn_out)
        residual = visit(hook(l, "hook_resid_mid"), residual + attn_out)
        pre = visit(hook(l, "mlp.hook_pre"), residual @ p[f"{prefix}/mlp/linear_1"]["w"])
        post = visit(hook(l, "mlp.hook_post"), np.maximum(pre, 0.0))
        mlp_out = visit(hook(l, "hook_mlp_out"), post @ p[f"{prefix}/mlp/linear_2"]["w"])
        residual = visit(hook(l, "hook_resid_post"), residual + mlp_out)
    return residual


def layer_cache(layer: int, activations: Sequence) -> dict:
    """One layer's activations (in LAYER_HOOKS order) under their hook names."""
    return {hook(layer, name): value for name, value in zip(LAYER_HOOKS, activations,
                                                             strict=True)}


def hook_names(shape: ModelShape) -> list[str]:
    """Every hook name of the model's cache, in forward order (TransformerLens's names)."""
    return all_hook_names(len(shape.layers))
