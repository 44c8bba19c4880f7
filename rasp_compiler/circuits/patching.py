"""Edge patching in our numpy forward (`model.forward.forward_numpy`, through its hooks).

Patching edge (source, destination, input) on a pair: the destination's input gets the
source's contribution from the corrupted run instead of the clean one, and nothing else
changes: its input is the clean residual plus delta = ablated(source) - clean(source), so
only this destination sees the change; what the destination then writes flows on to
every later node as usual (the edge patching of ACDC and auto-circuit). Since a head's
q, k, v and an MLP's pre-activation are linear in its input, the patch is delta @ W added
at `blocks.{l}.attn.hook_{q,k,v}` (that head's slice) or `blocks.{l}.mlp.hook_pre`; the
output's patch adds delta to the final residual before the readout. An internal matrix
edge (.q -> .o) replaces the head's q (its slice of hook_q) by the ablated one, and
.in -> .out an MLP's hook_pre.

ablated(source) is the source's output on the corrupt input (resample), 0 (zero), or its
mean over the tried inputs of the same length, position by position (mean).

Pairs are run in chunks of CHUNK rows, each padded to its longest input (the padding is
masked as keys and never decoded, so it changes nothing at real positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rasp_compiler.circuits.network import Edge, Network
from rasp_compiler.circuits.pairs import PairSample
from rasp_compiler.model.constants import ATOL, RTOL
from rasp_compiler.model.encoding import EMPTY, decode_indices, decode_readout, readout_numbers
from rasp_compiler.model.forward import forward_numpy
from rasp_compiler.model.hooks import hook

CHUNK = 512


@dataclass(frozen=True)
class PatchExample:
    """One pair on which patching an edge changes the decoded output."""

    clean: tuple
    corrupt: tuple | None  # None for zero and mean ablation
    clean_output: tuple
    patched_output: tuple


@dataclass(frozen=True)
class EdgeEffect:
    """How often patching one edge changes the decoded output: on `changed` of `tried`
    pairs (`share`), `example` one of them (None when it never does)."""

    changed: int
    tried: int
    example: PatchExample | None

    @property
    def share(self) -> float:
        return self.changed / self.tried if self.tried else 0.0


def encode_ids(network: Network, rows) -> list[list[int]]:
    return network.compiled.encode([list(row) for row in rows])


class Batch:
    """One chunk of pairs run clean (and corrupted), and every patch of it."""

    def __init__(self, network: Network, clean: list[list[int]], corrupt: list[list[int]] | None,
                 ablation: str, means: dict | None = None):
        self.network = network
        self.ablation = ablation
        self.lengths = np.array([len(row) for row in clean])
        self.ids, self.mask = _pack(network, clean)
        self.clean_cache: dict = {}
        self.final = forward_numpy(network.params, network.shape, self.ids, self.mask,
                                   cache=self.clean_cache)
        self.cols = self.final @ network.readout_matrix
        self.real = self.mask[:, 1:]
        self.codes = outputs_of(network, self.cols)
        self.corrupt_cache: dict | None = None
        if corrupt is not None:
            self.corrupt_ids, _ = _pack(network, corrupt)
            self.corrupt_cache = {}
            self.corrupt_final = forward_numpy(network.params, network.shape, self.corrupt_ids,
                                               self.mask, cache=self.corrupt_cache)
        self.means = means
        self._layers = [network.layer_weights(l) for l in range(network.depth)]

    # -------------------------------------------------------------- activations

    def contribution(self, node: str, cache: dict) -> np.ndarray:
        """What `node` adds to the residual [B, T, D] in the run recorded in `cache`."""
        n = self.network.by_name[node]
        if n.kind in ("embed", "pos_embed"):
            return np.asarray(cache["hook_" + n.kind])
        if n.kind in ("head", "o"):
            z = cache[hook(n.layer, "attn.hook_z")][:, :, n.head, :]
            return z @ self._layers[n.layer]["o"][n.head]
        if n.kind == "attn":
            return cache[hook(n.layer, "hook_attn_out")]
        return cache[hook(n.layer, "hook_mlp_out")]  # mlp, mlp.out

    def activation(self, node: str, cache: dict) -> np.ndarray:
        """A matrix node's own output: a head's q, k or v slice, or an MLP's pre-activation."""
        n = self.network.by_name[node]
        if n.kind == "mlp.in":
            return cache[hook(n.layer, "mlp.hook_pre")]
        return cache[hook(n.layer, f"attn.hook_{n.kind}")][:, :, n.head, :]

    def ablated(self, key: tuple, clean_value: np.ndarray, read: Callable) -> np.ndarray:
        if self.ablation == "resample":
            return read(self.corrupt_cache)
        if self.ablation == "zero":
            return np.zeros_like(clean_value)
        out = np.zeros_like(clean_value)
        for n in np.unique(self.lengths):
            out[self.lengths == n, : n + 1] = self.means[key][n]
        return out

    def delta(self, source: str) -> np.ndarray:
        clean = self.contribution(source, self.clean_cache)
        ablated = self.ablated(("out", source), clean,
                               lambda cache: self.contribution(source, cache))
        return ablated - clean

    # -------------------------------------------------------------- patches

    def patched_columns(self, edge: Edge) -> np.ndarray:
        """The readout columns [B, T, k] with `edge` patched."""
        network = self.network
        destination = network.by_name[edge.destination]
        if destination.kind == "output":
            return (self.final + self.delta(edge.source)) @ network.readout_matrix
        l, h = destination.layer, destination.head
        w = self._layers[l]
        source = network.by_name[edge.source]
        if source.layer == l and source.position == destination.position:  # internal edge
            clean = self.activation(edge.source, self.clean_cache)
            value = self.ablated(("act", edge.source), clean,
                                 lambda cache: self.activation(edge.source, cache))
            if source.kind == "mlp.in":
                hooks = {hook(l, "mlp.hook_pre"): lambda pre: value}
            else:
                hooks = {hook(l, f"attn.hook_{source.kind}"): _set_head(h, value)}
        else:
            delta = self.delta(edge.source)
            if destination.kind in ("mlp", "mlp.in"):
                hooks = {hook(l, "mlp.hook_pre"): lambda pre: pre + delta @ w["w1"]}
            elif destination.kind == "attn":
                change = np.einsum("btd,dhe->bthe", delta, w[edge.input])
                hooks = {hook(l, f"attn.hook_{edge.input}"): lambda x: x + change}
            else:  # a head, or its .q / .k / .v
                change = delta @ w[edge.input][:, h, :]
                hooks = {hook(l, f"attn.hook_{edge.input}"): _add_head(h, change)}
        final = forward_numpy(network.params, network.shape, self.ids, self.mask, hooks=hooks)
        return final @ network.readout_matrix

    def changed(self, columns: np.ndarray) -> np.ndarray:
        """Per pair: does the decoded output differ from the clean run's anywhere?"""
        return differs(self.network, outputs_of(self.network, columns), self.codes, self.real)

    def change_size(self, columns: np.ndarray) -> np.ndarray:
        """Per pair: the total absolute change of the readout (the output's columns, or its
        number), summed over positions."""
        if self.network.readout.numerical:
            change = np.abs(outputs_of(self.network, columns) - self.codes)
        else:
            change = np.abs(columns - self.cols)[:, 1:].sum(axis=-1)
        return np.where(self.real, change, 0.0).sum(axis=1)

    def example(self, b: int, columns: np.ndarray, clean: tuple, corrupt: tuple | None
                ) -> PatchExample:
        n = int(self.lengths[b])
        return PatchExample(clean, corrupt, tuple(decode_row(self.network, self.cols[b, 1: n + 1])),
                            tuple(decode_row(self.network, columns[b, 1: n + 1])))


