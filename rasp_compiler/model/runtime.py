"""Running a compiled model: length buckets, the jitted (sharded) forward, the activation cache.

Axis names: B batch, T positions (BOS at 0, then tokens, then PAD), D residual
width. A `Runtime` takes checked rows of token ids (encoding.py makes them), adds
BOS, pads each group of similar lengths to a shared bucket length, masks the
padding as keys, runs one jitted forward per (batch, length) bucket, and returns
each sequence's readout columns (decoding them is encoding.py's job). The
parameters come with every call: the model owns them, and jax.jit takes them as
arguments, so one compiled forward serves any weights of the same shape.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from rasp_compiler.errors import InvalidInputError, describe_bytes
from rasp_compiler.model.forward import ModelShape, build_forward, forward_numpy
from rasp_compiler.model.residual import Readout
from rasp_compiler.model.sparse_forward import build_sparse_forward, sparse_forward_fn

DEFAULT_BATCH_CHUNK = 1024
DEFAULT_MAX_CACHE_BYTES = 2 * 1024**3  # run_with_cache refuses a larger (returned) cache
CACHE_CHUNK_BYTES = 256 * 1024**2  # run_with_cache computes at most this much per forward call
MIN_BUCKET_LENGTH = 8  # shorter inputs share one compiled shape: compiling costs more than padding
MIN_BUCKET_BATCH = 8
MIN_BUCKET_FILL = 64  # a length bucket with fewer inputs joins the next longer one
SPARSE_BATCH = 1024  # rows per sparse forward call: its [T, rows] arrays stay in cache
MAX_SPARSE_COMPILED = 8  # sparse forwards kept compiled (one per weight pattern)


class ActivationCache(dict):
    """Activations by TransformerLens hook name, batch first; `lengths` excludes BOS."""

    def __init__(self, activations: Mapping[str, np.ndarray], lengths: Sequence[int]):
        super().__init__(activations)
        self.lengths = tuple(lengths)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks, batch={len(self.lengths)})"


class Runtime:
    """The bucketed, jitted forward of one model shape, and its compiled functions."""

    def __init__(self, shape: ModelShape, max_seq_len: int, *, bos_id: int, pad_id: int):
        self.shape = shape
        self.max_seq_len = max_seq_len
        self.bos_id, self.pad_id = bos_id, pad_id
        self._forward = build_forward(shape, with_cache=False)
        self._forward_cached = build_forward(shape, with_cache=True)
        self.jitted: dict[str, Any] = {}  # by name: "slice:<label>" or "cache"
        self.sparse_jitted: dict[Any, Any] = {}  # by SparseForward (weights included)

    def pack(self, rows: list[list[int]], length: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids [batch, length] (BOS, the row, PAD) and the key mask; rows past len(rows)
        are filler."""
        ids = np.full((batch, length), self.pad_id, dtype=np.int32)
        mask = np.zeros((batch, length), dtype=bool)
        mask[:, 0] = True  # filler rows of a padded batch keep one key: no all-masked softmax
        for b, row in enumerate(rows):
            ids[b, 0] = self.bos_id
            ids[b, 1: len(row) + 1] = row
            mask[b, : len(row) + 1] = True
        return ids, mask

    def bucket_length(self, n_tokens: int) -> int:
        """Padded length (BOS included): a power of two, at least MIN_BUCKET_LENGTH."""
        bucket = max(MIN_BUCKET_LENGTH, 1 << math.ceil(math.log2(n_tokens + 1)))
        return min(bucket, self.max_seq_len + 1)

    def jit(self, name: str, readout: Readout | None) -> Callable:
        """The jitted forward `(params, ids, mask)`, compiled once per name: with a
        readout, the final residual's readout columns; without, (residual, cache)."""
        if name not in self.jitted:
            if readout is None:
                fn = lambda params, ids, mask: self._forward_cached.apply(params, None, ids, mask)
            else:
                index = np.asarray(readout.indices, dtype=np.int32)
                fn = lambda params, ids, mask: self._forward.apply(params, None, ids, mask)[..., index]
            self.jitted[name] = jax.jit(fn)
        return self.jitted[name]

    def sparse_jit(self, params, readout: Readout) -> Callable | None:
        """The jitted sparse forward `(ids, mask)` -> `readout` columns, planned from
        `params` as they are now (sparse_forward.py), or None where it cannot be shown
        equal to the dense forward. Compiled once per sparse forward (the weights are part of it)."""
        sparse = build_sparse_forward(params, self.shape, readout.indices)
        if sparse is None:
            return None
        if sparse not in self.sparse_jitted:
            if len(self.sparse_jitted) >= MAX_SPARSE_COMPILED:
                self.sparse_jitted.pop(next(iter(self.sparse_jitted)))
            self.sparse_jitted[sparse] = jax.jit(sparse_forward_fn(sparse, jax.numpy))
        return self.sparse_jitted[sparse]

    def sharded(self, ids: np.ndarray, mask: np.ndarray):
        """Spread the batch axis over every JAX device (one device: unchanged)."""
        devices = jax.devices()
        if len(devices) == 1:
            return ids, mask
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
        return jax.device_put(ids, sharding), jax.device_put(mask, sharding)

    def residual_slices(self, params, rows: list[list[int]], readout: Readout,
                        batch_chunk: int = DEFAULT_BATCH_CHUNK,
                        backend: str = "jax") -> list[np.ndarray]:
        """Per row, the final residual's `readout` columns [len(row) + 1, k], BOS first.

        backend "jax" runs the jitted haiku model, its batches sharded over all JAX
        devices; "numpy" runs `forward_numpy` (no compilation: for many tiny models).
        """
        if backend == "numpy":
            index = list(readout.indices)
            forward = lambda params, ids, mask: forward_numpy(params, self.shape, ids, mask)[..., index]
        elif backend == "jax":
            jitted = self.jit(f"slice:{readout.label}", readout)
            forward = lambda params, ids, mask: jitted(params, *self.sharded(ids, mask))
        else:
            raise InvalidInputError(f"backend must be 'jax' or 'numpy', got {backend!r}")
        results: list[np.ndarray | None] = [None] * len(rows)
        buckets: dict[int, list[int]] = {}
        for b, row in enumerate(rows):
            buckets.setdefault(self.bucket_length(len(row)), []).append(b)
        # Each distinct shape costs an XLA compilation: sparse buckets move up one size.
        lengths = sorted(buckets)
        for shorter, longer in zip(lengths, lengths[1:]):
            if len(buckets[shorter]) < MIN_BUCKET_FILL:
                buckets[longer] = buckets.pop(shorter) + buckets[longer]
        for length, members in sorted(buckets.items()):
            for start in range(0, len(members), batch_chunk):
                chunk = members[start: start + batch_chunk]
                padded = max(MIN_BUCKET_BATCH, 1 << math.ceil(math.log2(len(chunk))))
                padded = -(-padded // jax.device_count()) * jax.device_count()
                ids, mask = self.pack([rows[b] for b in chunk], length, padded)
                out = np.asarray(forward(params, ids, mask))
                for i, b in enumerate(chunk):
                    results[b] = out[i, : len(rows[b]) + 1]
        return results

    def readout_columns(self, params, blocks: Sequence[np.ndarray], readout: Readout,
                        backend: str = "jax", batch: int | None = None,
                        sparse_forward: Callable | None = None) -> list[np.ndarray]:
        """Per block of same-length id rows [B, n], the final residual's `readout` columns
        [B, n, k] (BOS dropped): the array path of `residual_slices`, no per-row Python.

        Blocks of one length bucket are packed together (sparse buckets join the next
        longer one) and run `batch` rows at a time (default: the smallest power of two
        holding the bucket, at most DEFAULT_BATCH_CHUNK). backend "jax": every call is
        dispatched (XLA runs them asynchronously) before any result is read; the last
        call of a bucket is padded with filler rows, so a bucket compiles one shape
        however many rows it gets; batches are sharded over every JAX device. "numpy":
        `forward_numpy`, nothing to compile, no filler rows. `sparse_forward` (jax only):
        a function from `sparse_jit` (planned once by the caller for these params), run
        SPARSE_BATCH rows a call instead of the dense forward.
        """
        if backend not in ("jax", "numpy"):
            raise InvalidInputError(f"backend must be 'jax' or 'numpy', got {backend!r}")
        blocks = [np.asarray(block, dtype=np.int32) for block in blocks]
        out: list[np.ndarray | None] = [None] * len(blocks)
        if backend == "numpy":
            index = np.asarray(readout.indices, dtype=np.int64)
            weights = jax.tree_util.tree_map(lambda w: np.asarray(w, np.float32), params)
            forward = lambda ids, mask: forward_numpy(weights, self.shape, ids, mask)[..., index]
            devices = 1
        else:
            if sparse_forward is not None:
                forward = lambda ids, mask: sparse_forward(*self.sharded(ids, mask))  # async
                batch = SPARSE_BATCH
            else:
                jitted = self.jit(f"slice:{readout.label}", readout)
                forward = lambda ids, mask: jitted(params, *self.sharded(ids, mask))  # async
            devices = jax.device_count()
        buckets: dict[int, list[int]] = {}
        for i, block in enumerate(blocks):
            buckets.setdefault(self.bucket_length(block.shape[1]), []).append(i)
        # Each distinct shape costs an XLA compilation (and a numpy forward call reads
        # every weight): sparse buckets move up one size. With a fixed jax batch, a
        # bucket that fills less than one batch would be padded to it anyway: it moves
        # up too (its rows cost a longer length instead of a call of their own).
        fill = max(MIN_BUCKET_FILL, batch or 0) if backend == "jax" else MIN_BUCKET_FILL
        lengths = sorted(buckets)
        for shorter, longer in zip(lengths, lengths[1:]):
            if sum(len(blocks[i]) for i in buckets[shorter]) < fill:
                buckets[longer] = buckets.pop(shorter) + buckets[longer]
        pending = []
        for length, members in sorted(buckets.items()):
            ids, mask = self.pack_array([blocks[i] for i in members], length)
            rows = len(ids)
            size = batch or min(DEFAULT_BATCH_CHUNK, max(MIN_BUCKET_BATCH, 1 << math.ceil(
                math.log2(max(rows, 1)))))
            size = -(-size // devices) * devices
            results = []
            for start in range(0, rows, size):
                part_ids, part_mask = ids[start: start + size], mask[start: start + size]
                filler = size - len(part_ids) if backend == "jax" else 0
                if filler:  # one compiled shape per bucket: pad the last call
                    part_ids = np.concatenate(
                        [part_ids, np.full((filler, length), self.pad_id, np.int32)])
                    part_mask = np.concatenate(
                        [part_mask, np.eye(1, length, dtype=bool).repeat(filler, axis=0)])
                results.append((forward(part_ids, part_mask), len(part_ids) - filler))
            pending.append((members, results))
        for members, results in pending:  # every call dispatched: now wait for the results
            columns = np.concatenate([np.asarray(result)[:rows] for result, rows in results])
            start = 0
            for i in members:
                count, n = blocks[i].shape
                out[i] = columns[start: start + count, 1: n + 1]
                start += count
        return out

    def pack_array(self, blocks: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids [rows, length] (BOS, the row, PAD) and the key mask of blocks of id rows,
        each block [B, n] with n < length, stacked in order."""
        rows = sum(len(block) for block in blocks)
        ids = np.full((rows, length), self.pad_id, dtype=np.int32)
        mask = np.zeros((rows, length), dtype=bool)
        ids[:, 0] = self.bos_id
        start = 0
        for block in blocks:
            count, n = block.shape
            ids[start: start + count, 1: n + 1] = block
            mask[start: start + count, : n + 1] = True
            start += count
        return ids, mask

    def run_with_cache(self, params, rows: list[list[int]], readout: Readout, *,
                       max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
                       batch_chunk: int | None = None, backend: str = "jax",
                       hooks: Mapping[str, Callable] | None = None,
                       ) -> tuple[list[np.ndarray], ActivationCache]:
        """Per row the final residual's `readout` columns [len(row) + 1, k] (BOS first),
        and every activation, all rows padded to one length. `backend` as in
        `residual_slices`: "numpy" records the same hooks with `forward_numpy`.

        The forward runs on chunks of `batch_chunk` rows (default: as many as fit
        CACHE_CHUNK_BYTES of activations), each copied into arrays sized for the
        whole batch, so memory holds the returned cache and one chunk. A cache
        larger than `max_cache_bytes` (float32) is refused before running, with the
        size it would need and how many inputs fit. `hooks` (numpy only): activation
        patches, see forward_numpy; the cache records what they return.
        """
        _check_hooks_backend(hooks, backend)
        if not rows:
            raise InvalidInputError(
                "run_with_cache got an empty batch; give at least one sequence (the cache's "
                "arrays are padded to the longest input)"
            )
        for name, value in (("max_cache_bytes", max_cache_bytes), ("batch_chunk", batch_chunk)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
        length = self.bucket_length(max(len(r) for r in rows))
        per_input = self.cache_bytes_per_input(length)
        if per_input * len(rows) > max_cache_bytes:
            raise InvalidInputError(
                f"the activation cache of {len(rows):,} inputs padded to {length} positions "
                f"would take {describe_bytes(per_input * len(rows))} "
                f"({describe_bytes(per_input)} per input), over max_cache_bytes="
                f"{max_cache_bytes:,}; pass at most {max_cache_bytes // per_input:,} inputs "
                f"per call, or raise max_cache_bytes"
            )
        chunk = min(len(rows), batch_chunk or max(1, CACHE_CHUNK_BYTES // per_input))
        if backend == "jax":
            forward = self.jit("cache", None)
        elif backend == "numpy":
            def forward(params, ids, mask):
                cache: dict[str, np.ndarray] = {}
                return forward_numpy(params, self.shape, ids, mask, cache=cache,
                                     hooks=hooks), cache
        else:
            raise InvalidInputError(f"backend must be 'jax' or 'numpy', got {backend!r}")
        index = list(readout.indices)
        slices: list[np.ndarray] = []
        activations: dict[str, np.ndarray] = {}
        for start in range(0, len(rows), chunk):
            part = rows[start: start + chunk]
            # The last chunk is padded with filler rows: one compiled shape for all chunks.
            ids, mask = self.pack(part, length, chunk)
            residual, cache = forward(params, ids, mask)
            residual = np.asarray(residual)
            # Indexing with a list copies: no slice keeps the chunk's residual alive.
            slices.extend(residual[b, : len(row) + 1][:, index] for b, row in enumerate(part))
            for name, value in cache.items():
                value = np.asarray(value)
                if name not in activations:
                    activations[name] = np.empty((len(rows),) + value.shape[1:], value.dtype)
                activations[name][start: start + len(part)] = value[: len(part)]
        return slices, ActivationCache(activations, [len(r) for r in rows])

    def cache_bytes_per_input(self, length: int) -> int:
        """Bytes (float32) `run_with_cache` keeps per input padded to `length` positions
        (BOS included): every hook's activation, summed over layers."""
        d, t = self.shape.d_model, length
        per_input = 2 * t * d  # hook_embed, hook_pos_embed
        for layer in self.shape.layers:
            h, dk, dv = layer.heads, layer.key_size, layer.value_size
            per_input += 5 * t * d  # resid_pre, attn_out, resid_mid, mlp_out, resid_post
            per_input += t * h * (2 * dk + 2 * dv)  # q, k, v, z
            per_input += 2 * h * t * t  # attn_scores, pattern
            per_input += 2 * t * layer.mlp_hidden  # mlp pre, post
        return 4 * per_input


def _check_hooks_backend(hooks, backend: str) -> None:
    if hooks and backend != "numpy":
        raise InvalidInputError(
            f"activation hooks run in the numpy forward only (backend='numpy'), got "
            f"backend={backend!r}: a jitted forward would compile again for every hook function"
        )
