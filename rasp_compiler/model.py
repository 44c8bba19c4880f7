"""The compiled model at run time: encoder, jitted batched forward, decoder, cache, save/load.

Axis names used below: B batch, T positions (BOS at 0, then tokens, then PAD),
D residual width. `run` takes token sequences without BOS; the model adds BOS,
pads each group of similar lengths to a shared bucket length, masks the padding
as keys, runs one jitted forward per (batch, length) bucket, and decodes.
"""

from __future__ import annotations

import math
import numbers
from itertools import compress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler import tracr_view
from rasp_compiler.assemble import ModelShape, build_forward, forward_numpy
from rasp_compiler.errors import InvalidInputError, describe_bytes
from rasp_compiler.identity import identity_key
from rasp_compiler.lower import Readout
from rasp_compiler.residual import NUMERICAL, ResidualLayout
from rasp_compiler.tracr_view import TracrOutput

DECODE_TOLERANCE = 0.1  # a clean one-hot has its value within this of 1, the rest within it of 0
DEFAULT_BATCH_CHUNK = 1024
DEFAULT_MAX_CACHE_BYTES = 2 * 1024**3  # run_with_cache refuses a larger (returned) cache
CACHE_CHUNK_BYTES = 256 * 1024**2  # run_with_cache computes at most this much per forward call
MIN_BUCKET_LENGTH = 8  # shorter inputs share one compiled shape: compiling costs more than padding
MIN_BUCKET_BATCH = 8
MIN_BUCKET_FILL = 64  # a length bucket with fewer inputs joins the next longer one


@dataclass(frozen=True)
class Unclean:
    """A position where the residual holds no single clean value (e.g. a mixed aggregate)."""

    label: str
    weights: tuple[tuple[Any, float], ...]  # the values with non-negligible weight

    def __repr__(self) -> str:
        shown = ", ".join(f"{v!r}={w:.2f}" for v, w in self.weights)
        return f"<unclean {self.label}: {shown}>"


@dataclass(frozen=True)
class HeadInfo:
    """What one head implements; enough to explain it without the RASP program."""

    label: str
    source: str
    selector: str
    kind: str
    layer: int
    index: int
    coldness: float
    leak_bound: float
    atoms: tuple[str, ...]
    key_size: int
    value_size: int
    expression: str = ""  # the selector as written (an inclusion-exclusion part says so)
    queries: tuple[str, ...] = ()  # SOps the query side reads
    keys: tuple[str, ...] = ()  # SOps the key side reads
    values: tuple[str, ...] = ()  # SOps the value side reads

    @property
    def name(self) -> str:
        """TransformerLens-style position: L{layer}H{index} (layers counted from 0)."""
        return f"L{self.layer - 1}H{self.index}"


@dataclass(frozen=True)
class MLPPartInfo:
    label: str
    construction: str
    units: tuple[str, ...]
    leaves: tuple[str, ...]
    outputs: tuple[str, ...]
    start: int
    stop: int


@dataclass(frozen=True)
class LayerInfo:
    index: int  # 1-based
    heads: tuple[HeadInfo, ...]
    mlp: tuple[MLPPartInfo, ...]
    mlp_hidden: int


@dataclass(frozen=True)
class SelectorEntry:
    """One selector that reaches a head: how it was written, normalised and built."""

    selector: str
    used_by: str
    written: str
    normal_form: str
    construction: str
    cost: str
    alternatives: tuple[tuple[str, str], ...]  # (construction, its cost)
    flags: tuple[str, ...]
    heads: tuple[str, ...]
    score: float = 0.0


class SelectorReport(tuple):
    """The selector report: one `SelectorEntry` per selector; prints as a table."""

    def flagged(self) -> list[SelectorEntry]:
        return [entry for entry in self if entry.flags]

    def entry(self, selector: str) -> SelectorEntry:
        for entry in self:
            if entry.selector == selector:
                return entry
        raise KeyError(f"no selector {selector!r} in this model; have {[e.selector for e in self]}")

    def __str__(self) -> str:
        lines = []
        for e in self:
            lines.append(f"{e.selector} (used by {e.used_by}; heads {', '.join(e.heads)})")
            lines.append(f"  written:      {e.written}")
            lines.append(f"  normal form:  {e.normal_form}")
            lines.append(f"  construction: {e.construction}: {e.cost}")
            for name, cost in e.alternatives:
                lines.append(f"  alternative:  {name}: {cost}")
            for flag in e.flags:
                lines.append(f"  FLAG {flag}")
        return "\n".join(lines) if lines else "(no selectors)"


