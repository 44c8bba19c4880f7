"""The compiled model at run time: encoder, jitted batched forward, decoder, cache, save/load.

Axis names used below: B batch, T positions (BOS at 0, then tokens, then PAD),
D residual width. `run` takes token sequences without BOS; the model adds BOS,
pads each group of similar lengths to a shared bucket length, masks the padding
as keys, runs one jitted forward per (batch, length) bucket, and decodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.assemble import ModelShape, build_forward, forward_numpy
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.lower import Readout
from rasp_compiler.residual import NUMERICAL, ResidualLayout

DECODE_TOLERANCE = 0.1  # a clean one-hot has its value within this of 1, the rest within it of 0
DEFAULT_BATCH_CHUNK = 1024
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
    compile_seconds: float = 0.0

    @property
    def depth(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class TracrOutput:
    """tracr-compatible result of `apply`: `decoded` has the BOS token first."""

    decoded: list
    transformer_output: np.ndarray  # [1, T, D] final residual


class ActivationCache(dict):
    """Activations by TransformerLens hook name, batch first; `lengths` excludes BOS."""

    def __init__(self, activations: Mapping[str, np.ndarray], lengths: Sequence[int]):
        super().__init__(activations)
        self.lengths = tuple(lengths)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks, batch={len(self.lengths)})"


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
            f"vocab {len(self.vocab)}, max_seq_len {self.max_seq_len})"
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
        return "\n".join(lines)

    # ------------------------------------------------------------------ encoding

    def encode(self, batch) -> list[list[int]]:
        """Token sequences (or an int array of token ids) to lists of token ids, checked."""
        if isinstance(batch, np.ndarray) or isinstance(batch, jax.Array):
            ids = np.asarray(batch)
            if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
                raise InvalidInputError(
                    f"an id array must be 2-D integers [batch, length], got shape {ids.shape} "
                    f"and dtype {ids.dtype}"
                )
            if ids.size and (ids.min() < 0 or ids.max() >= len(self.vocab)):
                raise InvalidInputError(
                    f"token ids must be in 0..{len(self.vocab) - 1} (indices into model.vocab), "
                    f"got values from {ids.min()} to {ids.max()}"
                )
            sequences = [list(row) for row in ids.tolist()]
            self._check_lengths(sequences)
            return sequences
        if isinstance(batch, (str, bytes)) or not isinstance(batch, Iterable):
            raise InvalidInputError(
                f"expected a batch: a list of token sequences, got {type(batch).__name__} {batch!r}"
            )
        encoded = []
        for b, sequence in enumerate(batch):
            if isinstance(sequence, (str, bytes)) or not isinstance(sequence, (list, tuple)):
                raise InvalidInputError(
                    f"input {b} must be a list of tokens, got {type(sequence).__name__} "
                    f"{sequence!r}; to run one sequence write model.run([sequence])"
                )
            row = []
            for position, token in enumerate(sequence):
                try:
                    row.append(self._token_ids[token])
                except (KeyError, TypeError):
                    raise InvalidInputError(
                        f"input {b}, position {position}: token {token!r} is not in the vocab "
                        f"{list(self.vocab)}"
                    ) from None
            encoded.append(row)
        self._check_lengths(encoded)
        return encoded

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
                        backend: str = "jax") -> tuple[list[np.ndarray], list[int]]:
        """Per sequence, the final residual restricted to `label`'s readout dims [T, k].

        backend "jax" runs the jitted haiku model, its batches sharded over all JAX
        devices; "numpy" runs `forward_numpy` (no compilation: for many tiny models).
        """
        rows = self.encode(batch)
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
            backend: str = "jax") -> list[list]:
        """Decoded outputs (one list per sequence, no BOS) of the program, or of SOp `label`.

        Positions whose residual is not a clean value hold `Unclean`; with
        `strict=True` they raise InvalidInputError instead.
        """
        slices, _ = self.residual_slices(batch, label, backend=backend)
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

    def run_with_cache(self, batch) -> tuple[list[list], ActivationCache]:
        """Outputs and every activation, all sequences padded to one length."""
        rows = self.encode(batch)
        length = self._bucket_length(max(len(r) for r in rows))
        ids, mask = self._pack(rows, length, len(rows))
        residual, cache = self._jit("cache", None)(self.params, ids, mask)
        residual = np.asarray(residual)
        readout = self._readout(self.output)
        outputs = [
            self._decode_slice(readout, residual[b, 1: len(row) + 1][:, list(readout.indices)])
            for b, row in enumerate(rows)
        ]
        activations = {name: np.asarray(value) for name, value in cache.items()}
        return outputs, ActivationCache(activations, [len(r) for r in rows])

    def decode(self, label: str, residual: np.ndarray, n_tokens: int) -> list:
        """Read SOp `label` from one sequence's residual [T, D] (BOS at 0)."""
        readout = self._readout(label)
        return self._decode_slice(readout, residual[1: n_tokens + 1][:, list(readout.indices)])

    def apply(self, tokens: Sequence) -> TracrOutput:
        """tracr-compatible: `model.apply([bos, t1, t2, ...]).decoded` is `[bos, y1, y2, ...]`."""
        tokens = list(tokens)
        if not tokens or tokens[0] != self.bos:
            raise InvalidInputError(
                f"apply() takes the input with the BOS token {self.bos!r} first (as tracr does), "
                f"got {tokens[:3]!r}...; or use model.run([tokens]) without BOS"
            )
        rows = self.encode([tokens[1:]])
        ids, mask = self._pack(rows, len(tokens), 1)
        residual = np.asarray(self._jit("cache", None)(self.params, ids, mask)[0])
        decoded = self.decode(self.output, residual[0], len(tokens) - 1)
        return TracrOutput(decoded=[self.bos] + decoded, transformer_output=residual)

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


__all__ = ["ActivationCache", "CompiledModel", "TracrOutput", "Unclean", "NUMERICAL"]
