"""tracr's model object: what code written against tracr's `AssembledTransformerModel` reads.

A `CompiledModel` keeps its own parameters (no `transformer/` prefix, each layer
with its own head count, key/value sizes and MLP width). This module gives the
view tracr users expect, with tracr's meanings (docs/tracr.md has the table):

- `input_encoder` / `output_encoder`: tracr's `CategoricalEncoder` and
  `NumericalEncoder` (a numerical output gets a `NumericalEncoder`, as in tracr);
- `residual_labels`: one `name:value` label per residual dimension;
- `model_config`: tracr's `TransformerConfig` fields, the uniform padded sizes;
- `tracr_params(model)`: every layer padded to the same heads, key size and MLP
  width, under tracr's haiku names, with the zero biases tracr's modules have;
- `forward(params, config, token_ids)`: tracr's transformer over those padded
  parameters (an independent numpy implementation, not our haiku forward);
- `apply(model, tokens)`: tracr's `apply`, returning tracr's output fields.

Two facts of tracr's forward shape the padded parameters: its attention divides
the logits by sqrt(key_size), so the view's query weights carry a factor
sqrt(key_size) that cancels it; and a value head is as wide as a key head, so
keys and values are both padded to `key_size`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.lang.identity import ValueMap, value_dict
from rasp_compiler.model.encoding import lookup_ids, readout_numbers

PREFIX = "transformer"  # tracr's haiku scope around every layer
MASKED_LOGIT = -1e30  # what tracr writes into masked attention logits (not -inf)


# ---------------------------------------------------------------------------- encoders


class CategoricalEncoder:
    """tracr's `CategoricalEncoder`: tokens to ids through `encoding_map`, and back.

    `decoding_map` (id -> token) is an addition: tracr builds it inside `decode`.
    Errors are `InvalidInputError` (a `ValueError`, as tracr raises).
    """

    def __init__(self, encoding_map: dict, *, enforce_bos: bool = False, bos_token: Any = None,
                 pad_token: Any = None, max_seq_len: int | None = None):
        # a ValueMap stays one: it keeps keys a dict would merge (the tokens 1 and True)
        self.encoding_map = encoding_map if isinstance(encoding_map, ValueMap) \
            else dict(encoding_map)
        self.enforce_bos = enforce_bos
        self._bos_token = bos_token
        self._pad_token = pad_token
        self._max_seq_len = max_seq_len

    @property
    def decoding_map(self) -> dict:
        return {i: token for token, i in self.encoding_map.items()}

    def encode(self, inputs: Sequence) -> list[int]:
        inputs = list(inputs)
        if self.enforce_bos and (not inputs or inputs[0] != self.bos_token):
            got = repr(inputs[0]) if inputs else "an empty input"
            raise InvalidInputError(
                f"the input must have the BOS token {self.bos_token!r} first (as in tracr), got "
                f"{got}; write [{self.bos_token!r}, t1, t2, ...], or use model.run([tokens]) "
                f"without BOS"
            )
        if self._max_seq_len is not None and len(inputs) > self._max_seq_len:
            raise InvalidInputError(
                f"the input has {len(inputs)} tokens, BOS included; this model takes at most "
                f"{self._max_seq_len} (max_seq_len + 1 for BOS)"
            )
        return lookup_ids(self.encoding_map, inputs, "", "the encoding map")

    def decode(self, encodings: Sequence[int]) -> list:
        decoding_map = self.decoding_map
        out = []
        for position, encoding in enumerate(encodings):
            try:
                out.append(decoding_map[encoding])
            except (KeyError, TypeError):
                raise InvalidInputError(
                    f"position {position}: id {encoding!r} is not in the decoding map "
                    f"(ids 0..{len(decoding_map) - 1})"
                ) from None
        return out

    @property
    def vocab_size(self) -> int:
        return len(self.encoding_map)

    @property
    def bos_token(self) -> Any:
        return self._bos_token

    @property
    def pad_token(self) -> Any:
        return self._pad_token

    @property
    def bos_encoding(self) -> int | None:
        return None if self._bos_token is None else self.encoding_map[self._bos_token]

    @property
    def pad_encoding(self) -> int | None:
        return None if self._pad_token is None else self.encoding_map[self._pad_token]

    def __repr__(self) -> str:
        return f"CategoricalEncoder({self.encoding_map!r})"


class NumericalEncoder:
    """tracr's `NumericalEncoder`: numbers pass through unchanged."""

    bos_token = pad_token = bos_encoding = pad_encoding = None

    def encode(self, inputs: Sequence[float]) -> list[float]:
        return list(inputs)

    def decode(self, encodings: Sequence[float]) -> list[float]:
        return list(encodings)

    def __repr__(self) -> str:
        return "NumericalEncoder()"


