"""The verification forward: the model's own forward, restricted to its non-zero weights.

A compiled model's weights are ~98% exact zeros (one-hot spaces, one small block
per operation), and the dense forward multiplies all of them. `verify` only
needs the readout columns of the final residual, so it runs this forward
instead, planned at verify time from the ACTUAL parameter arrays it is given
(never from the compiler's schedule: a corrupted weight, in a zero place or not, is
part of the sparse forward):

- liveness, from the readout backwards: a residual dim is computed only if the
  readout or a later sublayer reads it (a non-zero in its row of W_Q, W_K, W_V or
  W_1); a head, value dim or MLP unit whose output reaches no live dim is
  skipped;
- every other linear map keeps only its non-zero weights: output j is the sum,
  over the i with W[i, j] != 0, of W[i, j] * input i;
- arrays are laid out one per dim, [positions, batch] (batch innermost), so each
  of those terms is one vectorised multiply-add that XLA fuses with its
  neighbours: no gathers, no matmuls over zero blocks;
- embeddings: the sum over the vocab of table[v, d] * (id == v), a table lookup.

Why it is the same function (docs/verification.md has the argument): every
skipped term is a finite activation times an exact zero weight, i.e. an exact
zero, and adding an exact zero to a finite float leaves it unchanged, so each
computed sum equals the dense one up to the order of its non-zero terms (float
rounding, ~1e-7 relative). That needs every activation finite, which
`build_sparse_forward` proves from the weights first (an infinity-norm bound
through the layers); for weights it cannot prove it for (a non-finite or huge
weight) it returns None, and the caller runs the dense forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rasp_compiler.model.constants import FLOAT32_SAFE_MAGNITUDE
from rasp_compiler.model.forward import ModelShape

# Activations (and attention logits) provably below this magnitude cannot overflow
# float32 (max 3.4e38) in any partial sum, in either forward.
LOOPED_LOGITS = 16  # a head with more logit dims sums its scores in a loop (jax)
LOOP_UNROLL = 2  # logit dims per loop step (measured: fewer loop steps, partial sums still in cache)

# One output of a sparse linear map: ((input index, weight), ...) over its non-zero weights.
Terms = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class SparseHead:
    query: tuple[Terms, ...]  # per logit dim (non-zero in both W_Q and W_K), over residual dims
    key: tuple[Terms, ...]
    value: tuple[Terms, ...]  # per value dim that reaches a live output, over residual dims
    output: tuple[tuple[int, Terms], ...]  # (residual dim written, terms over value dims)


@dataclass(frozen=True)
class SparseMLP:
    hidden: tuple[Terms, ...]  # per unit kept, over residual dims
    output: tuple[tuple[int, Terms], ...]  # (residual dim written, terms over units)


@dataclass(frozen=True)
class SparseLayer:
    heads: tuple[SparseHead, ...]
    mlp: SparseMLP | None


@dataclass(frozen=True)
class SparseForward:
    """A sparse forward, weights included (hashable: the key of its compiled function)."""

    # (residual dim, token terms ((token id, weight), ...), position column or None)
    embeddings: tuple[tuple[int, Terms, tuple[float, ...] | None], ...]
    layers: tuple[SparseLayer, ...]
    readout: tuple[int, ...]
    causal: bool
    d_model: int

    @property
    def terms(self) -> int:
        """Multiply-adds per position (the dense forward: every weight of every matrix)."""
        count = 0
        for layer in self.layers:
            for head in layer.heads:
                count += sum(len(t) for part in (head.query, head.key, head.value) for t in part)
                count += sum(len(t) for _, t in head.output)
            if layer.mlp:
                count += sum(len(t) for t in layer.mlp.hidden)
                count += sum(len(t) for _, t in layer.mlp.output)
        return count


def _terms(column: np.ndarray, inputs: np.ndarray) -> Terms:
    """The non-zero weights of one output: (inputs[i], column[i]) for column[i] != 0."""
    nonzero = np.flatnonzero(column)
    return tuple(zip(inputs[nonzero].tolist(), column[nonzero].tolist()))


def _column_sum(w: np.ndarray) -> float:
    """max over columns of sum |w|: ||x @ w||_inf <= ||x||_inf * this."""
    return float(np.abs(w).sum(axis=0).max()) if w.size else 0.0


def _magnitudes_are_safe(p: dict[str, np.ndarray], shape: ModelShape) -> bool:
    """True when every activation of the forward, and every partial sum, is provably
    finite: an infinity-norm bound on the residual, layer by layer. NaN weights fail."""
    bound = float(np.abs(p["token_embed"]).max(initial=0.0)
                  + np.abs(p["pos_embed"]).max(initial=0.0))
    bounds = [bound]
    for l, layer in enumerate(shape.layers):
        q = bound * _column_sum(p[f"{l}/query"])
        k = bound * _column_sum(p[f"{l}/key"])
        v = bound * _column_sum(p[f"{l}/value"])
        bounds += [q, k, v, layer.key_size * q * k]  # |logit| <= key_size |q| |k|
        bound += v * _column_sum(p[f"{l}/linear"])  # softmax weights sum to 1: |z| <= |v|
        hidden = bound * _column_sum(p[f"{l}/linear_1"])
        bound += hidden * _column_sum(p[f"{l}/linear_2"])
        bounds += [hidden, bound]
    return all(np.isfinite(b) and b < FLOAT32_SAFE_MAGNITUDE for b in bounds)


def build_sparse_forward(params, shape: ModelShape, readout: Sequence[int]) -> SparseForward | None:
    """The sparse forward computing the final residual's `readout` dims from `params`,
    or None when the weights do not let it prove the result equals the dense forward's
    (a non-finite weight, or activations that could overflow float32)."""

    def array(module: str, name: str) -> np.ndarray:
        return np.asarray(params[module][name], dtype=np.float32)

    p = {"token_embed": array("token_embed", "embeddings"),
         "pos_embed": array("pos_embed", "embeddings")}
    for l in range(len(shape.layers)):
        for name in ("query", "key", "value", "linear"):
            p[f"{l}/{name}"] = array(f"layer_{l}/attn/{name}", "w")
        for name in ("linear_1", "linear_2"):
            p[f"{l}/{name}"] = array(f"layer_{l}/mlp/{name}", "w")
    if not _magnitudes_are_safe(p, shape):
        return None
    live = np.zeros(shape.d_model, dtype=bool)
    live[list(readout)] = True
    layers: list[SparseLayer] = []
    for l in reversed(range(len(shape.layers))):
        # The MLP reads the residual after attention: planned first, going backwards.
        w_1, w_2 = p[f"{l}/linear_1"], p[f"{l}/linear_2"]
        writes = np.flatnonzero(live & (w_2 != 0).any(axis=0))
        units = np.flatnonzero((w_1 != 0).any(axis=0) & (w_2[:, writes] != 0).any(axis=1))
        mlp = None
        if len(units):
            all_dims = np.arange(shape.d_model)
            hidden = tuple(_terms(w_1[:, u], all_dims) for u in units)
            output = tuple((int(d), _terms(w_2[units, d], np.arange(len(units))))
                           for d in writes if (w_2[units, d] != 0).any())
            mlp = SparseMLP(hidden, output)
            live[(w_1[:, units] != 0).any(axis=1)] = True
        layer = shape.layers[l]
        dk, dv = layer.key_size, layer.value_size
        heads = []
        read = np.zeros(shape.d_model, dtype=bool)  # by the heads, before any writes
        for h in range(layer.heads):
            w_q = p[f"{l}/query"][:, h * dk: (h + 1) * dk]
            w_k = p[f"{l}/key"][:, h * dk: (h + 1) * dk]
            w_v = p[f"{l}/value"][:, h * dv: (h + 1) * dv]
            w_o = p[f"{l}/linear"][h * dv: (h + 1) * dv]
            writes = np.flatnonzero(live & (w_o != 0).any(axis=0))
            values = np.flatnonzero((w_v != 0).any(axis=0) & (w_o[:, writes] != 0).any(axis=1))
            if not len(values):
                continue  # the head adds exact zeros to every live dim
            # A logit dim with a zero W_Q or W_K column adds q * 0 = 0 to every score.
            logits = np.flatnonzero((w_q != 0).any(axis=0) & (w_k != 0).any(axis=0))
            all_dims = np.arange(shape.d_model)
            heads.append(SparseHead(
                query=tuple(_terms(w_q[:, e], all_dims) for e in logits),
                key=tuple(_terms(w_k[:, e], all_dims) for e in logits),
                value=tuple(_terms(w_v[:, e], all_dims) for e in values),
                output=tuple((int(d), _terms(w_o[values, d], np.arange(len(values))))
                             for d in writes if (w_o[values, d] != 0).any()),
            ))
            for w, columns in ((w_q, logits), (w_k, logits), (w_v, values)):
                read |= (w[:, columns] != 0).any(axis=1)
        live |= read
        layers.append(SparseLayer(tuple(heads), mlp))
    layers.reverse()
    embeddings = []
    for d in np.flatnonzero(live).tolist():
        tokens = _terms(p["token_embed"][:, d], np.arange(shape.vocab_size))
        positions = p["pos_embed"][:, d]
        if tokens or positions.any():
            embeddings.append((d, tokens, tuple(positions.tolist()) if positions.any() else None))
    return SparseForward(tuple(embeddings), tuple(layers), tuple(int(d) for d in readout),
                      shape.causal, shape.d_model)


def _linear(terms: Terms, inputs) -> object:
    """sum of weight * inputs[i] over the terms, in order (weights +-1 need no multiply);
    None for no terms (an exact zero)."""
    total = None
    for i, weight in terms:
        x = inputs[i]
        if x is None:
            continue
        term = x if weight == 1.0 else -x if weight == -1.0 else x * weight
        total = term if total is None else total + term
    return total


def sparse_forward_fn(sparse: SparseForward, xp) -> Callable:
    """(token_ids [B, T], key_mask [B, T]) -> the readout columns [B, T, k], for numpy or
    jax.numpy (jit it: the sparse forward, weights included, is baked in)."""
    if xp is np:
        barrier = lambda arrays: arrays
        looped_scores = None
    else:
        import jax

        def barrier(arrays):
            """Materialise these: XLA would otherwise fuse (and duplicate) whole layers
            into a few huge loops, which take it minutes to compile."""
            present = [a for a in arrays if a is not None]
            done = iter(jax.lax.optimization_barrier(present))
            return [None if a is None else next(done) for a in arrays]

        def looped_scores(q, k):
            """sum over e of q[e] (x) k[e], [T, T, B], one logit dim per loop step: the
            partial sums stay in cache (a long fused sum spills them to memory)."""
            def step(e, scores):
                return scores + q[e][:, None, :] * k[e][None, :, :]

            first = q[0][:, None, :] * k[0][None, :, :]
            return jax.lax.fori_loop(1, q.shape[0], step, first, unroll=LOOP_UNROLL)

    def forward(token_ids, key_mask):
        ids = token_ids.T  # [T, B]: batch innermost, each dim's array is vectorised over it
        length, batch = ids.shape
        zeros = xp.zeros((length, batch), np.float32)
        # residual[d]: the dim's value [T, B], or None while it is an exact zero
        residual: list = [None] * sparse.d_model
        is_token = {}
        for d, tokens, positions in sparse.embeddings:
            for v, _ in tokens:
                if v not in is_token:
                    is_token[v] = (ids == v).astype(np.float32)
            value = _linear(tokens, is_token)
            if positions is not None:
                column = np.asarray(positions[:length], np.float32)[:, None]
                value = (zeros if value is None else value) + column
            residual[d] = value
        keys = key_mask.T  # [T(key), B]
        mask = xp.broadcast_to(keys[None], (length, length, batch))  # [query, key, B]
        if sparse.causal:
            mask = mask & np.tril(np.ones((length, length), bool))[:, :, None]
        for layer in sparse.layers:
            written = []
            for head in layer.heads:
                scores = None
                qs = barrier([_linear(t, residual) for t in head.query])
                ks = barrier([_linear(t, residual) for t in head.key])
                pairs = [(q, k) for q, k in zip(qs, ks) if q is not None and k is not None]
                if len(pairs) > LOOPED_LOGITS and xp is not np:
                    scores = looped_scores(xp.stack([q for q, _ in pairs]),
                                           xp.stack([k for _, k in pairs]))
                for q, k in pairs if scores is None else ():  # XLA fuses this sum
                    term = q[:, None, :] * k[None, :, :]
                    scores = term if scores is None else scores + term
                if scores is None:  # every logit zero
                    scores = xp.zeros((length, length, batch), np.float32)
                scores = xp.where(mask, scores, -np.inf)
                weights = xp.exp(scores - scores.max(axis=1, keepdims=True))
                pattern = weights / weights.sum(axis=1, keepdims=True)
                z = []
                for v_terms in head.value:
                    v = _linear(v_terms, residual)
                    z.append(None if v is None else (pattern * v[None, :, :]).sum(axis=1))
                written += [(d, _linear(terms, z)) for d, terms in head.output]
            _add(residual, written)
            residual = barrier(residual)
            if layer.mlp is not None:
                hidden = []
                for terms in layer.mlp.hidden:
                    pre = _linear(terms, residual)
                    hidden.append(None if pre is None else xp.maximum(pre, 0.0))
                hidden = barrier(hidden)
                _add(residual, [(d, _linear(terms, hidden)) for d, terms in layer.mlp.output])
                residual = barrier(residual)
        columns = [zeros if residual[d] is None else residual[d] for d in sparse.readout]
        return xp.stack(columns, axis=-1).transpose(1, 0, 2)  # [B, T, k]

    return forward


def _add(residual: list, written: list) -> None:
    """Add the sublayer's outputs to the residual (a None is an exact zero)."""
    for d, value in written:
        if value is not None:
            residual[d] = value if residual[d] is None else residual[d] + value