def _set_head(h: int, value: np.ndarray):
    def hook(x):
        x = x.copy()
        x[:, :, h, :] = value
        return x
    return hook


def _add_head(h: int, change: np.ndarray):
    def hook(x):
        x = x.copy()
        x[:, :, h, :] += change
        return x
    return hook


def _pack(network: Network, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ids [B, T] (BOS, tokens, PAD) and the key mask, T the longest row plus BOS."""
    runtime = network.compiled.runtime
    length = max(len(row) for row in rows) + 1
    ids = np.full((len(rows), length), runtime.pad_id, np.int32)
    mask = np.zeros((len(rows), length), bool)
    ids[:, 0] = runtime.bos_id
    for b, row in enumerate(rows):
        ids[b, 1: len(row) + 1] = row
        mask[b, : len(row) + 1] = True
    return ids, mask


def outputs_of(network: Network, columns: np.ndarray) -> np.ndarray:
    """The decoded output at every position after BOS: value indices (EMPTY for None,
    UNCLEAN for a blend; a compressed model's nearest value instead), or numbers."""
    columns = columns[:, 1:]
    readout = network.readout
    if readout.numerical:
        return readout_numbers(readout, columns)
    if network.nearest:
        from rasp_compiler.superposition.compressed_forward import NONE_THRESHOLD

        if columns.shape[-1] == 0:
            return np.full(columns.shape[:-1], EMPTY)
        return np.where(columns.max(axis=-1) >= NONE_THRESHOLD, columns.argmax(axis=-1), EMPTY)
    return decode_indices(readout, columns)


def differs(network: Network, got: np.ndarray, clean: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per row: does `got` differ from `clean` at a real position (numbers: beyond
    verify's tolerance, atol + rtol * |clean|)?"""
    if network.readout.numerical:
        different = ~(np.abs(got - clean) <= ATOL + RTOL * np.abs(clean))
    else:
        different = got != clean
    return np.any(different & real, axis=1)


def decode_row(network: Network, columns: np.ndarray) -> list:
    if network.nearest:
        from rasp_compiler.superposition.compressed_forward import decode_nearest

        return decode_nearest(network.readout, columns)
    return decode_readout(network.readout, columns)


def chunks(network: Network, pairs: PairSample, ablation: str):
    """(offset, Batch) for every chunk of CHUNK pairs; mean ablation first measures the
    means over every tried input, by length."""
    clean = encode_ids(network, pairs.clean)
    corrupt = encode_ids(network, pairs.corrupt) if ablation == "resample" else None
    means = _means(network, clean) if ablation == "mean" else None
    for start in range(0, len(clean), CHUNK):
        yield start, Batch(network, clean[start: start + CHUNK],
                           None if corrupt is None else corrupt[start: start + CHUNK],
                           ablation, means)


def _means(network: Network, clean: list[list[int]]) -> dict:
    """Per source (("out", node)) and matrix input (("act", node)): its mean over the
    clean inputs of each length [T, ...], as {length: mean}."""
    sums: dict = {}
    counts: dict[int, int] = {}
    for start in range(0, len(clean), CHUNK):
        batch = Batch(network, clean[start: start + CHUNK], None, "zero")
        values = {("out", name): batch.contribution(name, batch.clean_cache)
                  for name in network.writes}
        values.update({("act", node.name): batch.activation(node.name, batch.clean_cache)
                       for node in network.nodes if node.kind in ("q", "k", "v", "mlp.in")})
        for n in np.unique(batch.lengths):
            rows = batch.lengths == n
            counts[n] = counts.get(n, 0) + int(rows.sum())
            for key, value in values.items():
                total = sums.setdefault(key, {})
                part = value[rows, : n + 1].sum(axis=0)  # BOS and the n tokens
                total[n] = total[n] + part if n in total else part
    return {key: {n: total / counts[n] for n, total in by_length.items()}
            for key, by_length in sums.items()}


def edge_effects(network: Network, edges: list[Edge], pairs: PairSample, ablation: str
                 ) -> dict[Edge, EdgeEffect]:
    """Each edge patched alone on every pair: how many pairs change, and the first that does."""
    changed = {edge: 0 for edge in edges}
    examples: dict[Edge, PatchExample] = {}
    for start, batch in chunks(network, pairs, ablation):
        for edge in edges:
            columns = batch.patched_columns(edge)
            rows = np.flatnonzero(batch.changed(columns))
            changed[edge] += len(rows)
            if len(rows) and edge not in examples:
                b = int(rows[0])
                examples[edge] = batch.example(
                    b, columns, pairs.clean[start + b],
                    None if pairs.corrupt is None or ablation != "resample"
                    else pairs.corrupt[start + b])
    return {edge: EdgeEffect(changed[edge], len(pairs), examples.get(edge)) for edge in edges}


def patching_scores(network: Network, edges: list[Edge], pairs: PairSample, ablation: str
                    ) -> dict[Edge, float]:
    """Activation patching per edge: the mean over pairs of the readout's total absolute
    change when that edge alone is patched."""
    totals = {edge: 0.0 for edge in edges}
    for _, batch in chunks(network, pairs, ablation):
        for edge in edges:
            totals[edge] += float(batch.change_size(batch.patched_columns(edge)).sum())
    return {edge: total / len(pairs) for edge, total in totals.items()}