def input_encoder(model) -> CategoricalEncoder:
    """Our token ids (vocab in `model.vocab` order, then BOS, then PAD), tracr's checks."""
    encoding_map = value_dict([*model.token_encoder.token_ids.items(),
                               (model.bos, len(model.vocab)), (model.pad, len(model.vocab) + 1)])
    return CategoricalEncoder(encoding_map, enforce_bos=True, bos_token=model.bos,
                              pad_token=model.pad, max_seq_len=model.max_seq_len + 1)


def output_encoder(model) -> CategoricalEncoder | NumericalEncoder:
    """Ids are positions in the output's readout, the order `unembedded` argmaxes over."""
    readout = model.readouts[model.output]
    if readout.numerical:
        return NumericalEncoder()
    # an output that can be 0 and 0.0 has an id for each (a ValueMap keeps both keys)
    return CategoricalEncoder(value_dict((value, i) for i, value in enumerate(readout.values)))


def residual_labels(model) -> list[str]:
    return [str(dim) for dim in model.layout.dims]


# ---------------------------------------------------------------------------- config and params


@dataclass
class TracrModelConfig:
    """tracr's `TransformerConfig`, same fields in the same order."""

    num_heads: int
    num_layers: int
    key_size: int
    mlp_hidden_size: int
    dropout_rate: float = 0.0
    activation_function: Callable = jax.nn.relu
    layer_norm: bool = False
    causal: bool = False


def model_config(model) -> TracrModelConfig:
    """The padded sizes: the widest layer's, at least 1 each (tracr's value when absent)."""
    layers = model.shape.layers
    return TracrModelConfig(
        num_heads=max([1] + [layer.heads for layer in layers]),
        num_layers=len(layers),
        key_size=max([1] + [max(layer.key_size, layer.value_size) for layer in layers]),
        mlp_hidden_size=max([1] + [layer.mlp_hidden for layer in layers]),
        causal=bool(getattr(model, "causal", False)),
    )


@dataclass(frozen=True)
class PaddedLayer:
    """One layer's weights padded to the uniform sizes of `model_config`, per head.

    w_q, w_k, w_v [d_model, heads, size]; w_o [heads, size, d_model];
    w_1 [d_model, width]; w_2 [width, d_model]. No attention scaling is folded in.
    """

    w_q: np.ndarray
    w_k: np.ndarray
    w_v: np.ndarray
    w_o: np.ndarray
    w_1: np.ndarray
    w_2: np.ndarray


def padded_layers(model) -> list[PaddedLayer]:
    """Every layer of `model.params` padded with zeros to `model_config(model)`'s sizes.

    Zero padding changes no activation: a padded head has zero value weights (it
    writes nothing, whatever it attends to), padded key/value dimensions are zero
    on both sides, and padded MLP units have zero input and output weights. Both
    tracr's view and the TransformerLens export (export.py) are built from these.
    """
    config = model_config(model)
    heads, size, width = config.num_heads, config.key_size, config.mlp_hidden_size
    d = model.shape.d_model
    ours = {module: {name: np.asarray(value, np.float32) for name, value in inner.items()}
            for module, inner in model.params.items()}
    layers = []
    for l, layer in enumerate(model.shape.layers):
        h, dk, dv = layer.heads, layer.key_size, layer.value_size
        attn = {}
        for name, per_head in (("query", dk), ("key", dk), ("value", dv)):
            w = np.zeros((d, heads, size), np.float32)
            w[:, :h, :per_head] = ours[f"layer_{l}/attn/{name}"]["w"].reshape(d, h, per_head)
            attn[name] = w
        w_o = np.zeros((heads, size, d), np.float32)
        w_o[:h, :dv] = ours[f"layer_{l}/attn/linear"]["w"].reshape(h, dv, d)
        w_1 = np.zeros((d, width), np.float32)
        w_1[:, : layer.mlp_hidden] = ours[f"layer_{l}/mlp/linear_1"]["w"]
        w_2 = np.zeros((width, d), np.float32)
        w_2[: layer.mlp_hidden] = ours[f"layer_{l}/mlp/linear_2"]["w"]
        layers.append(PaddedLayer(attn["query"], attn["key"], attn["value"], w_o, w_1, w_2))
    return layers