@dataclass(frozen=True)
class ModelInfo:
    """The compiler's account of the model: layer plan, depth, bounds, warnings."""

    output: str
    layers: tuple[LayerInfo, ...]
    lower_bound: int
    fusion_notes: tuple[str, ...] = ()
    folded: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    aggregate_checks: tuple[tuple[str, str, str], ...] = ()  # (label, status, reason)
    selectors: tuple[SelectorEntry, ...] = ()
    causal: bool = False  # attention masked to keys at or before the query
    causal_invariance: str = ""  # causal models: the invariance verdict, in words
    causally_invariant: bool | None = None  # None: not checked (bidirectional model)
    compile_seconds: float = 0.0

    @property
    def depth(self) -> int:
        return len(self.layers)


class ActivationCache(dict):
    """Activations by TransformerLens hook name, batch first; `lengths` excludes BOS."""

    def __init__(self, activations: Mapping[str, np.ndarray], lengths: Sequence[int]):
        super().__init__(activations)
        self.lengths = tuple(lengths)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks, batch={len(self.lengths)})"


def lookup_ids(ids: Mapping[Any, int], tokens: Sequence, where: str, known: str) -> list[int]:
    """Each token's id; an unknown token is an InvalidInputError naming its position.

    A token must be the key itself, not an equal value of another type (True or 1.0
    for the token 1; identity.py). `where` prefixes the position ("input 3, "),
    `known` names the map for the message. The runtime's `encode` has a faster path
    for the same rule.
    """
    keys = {i: key for key, i in ids.items()}
    out = []
    for position, token in enumerate(tokens):
        try:
            token_id = ids[token]
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"{where}position {position}: token {token!r} is not in {known} {list(ids)}"
            ) from None
        if identity_key(token) != identity_key(keys[token_id]):
            raise InvalidInputError(
                f"{where}position {position}: token {token!r} ({type(token).__name__}) is not in "
                f"{known} {list(ids)}; it equals {keys[token_id]!r} "
                f"({type(keys[token_id]).__name__}) but is a different value"
            )
        out.append(token_id)
    return out


