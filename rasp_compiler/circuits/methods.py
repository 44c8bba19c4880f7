"""Two reference discovery methods, scoring every candidate edge of a model.

- `activation_patching`: each edge patched alone (patching.py) on every pair; its score
  is the mean over pairs of the readout's total absolute change (the output's readout
  columns, or its number, summed over positions). One forward per edge and chunk.
- `edge_attribution_patching` (EAP, Syed et al. 2023): the first-order estimate of the
  same patch, (ablated - clean contribution of the source) . d metric / d (destination's
  input), from one forward and backward pass in JAX over our weights (the forward of
  assemble.py with a perturbation added to each destination's input). The metric is
  sum over positions of <readout columns, corrupt columns - clean columns> (for a
  categorical output: the corrupt answer's logit minus the clean one's); an edge's score
  is the mean over pairs of |its estimate|. Resample ablation only: with zero or mean
  ablation there is no corrupted output for the metric to point at.

Both return `EdgeScores` (edge -> score, with the method, pairs and seconds), ready for
`score_circuit`. Compiled attention is saturated (coldness ~36), so softmax gradients
vanish and EAP misses every edge that acts through a query or key: the benchmark in
docs/performance.md shows by how much.
"""

from __future__ import annotations

import time

import numpy as np

from rasp_compiler.circuits.network import Network, check_granularity, network_of
from rasp_compiler.circuits.pairs import PairSample, check_ablation, make_pairs
from rasp_compiler.circuits.patching import Batch, chunks, patching_scores
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.model.forward import PRECISION, attention_mask


class EdgeScores(dict):
    """A method's score per candidate edge (Edge -> float), with `method`, `granularity`,
    `pairs` and `seconds` (the time taken, pairs included)."""

    def __init__(self, scores, *, method: str, granularity: str, pairs: PairSample,
                 seconds: float):
        super().__init__(scores)
        self.method, self.granularity, self.pairs, self.seconds = (method, granularity, pairs,
                                                                   seconds)

    def top(self, k: int = 10) -> list:
        """The k highest-scoring edges with their scores."""
        return sorted(self.items(), key=lambda item: -item[1])[:k]


def _setup(model, granularity, pairs, inputs, corrupt, ablation, samples, seed):
    granularity = check_granularity(granularity)
    check_ablation(ablation)
    network = network_of(model, granularity)
    if pairs is None:
        pairs = make_pairs(network.compiled, inputs, corrupt, ablation=ablation,
                           samples=samples, seed=seed)
    elif not isinstance(pairs, PairSample):
        raise InvalidInputError(f"pairs must be a PairSample (from make_pairs or a functional "
                                f"circuit's .pairs), got {type(pairs).__name__}")
    return network, pairs


def activation_patching(model, granularity: str = "head", *, pairs: PairSample | None = None,
                        inputs=None, corrupt=None, ablation: str = "resample",
                        samples: int | None = None, seed: int = 0) -> EdgeScores:
    """Every candidate edge patched alone; score: the mean total readout change (module doc)."""
    started = time.perf_counter()
    network, pairs = _setup(model, granularity, pairs, inputs, corrupt, ablation, samples, seed)
    if pairs.corrupt is None and ablation == "resample":
        raise InvalidInputError("resample ablation needs pairs with corrupt inputs")
    scores = patching_scores(network, network.candidates(), pairs, ablation)
    return EdgeScores(scores, method="activation patching", granularity=granularity,
                      pairs=pairs, seconds=time.perf_counter() - started)


def edge_attribution_patching(model, granularity: str = "head", *,
                              pairs: PairSample | None = None, inputs=None, corrupt=None,
                              samples: int | None = None, seed: int = 0,
                              ablation: str = "resample") -> EdgeScores:
    """Gradient x activation difference for every candidate edge, in JAX (module doc)."""
    if ablation != "resample":
        raise InvalidInputError(
            f"edge attribution patching needs resample ablation (its metric points from the "
            f"clean output to the corrupted one); got ablation={ablation!r}"
        )
    started = time.perf_counter()
    network, pairs = _setup(model, granularity, pairs, inputs, corrupt, ablation, samples, seed)
    if pairs.corrupt is None:
        raise InvalidInputError("edge attribution patching needs pairs with corrupt inputs")
    candidates = network.candidates()
    totals = {edge: 0.0 for edge in candidates}
    for _, batch in chunks(network, pairs, "resample"):
        grads = _gradients(network, batch)
        for edge in candidates:
            totals[edge] += float(np.abs(_estimate(network, batch, grads, edge)).sum())
    return EdgeScores({edge: total / len(pairs) for edge, total in totals.items()},
                      method="edge attribution patching", granularity=granularity,
                      pairs=pairs, seconds=time.perf_counter() - started)