def tracr_params(model) -> dict[str, dict[str, jnp.ndarray]]:
    """A fresh tracr-shaped copy of `model.params`: `padded_layers` under tracr's names,
    with tracr's zero biases and sqrt(key_size) folded into the query weights."""
    config = model_config(model)
    heads, size, width = config.num_heads, config.key_size, config.mlp_hidden_size
    d = model.shape.d_model
    params = {
        "token_embed": {"embeddings": np.asarray(model.params["token_embed"]["embeddings"],
                                                 np.float32)},
        "pos_embed": {"embeddings": np.asarray(model.params["pos_embed"]["embeddings"],
                                               np.float32)},
    }
    scale = np.float32(math.sqrt(size))  # cancels tracr's logits / sqrt(key_size)
    for l, layer in enumerate(padded_layers(model)):
        attn = {"query": layer.w_q * scale, "key": layer.w_k, "value": layer.w_v}
        attn = {name: w.reshape(d, heads * size) for name, w in attn.items()}
        attn["linear"] = layer.w_o.reshape(heads * size, d)
        for name, w in attn.items():
            bias = np.zeros(d if name == "linear" else heads * size, np.float32)
            params[f"{PREFIX}/layer_{l}/attn/{name}"] = {"w": w, "b": bias}
        params[f"{PREFIX}/layer_{l}/mlp/linear_1"] = {"w": layer.w_1,
                                                      "b": np.zeros(width, np.float32)}
        params[f"{PREFIX}/layer_{l}/mlp/linear_2"] = {"w": layer.w_2,
                                                      "b": np.zeros(d, np.float32)}
    return {module: {name: jnp.asarray(value) for name, value in inner.items()}
            for module, inner in params.items()}


# ---------------------------------------------------------------------------- forward


@dataclass(frozen=True)
class TransformerOutput:
    """tracr's `TransformerOutput`: two entries per layer (after attention, after MLP)
    in `layer_outputs` and `residuals`, one per layer in `attn_logits` [B, H, T, T]."""

    layer_outputs: list[np.ndarray]  # [B, T, D]
    residuals: list[np.ndarray]  # [B, T, D]
    attn_logits: list[np.ndarray]  # [B, H, T, T]
    output: np.ndarray  # [B, T, D]
    input_embeddings: np.ndarray  # [B, T, D]


# A pytree, so a jitted forward (tracr_model.make_forward) can return it.
jax.tree_util.register_dataclass(
    TransformerOutput, meta_fields=[],
    data_fields=["layer_outputs", "residuals", "attn_logits", "output", "input_embeddings"])


@dataclass(frozen=True)
class TracrOutput:
    """tracr's `AssembledTransformerModelOutput`, returned by `model.apply`.

    `decoded` has the BOS token first; `unembedded` [1, T] holds output-encoder ids
    (categorical) or numbers (numerical). `unembedded_output` is the same array
    under the name tracr's inner `CompiledTransformerModelOutput` uses.
    """

    decoded: list
    unembedded: np.ndarray
    layer_outputs: list[np.ndarray]
    residuals: list[np.ndarray]
    attn_logits: list[np.ndarray]
    transformer_output: np.ndarray  # [1, T, D] final residual
    input_embeddings: np.ndarray

    @property
    def unembedded_output(self) -> np.ndarray:
        return self.unembedded


def _activate(function: Callable, x, xp):
    if function is jax.nn.relu:
        return xp.maximum(x, 0.0)  # no JAX dispatch in numpy for the one activation we use
    return xp.asarray(function(x), dtype=xp.float32)