class CompiledModel:
    """A transformer compiled from a RASP program, with its encoder and decoder."""

    def __init__(
        self,
        *,
        params: Mapping[str, Mapping[str, Any]],
        shape: ModelShape,
        vocab: tuple,
        max_seq_len: int,
        bos: Any,
        pad: Any,
        layout: ResidualLayout,
        readouts: Mapping[str, Readout],
        info: ModelInfo,
        program=None,
        lowered=None,
        ops=None,
        schedule=None,
    ):
        self.params = jax.tree_util.tree_map(jnp.asarray, dict(params))
        self.shape = shape
        self.vocab = tuple(vocab)
        self.max_seq_len = max_seq_len
        self.bos = bos
        self.pad = pad
        self.layout = layout
        self.readouts = dict(readouts)
        self.info = info
        self.program = program
        self.lowered = lowered
        self.ops = ops
        self.schedule = schedule
        self._token_ids = {token: i for i, token in enumerate(self.vocab)}
        # A token of one of these types that equals a vocab token is that token; any
        # other (True or 1.0 given for the token 1: identity.py) takes the checked path.
        self._exact_token_types = _exact_token_types(self.vocab)
        # Vocab tokens an equal value of the same type may still differ from (0.0 and
        # -0.0, (1,) and (True,)): their matches are compared by identity key too.
        self._keyed_tokens = {i: identity_key(t) for i, t in enumerate(self.vocab)
                              if isinstance(t, (tuple, frozenset))
                              or (isinstance(t, (float, complex)) and 0 in (t.real, t.imag))}
        self._forward = build_forward(shape, with_cache=False)
        self._forward_cached = build_forward(shape, with_cache=True)
        self._jitted: dict[str, Any] = {}

    # ------------------------------------------------------------------ facts

    @property
    def output(self) -> str:
        return self.info.output

    @property
    def depth(self) -> int:
        return len(self.shape.layers)

    @property
    def lower_bound(self) -> int:
        return self.info.lower_bound

    @property
    def causal(self) -> bool:
        """True for a decoder-only model (attention masked to keys at or before the query)."""
        return self.shape.causal

    @property
    def coldness(self) -> dict[str, float]:
        return {h.label: h.coldness for layer in self.info.layers for h in layer.heads}

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.info.warnings

    # ------------------------------------------------------------------ diagnostics

    def layout_report(self):
        """Per layer, what each head and MLP part computes; where every node lives."""
        from rasp_compiler.diagnostics import layout

        return layout(self)

    def residual_map(self):
        """Each SOp's residual dimensions, who writes them and who reads them."""
        from rasp_compiler.diagnostics import residual_map

        return residual_map(self)

    def head_to_selector(self) -> dict[str, str]:
        from rasp_compiler.diagnostics import head_to_selector

        return head_to_selector(self)

    def selector_to_heads(self) -> dict[str, list[str]]:
        from rasp_compiler.diagnostics import selector_to_heads

        return selector_to_heads(self)

    def check_patterns(self, inputs, tolerance: float | None = None):
        """Every head's attention pattern against the exact selector matrix (see diagnostics)."""
        from rasp_compiler.diagnostics import DEFAULT_PATTERN_TOLERANCE, check_patterns

        return check_patterns(self, inputs, tolerance or DEFAULT_PATTERN_TOLERANCE)

    def read_back(self, inputs):
        """Every SOp decoded after the sublayer writing it, against the evaluator."""
        from rasp_compiler.diagnostics import read_back

        return read_back(self, inputs)

    def attention_heatmaps(self, tokens, path):
        """PNG: every head's pattern on `tokens`, the ideal one beside it (needs matplotlib)."""
        from rasp_compiler.pictures import attention_heatmaps

        return attention_heatmaps(self, tokens, path)

    def graph_picture(self, path):
        """PNG or SVG (by suffix) of the program's graph, nodes coloured by layer."""
        from rasp_compiler.pictures import graph_picture

        return graph_picture(self, path)

    def html_report(self, tokens, path):
        """A self-contained HTML page: layout, residual map, selector report, heatmaps."""
        from rasp_compiler.report import html_report

        return html_report(self, tokens, path)

    def selector_report(self) -> SelectorReport:
        """Every selector that reaches a head: as written, normal form, construction,
        its cost, the alternatives' costs, and flags (exponential, extra-heads,
        extra-layer) saying by how much."""
        return SelectorReport(self.info.selectors)

    def parameter_count(self, nonzero: bool = False) -> int:
        leaves = jax.tree_util.tree_leaves(self.params)
        if nonzero:
            return int(sum(int(jnp.count_nonzero(x)) for x in leaves))
        return int(sum(x.size for x in leaves))

    def __repr__(self) -> str:
        heads = [layer.heads for layer in self.info.layers]
        return (
            f"CompiledModel({self.output!r}: {self.depth} layers (lower bound "
            f"{self.lower_bound}), heads per layer {[len(h) for h in heads]}, MLP widths "
            f"{[layer.mlp_hidden for layer in self.info.layers]}, residual {self.layout.width}, "
            f"vocab {len(self.vocab)}, max_seq_len {self.max_seq_len}"
            f"{', causal' if self.causal else ''})"
        )

    def summary(self) -> str:
        """A short text account of every layer."""
        lines = [repr(self)]
        for layer in self.info.layers:
            lines.append(f"layer {layer.index}:")
            for head in layer.heads:
                lines.append(
                    f"  head {head.index}: {head.source} <- {head.selector} "
                    f"({'; '.join(head.atoms) or 'no atoms'}), coldness {head.coldness:.1f}"
                )
            for part in layer.mlp:
                lines.append(
                    f"  mlp [{part.start}:{part.stop}] {part.construction}: "
                    f"{', '.join(part.units) or ', '.join(part.outputs)}"
                )
        for note in self.info.fusion_notes:
            lines.append(f"note: {note}")
        if self.info.causal_invariance:
            lines.append(f"causal: {self.info.causal_invariance}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ encoding

    def encode(self, batch) -> list[list[int]]:
        """Token sequences to lists of token ids, checked.

        A numpy (or JAX) array is a batch of token sequences like a list of lists:
        its items are looked up as tokens (numpy scalars as the Python values they
        hold), never read as token ids, so an int vocab gives the same model output
        for `[[3, 1]]` and `np.array([[3, 1]])`. Token ids go through `encode_ids`
        (or `run(..., ids=True)`).
        """
        if isinstance(batch, (np.ndarray, jax.Array)):
            batch = np.asarray(batch).tolist()
        if isinstance(batch, (str, bytes)) or not isinstance(batch, Iterable):
            raise InvalidInputError(
                f"expected a batch: a list of token sequences, got {type(batch).__name__} {batch!r}"
            )
        encoded = []
        token_ids, exact_types, keyed = self._token_ids, self._exact_token_types, self._keyed_tokens
        for b, sequence in enumerate(batch):
            if isinstance(sequence, (str, bytes)) or not isinstance(sequence, (list, tuple)):
                raise InvalidInputError(
                    f"input {b} must be a list of tokens, got {type(sequence).__name__} "
                    f"{sequence!r}; to run one sequence write model.run([sequence])"
                )
            try:
                row = [token_ids[token] for token in sequence]
                checked = exact_types is None or exact_types.issuperset(map(type, sequence))
            except (KeyError, TypeError):
                checked = False
            if not checked:
                row = [self._token_id(token, b, position) for position, token in enumerate(sequence)]
            if keyed and not keyed.keys().isdisjoint(row):
                for position in compress(range(len(row)), map(keyed.__contains__, row)):
                    if identity_key(sequence[position]) != keyed[row[position]]:
                        raise self._not_the_token(sequence[position], row[position], b, position)
            encoded.append(row)
        self._check_lengths(encoded)
        return encoded

    def _token_id(self, token: Any, b: int, position: int) -> int:
        """The id of `token`, which must be the vocab token itself, not an equal value of
        another type (True or 1.0 for the token 1: identity.py); a numpy scalar counts as
        the Python value it holds."""
        try:
            token_id = self._token_ids[token]
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"input {b}, position {position}: token {token!r} is not in the vocab "
                f"{list(self.vocab)}"
            ) from None
        if identity_key(token) != identity_key(self.vocab[token_id]):
            raise self._not_the_token(token, token_id, b, position)
        return token_id

    def _not_the_token(self, token: Any, token_id: int, b: int, position: int) -> InvalidInputError:
        vocab_token = self.vocab[token_id]
        return InvalidInputError(
            f"input {b}, position {position}: token {token!r} ({type(token).__name__}) is not "
            f"in the vocab {list(self.vocab)}; it equals the token {vocab_token!r} "
            f"({type(vocab_token).__name__}) but is a different value; pass {vocab_token!r}"
        )

    def encode_ids(self, ids) -> list[list[int]]:
        """Token ids (indices into `model.vocab`, BOS excluded) to checked rows: a 2-D
        integer array [batch, length], or a list of lists of ints (lengths may differ)."""
        if isinstance(ids, (np.ndarray, jax.Array)):
            array = np.asarray(ids)
            if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
                raise InvalidInputError(
                    f"an id array must be 2-D integers [batch, length], got shape "
                    f"{array.shape} and dtype {array.dtype}"
                )
            ids = array.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise InvalidInputError(
                f"expected token ids: a 2-D integer array or a list of lists of ints, got "
                f"{type(ids).__name__} {ids!r}"
            )
        rows = []
        for b, row in enumerate(ids):
            if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
                raise InvalidInputError(
                    f"input {b} must be a list of token ids, got {type(row).__name__} {row!r}"
                )
            row = list(row)
            for position, token_id in enumerate(row):
                if (isinstance(token_id, (bool, np.bool_))
                        or not isinstance(token_id, (int, np.integer))
                        or not 0 <= token_id < len(self.vocab)):
                    raise InvalidInputError(
                        f"input {b}, position {position}: token ids must be ints in "
                        f"0..{len(self.vocab) - 1} (indices into model.vocab), got {token_id!r}"
                    )
            rows.append([int(token_id) for token_id in row])
        self._check_lengths(rows)
        return rows

    def _check_lengths(self, sequences: list[list[int]]) -> None:
        for b, row in enumerate(sequences):
            if not row:
                raise InvalidInputError(f"input {b} is empty; the model needs at least one token")
            if len(row) > self.max_seq_len:
                raise InvalidInputError(
                    f"input {b} has {len(row)} tokens; this model was compiled for at most "
                    f"max_seq_len={self.max_seq_len}"
                )

    def _pack(self, rows: list[list[int]], length: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        bos_id, pad_id = len(self.vocab), len(self.vocab) + 1
        ids = np.full((batch, length), pad_id, dtype=np.int32)
        mask = np.zeros((batch, length), dtype=bool)
        mask[:, 0] = True  # filler rows of a padded batch keep one key: no all-masked softmax
        for b, row in enumerate(rows):
            ids[b, 0] = bos_id
            ids[b, 1: len(row) + 1] = row
            mask[b, : len(row) + 1] = True
        return ids, mask

    def _bucket_length(self, n_tokens: int) -> int:
        """Padded length (BOS included): a power of two, at least MIN_BUCKET_LENGTH."""
        bucket = max(MIN_BUCKET_LENGTH, 1 << math.ceil(math.log2(n_tokens + 1)))
        return min(bucket, self.max_seq_len + 1)

    # ------------------------------------------------------------------ running

    def _jit(self, name: str, readout: Readout | None):
        if name not in self._jitted:
            if readout is None:
                fn = lambda params, ids, mask: self._forward_cached.apply(params, None, ids, mask)
            else:
                index = np.asarray(readout.indices, dtype=np.int32)
                fn = lambda params, ids, mask: self._forward.apply(params, None, ids, mask)[..., index]
            self._jitted[name] = jax.jit(fn)
        return self._jitted[name]

    def _sharded(self, ids: np.ndarray, mask: np.ndarray):
        """Spread the batch axis over every JAX device (one device: unchanged)."""
        devices = jax.devices()
        if len(devices) == 1:
            return ids, mask
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
        return jax.device_put(ids, sharding), jax.device_put(mask, sharding)

    def residual_slices(self, batch, label: str | None = None,
                        batch_chunk: int = DEFAULT_BATCH_CHUNK,
                        backend: str = "jax", *,
                        ids: bool = False) -> tuple[list[np.ndarray], list[int]]:
        """Per sequence, the final residual restricted to `label`'s readout dims [T, k].

        backend "jax" runs the jitted haiku model, its batches sharded over all JAX
        devices; "numpy" runs `forward_numpy` (no compilation: for many tiny models).
        `ids=True`: `batch` holds token ids (see `encode_ids`), not tokens.
        """
        rows = self.encode_ids(batch) if ids else self.encode(batch)
        readout = self._readout(label or self.output)
        if backend == "numpy":
            index = list(readout.indices)
            forward = lambda params, ids, mask: forward_numpy(params, self.shape, ids, mask)[..., index]
        elif backend == "jax":
            jitted = self._jit(f"slice:{readout.label}", readout)
            forward = lambda params, ids, mask: jitted(params, *self._sharded(ids, mask))
        else:
            raise InvalidInputError(f"backend must be 'jax' or 'numpy', got {backend!r}")
        results: list[np.ndarray | None] = [None] * len(rows)
        buckets: dict[int, list[int]] = {}
        for b, row in enumerate(rows):
            buckets.setdefault(self._bucket_length(len(row)), []).append(b)
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
                ids, mask = self._pack([rows[b] for b in chunk], length, padded)
                out = np.asarray(forward(self.params, ids, mask))
                for i, b in enumerate(chunk):
                    results[b] = out[i, : len(rows[b]) + 1]
        return results, [len(row) for row in rows]

    def run(self, batch, *, strict: bool = False, label: str | None = None,
            backend: str = "jax", ids: bool = False) -> list[list]:
        """Decoded outputs (one list per sequence, no BOS) of the program, or of SOp `label`.

        `batch` is a list of token sequences (or a 2-D array of tokens); an empty
        batch gives []. With `ids=True` it holds token ids instead (`encode_ids`).
        Positions whose residual is not a clean value hold `Unclean`; with
        `strict=True` they raise InvalidInputError instead.
        """
        slices, _ = self.residual_slices(batch, label, backend=backend, ids=ids)
        readout = self._readout(label or self.output)
        outputs = [self._decode_slice(readout, s[1:]) for s in slices]
        if strict:
            for b, row in enumerate(outputs):
                for position, value in enumerate(row):
                    if isinstance(value, Unclean):
                        raise InvalidInputError(
                            f"input {b}, position {position}: the model's {readout.label} is not "
                            f"a clean value ({value!r}); the program is undefined there"
                        )
        return outputs

    def run_with_cache(self, batch, *, ids: bool = False,
                       max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
                       batch_chunk: int | None = None) -> tuple[list[list], ActivationCache]:
        """Outputs and every activation, all sequences padded to one length.

        The forward runs on chunks of `batch_chunk` inputs (default: as many as
        fit CACHE_CHUNK_BYTES of activations), each copied into arrays sized for
        the whole batch, so memory holds the returned cache and one chunk. A cache
        larger than `max_cache_bytes` (float32, default 2 GiB) is refused before
        running, with the size it would need and how many inputs fit.
        """
        rows = self.encode_ids(batch) if ids else self.encode(batch)
        if not rows:
            raise InvalidInputError(
                "run_with_cache got an empty batch; give at least one sequence (the cache's "
                "arrays are padded to the longest input)"
            )
        for name, value in (("max_cache_bytes", max_cache_bytes), ("batch_chunk", batch_chunk)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
        length = self._bucket_length(max(len(r) for r in rows))
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
        forward = self._jit("cache", None)
        readout = self._readout(self.output)
        outputs: list[list] = []
        activations: dict[str, np.ndarray] = {}
        for start in range(0, len(rows), chunk):
            part = rows[start: start + chunk]
            # The last chunk is padded with filler rows: one compiled shape for all chunks.
            ids_array, mask = self._pack(part, length, chunk)
            residual, cache = forward(self.params, ids_array, mask)
            residual = np.asarray(residual)
            outputs.extend(
                self._decode_slice(readout, residual[b, 1: len(row) + 1][:, list(readout.indices)])
                for b, row in enumerate(part)
            )
            for name, value in cache.items():
                value = np.asarray(value)
                if name not in activations:
                    activations[name] = np.empty((len(rows),) + value.shape[1:], value.dtype)
                activations[name][start: start + len(part)] = value[: len(part)]
        return outputs, ActivationCache(activations, [len(r) for r in rows])

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

    def decode(self, label: str, residual: np.ndarray, n_tokens: int) -> list:
        """Read SOp `label` from one sequence's residual [T, D] (BOS at 0)."""
        readout = self._readout(label)
        return self._decode_slice(readout, residual[1: n_tokens + 1][:, list(readout.indices)])

    # ------------------------------------------------------------------ tracr's model object

    @property
    def input_encoder(self) -> tracr_view.CategoricalEncoder:
        """tracr's input encoder: our token ids (vocab order, then BOS, then PAD)."""
        return tracr_view.input_encoder(self)

    @property
    def output_encoder(self) -> tracr_view.CategoricalEncoder | tracr_view.NumericalEncoder:
        return tracr_view.output_encoder(self)

    @property
    def residual_labels(self) -> list[str]:
        """One `name:value` (or `name`, numerical) label per residual dimension."""
        return tracr_view.residual_labels(self)

    @property
    def model_config(self) -> tracr_view.TracrModelConfig:
        """tracr's TransformerConfig: the uniform sizes of `tracr_params()`."""
        return tracr_view.model_config(self)

    def tracr_params(self) -> dict:
        """A copy of `params` padded to `model_config`'s sizes under tracr's haiku names."""
        return tracr_view.tracr_params(self)

    def apply(self, tokens: Sequence) -> TracrOutput:
        """tracr's apply: `model.apply([bos, t1, ...]).decoded` is `[bos, y1, ...]`, with
        tracr's other fields (residuals, layer_outputs, attn_logits, ...); see docs/tracr.md."""
        return tracr_view.apply(self, tokens)

    def _readout(self, label: str) -> Readout:
        if label not in self.readouts:
            raise InvalidInputError(
                f"{label!r} has no readout in this model (it was fused into an MLP or folded "
                f"into a head); readable SOps: {', '.join(self.readouts)}"
            )
        return self.readouts[label]

    def _decode_slice(self, readout: Readout, values: np.ndarray) -> list:
        """Decode [n, k] readout columns to n values."""
        if readout.numerical:
            numbers = values.astype(np.float64) @ np.asarray(readout.coefficients, np.float64)
            return [float(x) for x in numbers]
        if values.shape[1] == 0:
            return [None] * values.shape[0]
        top = values.argmax(axis=1)
        big = values[np.arange(len(values)), top]
        second = (np.partition(values, -2, axis=1)[:, -2] if values.shape[1] > 1
                  else np.zeros(len(values)))
        clean = (big >= 1 - DECODE_TOLERANCE) & (second <= DECODE_TOLERANCE)
        empty = big <= DECODE_TOLERANCE
        out = []
        for row, index, is_clean, is_empty in zip(values, top, clean, empty):
            if is_clean:
                out.append(readout.values[index])
            elif is_empty:
                out.append(None)
            else:
                weights = tuple((readout.values[i], float(row[i]))
                                for i in np.argsort(-row) if row[i] > DECODE_TOLERANCE)
                out.append(Unclean(readout.label, weights))
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write `path/params.npz` and `path/model.json`; `CompiledModel.load(path)` reads them.

        See `rasp_compiler.persistence` for the format and what saving refuses.
        """
        from rasp_compiler.persistence import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "CompiledModel":
        """A model saved by `save`, checked throughout; any problem raises LoadError."""
        from rasp_compiler.persistence import load_model

        return load_model(path, model_class=cls)

    def to_hooked_transformer(self, device: str = "cpu"):
        """A TransformerLens HookedTransformer computing what this model computes (needs
        `pip install 'rasp-compiler[export]'`); its `rasp` attribute encodes inputs and
        decodes logits. See rasp_compiler.export and docs/export.md."""
        from rasp_compiler.export import to_hooked_transformer

        return to_hooked_transformer(self, device)

    def save_safetensors(self, path: str | Path) -> Path:
        """Write `path/model.safetensors` (TransformerLens names) and `path/config.json`,
        loadable into TransformerLens without rasp_compiler (docs/export.md)."""
        from rasp_compiler.export import save_safetensors

        return save_safetensors(self, path)


def _exact_token_types(vocab: Sequence) -> frozenset | None:
    """Vocab token types whose values can equal no vocab token of another type: str
    alone, int unless the vocab also holds bools or floats, and so on. None for an
    all-str vocab: a token equal to a str is that str, so nothing needs checking."""
    types = {type(token) for token in vocab}
    if types == {str}:
        return None

    def numeric(kind: type) -> bool:
        return issubclass(kind, (numbers.Number, np.generic))

    def may_equal(a: type, b: type) -> bool:
        return issubclass(a, b) or issubclass(b, a) or (numeric(a) and numeric(b))

    return frozenset(kind for kind in types
                     if not any(other is not kind and may_equal(kind, other) for other in types))


__all__ = ["ActivationCache", "CompiledModel", "TracrOutput", "Unclean", "NUMERICAL"]
