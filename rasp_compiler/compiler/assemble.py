"""Assemble, the compiler's last stage: the lowered weights as dense haiku parameters.

Each layer's heads are stacked side by side (head h takes columns h*key_size onwards of
the query and key matrices), padded to the layer's widest head; the MLP keeps its
lowered width. The names and shapes are the forward pass's (model/forward.py).
"""

from __future__ import annotations

import numpy as np

from rasp_compiler.compiler.lower import LoweredModel
from rasp_compiler.model.forward import LayerShape, ModelShape


def assemble(lowered: LoweredModel, *, causal: bool = False) -> tuple[dict, ModelShape]:
    """Parameters (a haiku params dict of numpy float32 arrays) and the model's shape.

    A causal model has the very same weights: only the attention mask differs.
    """
    params: dict[str, dict[str, np.ndarray]] = {
        "token_embed": {"embeddings": lowered.token_embeddings},
        "pos_embed": {"embeddings": lowered.position_embeddings},
    }
    d_model = lowered.layout.width
    layers = []
    for index, (heads, mlp) in enumerate(zip(lowered.heads, lowered.mlps)):
        key_size = max((h.key_size for h in heads), default=0)
        value_size = max((h.value_size for h in heads), default=0)
        w_q = np.zeros((d_model, len(heads) * key_size), np.float32)
        w_k = np.zeros_like(w_q)
        w_v = np.zeros((d_model, len(heads) * value_size), np.float32)
        w_o = np.zeros((len(heads) * value_size, d_model), np.float32)
        for h, head in enumerate(heads):
            w_q[:, h * key_size: h * key_size + head.key_size] = head.w_q
            w_k[:, h * key_size: h * key_size + head.key_size] = head.w_k
            w_v[:, h * value_size: h * value_size + head.value_size] = head.w_v
            w_o[h * value_size: h * value_size + head.value_size, :] = head.w_o
        prefix = f"layer_{index}"
        params[f"{prefix}/attn/query"] = {"w": w_q}
        params[f"{prefix}/attn/key"] = {"w": w_k}
        params[f"{prefix}/attn/value"] = {"w": w_v}
        params[f"{prefix}/attn/linear"] = {"w": w_o}
        params[f"{prefix}/mlp/linear_1"] = {"w": mlp.w_1}
        params[f"{prefix}/mlp/linear_2"] = {"w": mlp.w_2}
        layers.append(LayerShape(len(heads), key_size, value_size, mlp.hidden))
    shape = ModelShape(
        vocab_size=lowered.token_embeddings.shape[0],
        max_positions=lowered.position_embeddings.shape[0],
        d_model=d_model,
        layers=tuple(layers),
        causal=causal,
    )
    return params, shape