def forward(params: dict, config: TracrModelConfig, token_ids,
            pad_encoding: int | None = None, *, xp=np) -> TransformerOutput:
    """tracr's transformer (no layer norm, no dropout) over tracr-shaped `params`.

    `xp` is numpy (the default: no XLA compilation, for `apply`) or jax.numpy
    (tracr's `forward`, which jit and grad go through). Keys holding `pad_encoding`
    are masked, as tracr's `CompiledTransformerModel` does when given a pad token;
    with `config.causal` a query also cannot see later keys. Masked logits hold
    -1e30, as in tracr.
    """
    if config.layer_norm:
        raise InvalidInputError("this forward has no layer norm: config.layer_norm must be False")
    p = {module: {name: xp.asarray(value, xp.float32) for name, value in inner.items()}
         for module, inner in params.items()}
    ids = xp.asarray(token_ids)
    batch, length = ids.shape
    heads, size = config.num_heads, config.key_size
    embeddings = p["token_embed"]["embeddings"][ids] + p["pos_embed"]["embeddings"][:length][None]
    keys_visible = xp.ones((batch, length), bool) if pad_encoding is None else ids != pad_encoding
    mask = xp.broadcast_to(keys_visible[:, None, None, :], (batch, 1, length, length))
    if config.causal:
        mask = mask & xp.asarray(np.tril(np.ones((length, length), bool)))[None, None]
    layer_outputs, residuals, attn_logits = [], [], []
    residual = embeddings
    for l in range(config.num_layers):
        attn = lambda name: p[f"{PREFIX}/layer_{l}/attn/{name}"]
        project = lambda name: (residual @ attn(name)["w"] + attn(name)["b"]).reshape(
            batch, length, heads, size)
        q, k, v = project("query"), project("key"), project("value")
        logits = xp.einsum("bthd,bshd->bhts", q, k) / np.float32(math.sqrt(size))
        logits = xp.where(mask, logits, np.float32(MASKED_LOGIT))
        weights = xp.exp(logits - logits.max(axis=-1, keepdims=True))
        weights = weights / weights.sum(axis=-1, keepdims=True)
        mixed = xp.einsum("bhts,bshd->bthd", weights, v).reshape(batch, length, heads * size)
        attn_out = mixed @ attn("linear")["w"] + attn("linear")["b"]
        residual = residual + attn_out
        layer_outputs.append(attn_out)
        residuals.append(residual)
        attn_logits.append(logits)
        mlp = lambda name: p[f"{PREFIX}/layer_{l}/mlp/{name}"]
        hidden = _activate(config.activation_function,
                           residual @ mlp("linear_1")["w"] + mlp("linear_1")["b"], xp)
        mlp_out = hidden @ mlp("linear_2")["w"] + mlp("linear_2")["b"]
        residual = residual + mlp_out
        layer_outputs.append(mlp_out)
        residuals.append(residual)
    return TransformerOutput(layer_outputs=layer_outputs, residuals=residuals,
                             attn_logits=attn_logits, output=residual,
                             input_embeddings=embeddings)


def encode_for_apply(encoder: CategoricalEncoder, tokens: Sequence) -> tuple[list[int], int]:
    """tracr's input checks for `apply([BOS, t1, ..., tn, PAD, ...])`, and ours.

    The encoder checks BOS first, known tokens and the length; besides, BOS may not
    reappear and PAD may only trail (our model reads positions, so a token after PAD
    would be misplaced). Returns the ids and the number of tokens before any PAD.
    """
    bos, pad = encoder.bos_token, encoder.pad_token
    if isinstance(tokens, (np.ndarray, jax.Array)):
        tokens = np.asarray(tokens).tolist()
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
        raise InvalidInputError(
            f"apply() takes a list of tokens with the BOS token {bos!r} first (as "
            f"tracr does), got {type(tokens).__name__} {tokens!r}"
        )
    tokens = list(tokens)
    ids = encoder.encode(tokens)
    body = ids[1:]
    n_tokens = next((i for i, token_id in enumerate(body) if token_id == encoder.pad_encoding),
                    len(body))
    for position, token_id in enumerate(body, start=1):
        if token_id == encoder.bos_encoding:
            raise InvalidInputError(
                f"position {position}: the BOS token {bos!r} may only come first"
            )
        if position > n_tokens + 1 and token_id != encoder.pad_encoding:
            raise InvalidInputError(
                f"position {position}: token {tokens[position]!r} follows the PAD token "
                f"{pad!r}; PAD may only fill the end of the input"
            )
    return ids, n_tokens


def apply(model, tokens: Sequence) -> TracrOutput:
    """tracr's `model.apply([BOS, t1, ..., tn, PAD, ...])` on the padded view.

    Inputs are checked by `encode_for_apply`. PAD keys are masked; `decoded` holds
    the PAD token at PAD positions and BOS at position 0, as tracr does.
    """
    encoder = input_encoder(model)
    ids, n_tokens = encode_for_apply(encoder, tokens)
    body = ids[1:]
    config = model_config(model)
    out = forward(tracr_params(model), config, np.asarray([ids]), encoder.pad_encoding)
    final = out.output
    readout = model.readouts[model.output]
    columns = final[..., list(readout.indices)]
    if readout.numerical:
        unembedded = readout_numbers(readout, columns)
    elif columns.shape[-1]:
        unembedded = columns.argmax(axis=-1)
    else:  # an output with no possible value: no id to point at
        unembedded = np.full(columns.shape[:-1], -1)
    decoded = ([model.bos] + model.decode(model.output, final[0], n_tokens)
               + [model.pad] * (len(body) - n_tokens))
    return TracrOutput(
        decoded=decoded,
        unembedded=unembedded,
        layer_outputs=out.layer_outputs,
        residuals=out.residuals,
        attn_logits=out.attn_logits,
        transformer_output=final,
        input_embeddings=out.input_embeddings,
    )