def _estimate(network: Network, batch: Batch, grads: dict, edge) -> np.ndarray:
    """Per pair: the first-order change of the metric when `edge` is patched."""
    source = network.by_name[edge.source]
    destination = network.by_name[edge.destination]
    if source.position == destination.position and destination.kind != "output":  # internal
        clean = batch.activation(edge.source, batch.clean_cache)
        change = batch.activation(edge.source, batch.corrupt_cache) - clean
        key = f"pre{source.layer}" if source.kind == "mlp.in" else f"{source.kind}a{source.layer}"
        grad = grads[key] if source.kind == "mlp.in" else grads[key][:, :, source.head, :]
        return (change * grad).reshape(len(change), -1).sum(axis=1)
    delta = batch.delta(edge.source)
    if destination.kind == "output":
        grad = grads["out"]
    elif destination.kind in ("mlp", "mlp.in"):
        grad = grads[f"in{destination.layer}"]
    elif destination.kind == "attn":
        grad = grads[f"{edge.input}{destination.layer}"].sum(axis=2)
    else:
        grad = grads[f"{edge.input}{destination.layer}"][:, :, destination.head, :]
    return np.einsum("btd,btd->b", delta, grad)


_GRADIENTS: dict = {}


def _gradients(network: Network, batch: Batch) -> dict[str, np.ndarray]:
    """d metric / d every perturbation, at zero perturbation (jitted per model shape)."""
    import jax
    import jax.numpy as jnp

    corrupt_cols = batch.corrupt_final @ network.readout_matrix
    target = np.where(batch.mask[:, :, None], corrupt_cols - batch.cols, 0.0)
    target[:, 0] = 0.0  # BOS is not decoded
    shapes = {"out": batch.final.shape}
    b, t, d = batch.final.shape
    for l, layer in enumerate(network.shape.layers):
        if layer.heads:
            for x in "qkv":
                shapes[f"{x}{l}"] = (b, t, layer.heads, d)
                size = layer.value_size if x == "v" else layer.key_size
                shapes[f"{x}a{l}"] = (b, t, layer.heads, size)
        if layer.mlp_hidden:
            shapes[f"in{l}"] = (b, t, d)
            shapes[f"pre{l}"] = (b, t, layer.mlp_hidden)
    key = network.shape  # one jitted function per model shape (weights are arguments)
    if key not in _GRADIENTS:
        if len(_GRADIENTS) > 16:
            _GRADIENTS.clear()
        _GRADIENTS[key] = jax.jit(jax.grad(_metric_function(network)))
    weights = jax.tree_util.tree_map(jnp.asarray, network.params)
    zeros = {name: jnp.zeros(shape, jnp.float32) for name, shape in shapes.items()}
    grads = _GRADIENTS[key](zeros, weights, jnp.asarray(batch.ids), jnp.asarray(batch.mask),
                            jnp.asarray(target, jnp.float32),
                            jnp.asarray(network.readout_matrix))
    return {name: np.asarray(value) for name, value in grads.items()}


def _metric_function(network: Network):
    import jax
    import jax.numpy as jnp

    shape = network.shape
    einsum = lambda spec, *xs: jnp.einsum(spec, *xs, precision=PRECISION)
    matmul = lambda a, b: jnp.matmul(a, b, precision=PRECISION)

    def metric(eps, params, ids, mask, target, readout):
        length = ids.shape[1]
        residual = (params["token_embed"]["embeddings"][ids]
                    + params["pos_embed"]["embeddings"][:length][None])
        allowed = attention_mask(mask, shape.causal, jnp)
        for l, layer in enumerate(shape.layers):
            h, dk, dv, dm = layer.heads, layer.key_size, layer.value_size, shape.d_model
            prefix = f"layer_{l}"
            if h:
                heads = {}
                for x, name, size in (("q", "query", dk), ("k", "key", dk), ("v", "value", dv)):
                    w = params[f"{prefix}/attn/{name}"]["w"].reshape(dm, h, size)
                    read = residual[:, :, None, :] + eps[f"{x}{l}"]
                    heads[x] = einsum("bthd,dhe->bthe", read, w) + eps[f"{x}a{l}"]
                scores = einsum("bqhe,bkhe->bhqk", heads["q"], heads["k"])
                scores = jnp.where(allowed, scores, -jnp.inf)
                z = einsum("bhqk,bkhe->bqhe", jax.nn.softmax(scores, axis=-1), heads["v"])
                w_o = params[f"{prefix}/attn/linear"]["w"].reshape(h, dv, dm)
                residual = residual + einsum("bthe,hed->btd", z, w_o)
            if layer.mlp_hidden:
                pre = matmul(residual + eps[f"in{l}"], params[f"{prefix}/mlp/linear_1"]["w"])
                pre = pre + eps[f"pre{l}"]
                residual = residual + matmul(jax.nn.relu(pre),
                                             params[f"{prefix}/mlp/linear_2"]["w"])
        columns = matmul(residual + eps["out"], readout)
        return jnp.sum(columns * target)

    return metric
