"""The compiled model: one object over the parts that do the work.

Over 500 lines on purpose: `CompiledModel` is the handle users hold, so its members are
the whole public surface of a model (facts, running, decoding, saving, and the tools'
convenience methods); each member is a few lines delegating to the module that does the
work, grouped below under one comment line per group.

`CompiledModel` holds the facts (parameters, shape, vocab, layout, readouts,
`info`) and delegates: encoding and decoding to encoding.py (`token_encoder`,
`decode_readout`), the bucketed jitted forward and the activation cache to
runtime.py (`runtime`), saving and loading to persistence.py, diagnostics to
diagnostics/ (layer_plan, patterns, read_back, pictures) and the explorer,
tracr's model object to tracr_view.py.
What exists only for a model compiled in this session (the program, ops,
schedule, lowered weights) is one optional `CompilationRecord` (records.py).

`run` takes token sequences without BOS; the model adds BOS, pads each group of
similar lengths to a shared bucket length, masks the padding as keys, runs one
jitted forward per (batch, length) bucket, and decodes. Names that moved out of
this module are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.model import tracr_view
from rasp_compiler.model.encoding import (
    DECODE_TOLERANCE,
    TokenEncoder,
    Unclean,
    decode_readout,
    lookup_ids,
)
from rasp_compiler.model.forward import ModelShape
from rasp_compiler.model.records import (
    CompilationRecord,
    HeadInfo,
    LayerInfo,
    MLPPartInfo,
    ModelInfo,
    SelectorEntry,
    SelectorReport,
)
from rasp_compiler.model.residual import NUMERICAL, Readout, ResidualLayout
from rasp_compiler.model.runtime import (
    CACHE_CHUNK_BYTES,
    DEFAULT_BATCH_CHUNK,
    DEFAULT_MAX_CACHE_BYTES,
    MIN_BUCKET_BATCH,
    MIN_BUCKET_FILL,
    MIN_BUCKET_LENGTH,
    ActivationCache,
    Runtime,
)
from rasp_compiler.model.tracr_view import TracrOutput


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
        compilation: CompilationRecord | None = None,
        source=None,
    ):
        """`compilation`: what only a model compiled in this session has (None after
        `load`). `source`: where the program came from (a `ProgramSource`: a bundled
        program or a program file; None when unknown), saved with the model."""
        # device_put, not jnp.asarray: in jax 0.10 asarray compiles a small XLA program
        # per new array shape (a quarter of a second per model on a busy 2-core CPU).
        self.params = jax.tree_util.tree_map(jax.device_put, dict(params))
        self.shape = shape
        self.vocab = tuple(vocab)
        self.max_seq_len = max_seq_len
        self.bos = bos
        self.pad = pad
        self.layout = layout
        self.readouts = MappingProxyType(dict(readouts))  # read-only: the model's own decoding
        self.info = info
        self.compilation = compilation
        self.source = source
        self.token_encoder = TokenEncoder(self.vocab, max_seq_len)
        self.runtime = Runtime(shape, max_seq_len, bos_id=len(self.vocab),
                               pad_id=len(self.vocab) + 1)

    # ------------------------------------------------------------------ facts

    @property
    def program(self):
        """The RASP program (None for a loaded model); see `compilation`."""
        return None if self.compilation is None else self.compilation.program

    @property
    def ops(self):
        """The program as transformer operations (None for a loaded model)."""
        return None if self.compilation is None else self.compilation.ops

    @property
    def schedule(self):
        """The layer plan (None for a loaded model)."""
        return None if self.compilation is None else self.compilation.schedule

    @property
    def lowered(self):
        """The weights over named residual dimensions (None for a loaded model)."""
        return None if self.compilation is None else self.compilation.lowered

    @property
    def output(self) -> str:
        return self.info.output

    @property
    def name(self) -> str:
        """The program's name where known (`source`), else its output SOp's label."""
        return self.source.name if self.source is not None else self.output

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

    def layer_plan_report(self):
        """Per layer, what each head and MLP part computes; where every node lives."""
        from rasp_compiler.diagnostics.layer_plan import layer_plan_report

        return layer_plan_report(self)


    def residual_map(self):
        """Each SOp's residual dimensions, who writes them and who reads them."""
        from rasp_compiler.diagnostics.layer_plan import residual_map

        return residual_map(self)

    def head_to_selector(self) -> dict[str, str]:
        from rasp_compiler.diagnostics.layer_plan import head_to_selector

        return head_to_selector(self)

    def selector_to_heads(self) -> dict[str, list[str]]:
        from rasp_compiler.diagnostics.layer_plan import selector_to_heads

        return selector_to_heads(self)

    def check_patterns(self, inputs, tolerance: float | None = None, *, backend: str = "jax"):
        """Every head's attention pattern against the exact selector matrix (see diagnostics)."""
        from rasp_compiler.diagnostics.patterns import DEFAULT_PATTERN_TOLERANCE, check_patterns

        return check_patterns(self, inputs, tolerance or DEFAULT_PATTERN_TOLERANCE,
                              backend=backend)

    def read_back(self, inputs, *, backend: str = "jax"):
        """Every SOp decoded after the sublayer writing it, against the evaluator."""
        from rasp_compiler.diagnostics.read_back import read_back

        return read_back(self, inputs, backend=backend)

    def raw_read_back(self, inputs, tolerance: float | None = None, *, backend: str = "jax"):
        """Every SOp's raw residual dims against the exact encoding of its value (see
        diagnostics; one-hots within 1e-3 by default)."""
        from rasp_compiler.diagnostics.read_back import raw_read_back
        from rasp_compiler.model.constants import RAW_TOLERANCE

        return raw_read_back(self, inputs, RAW_TOLERANCE if tolerance is None else tolerance,
                             backend=backend)

    def attention_heatmaps(self, tokens, path):
        """PNG: every head's pattern on `tokens`, the ideal one beside it (needs matplotlib)."""
        from rasp_compiler.diagnostics.pictures import attention_heatmaps

        return attention_heatmaps(self, tokens, path)

    def graph_picture(self, path):
        """PNG or SVG (by suffix) of the program's graph, nodes coloured by layer."""
        from rasp_compiler.diagnostics.pictures import graph_picture

        return graph_picture(self, path)

    def html_report(self, tokens, path):
        """A self-contained HTML page: layout, residual map, selector report, heatmaps."""
        from rasp_compiler.explorer.report import html_report

        return html_report(self, tokens, path)

    def selector_report(self) -> SelectorReport:
        """Every selector that reaches a head: as written, normal form, construction,
        its cost, the alternatives' costs, and flags (exponential, extra-heads,
        extra-layer) saying by how much."""
        return SelectorReport(self.info.selectors)

    def circuit(self, granularity: str = "head", *, functional: bool = False, inputs=None,
                corrupt=None, ablation: str = "resample", samples: int | None = None,
                seed: int = 0):
        """The model's circuit (a frozen `Circuit`): nodes, edges (source, destination,
        input), the alignment with the program, name maps and exports.

        `granularity`: "head", "component" (one node per attention layer) or "matrix"
        (W_Q/W_K/W_V/W_O, W_in/W_out). Structural by default (the weights: a source writes
        what a destination reads); `functional=True` keeps the edges whose patch alone
        changes the decoded output on some (clean, corrupt) pair, with `ablation`
        "resample", "zero" or "mean". See rasp_compiler.circuits and docs/circuits.md.
        """
        from rasp_compiler.circuits import circuit

        return circuit(self, granularity, functional=functional, inputs=inputs,
                       corrupt=corrupt, ablation=ablation, samples=samples, seed=seed)

    def parameter_count(self, nonzero: bool = False) -> int:
        leaves = jax.tree_util.tree_leaves(self.params)
        if nonzero:
            return int(sum(np.count_nonzero(np.asarray(x)) for x in leaves))
        return int(sum(x.size for x in leaves))

    def __repr__(self) -> str:
        heads = [layer.heads for layer in self.info.layers]
        from rasp_compiler.errors import counted

        return (
            f"CompiledModel({self.output!r}: {counted(self.depth, 'layer')} (lower bound "
            f"{self.lower_bound}), heads per layer {[len(h) for h in heads]}, MLP widths "
            f"{[layer.mlp_hidden for layer in self.info.layers]}, residual {self.layout.width}, "
            f"vocab {len(self.vocab)}, max_seq_len {self.max_seq_len}"
            f"{', causal' if self.causal else ''})"
        )

    def _repr_html_(self) -> str:
        """A notebook's display: a compact summary (facts and the layer plan)."""
        from rasp_compiler.model.html import compiled_model_html

        return compiled_model_html(self)

    def show(self, tokens=None, *more_inputs, height: int = 720):
        """The explorer for `tokens` (and `more_inputs`), shown inline in a notebook: one
        self-contained iframe, no server (see rasp_compiler.explorer.notebook)."""
        from rasp_compiler.explorer.notebook import show

        return show(self, tokens, *more_inputs, height=height)

    def summary(self) -> str:
        """A short text account of every layer."""
        lines = [repr(self)]
        for layer in self.info.layers:
            lines.append(f"layer {layer.index}:")
            for head in layer.heads:  # named as in the layout report: kind, the SOp it writes
                lines.append(
                    f"  {head.name} {head.kind} {head.label} <- {head.selector} "
                    f"({'; '.join(head.atoms) or 'no atoms'}), coldness {head.coldness:.1f}"
                    + (f" (for {head.source})" if head.source != head.label else "")
                )
            for part in layer.mlp:
                lines.append(
                    f"  mlp [{part.start}:{part.stop}] {part.construction}: "
                    f"{', '.join(part.units) or ', '.join(part.outputs)}"
                )
        for note in self.info.rewrites:
            lines.append(f"rewrite: {note}")
        for note in self.info.fusion_notes:
            lines.append(f"note: {note}")
        if self.info.causal_invariance:
            lines.append(f"causal: {self.info.causal_invariance}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ encoding

    def encode(self, batch) -> list[list[int]]:
        """Token sequences to lists of token ids, checked: see `TokenEncoder.encode`
        (a numpy array is a batch of tokens, never of ids; ids go through `encode_ids`)."""
        return self.token_encoder.encode(batch)

    def encode_ids(self, ids) -> list[list[int]]:
        """Token ids (indices into `model.vocab`, BOS excluded) to checked rows: a 2-D
        integer array [batch, length], or a list of lists of ints (lengths may differ)."""
        return self.token_encoder.encode_ids(ids)

    # ------------------------------------------------------------------ running

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
        slices = self.runtime.residual_slices(self.params, rows, readout, batch_chunk, backend)
        return slices, [len(row) for row in rows]

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
        outputs = [decode_readout(readout, s[1:]) for s in slices]
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
                       batch_chunk: int | None = None,
                       backend: str = "jax") -> tuple[list[list], ActivationCache]:
        """Outputs and every activation, all sequences padded to one length.
        `backend="numpy"` records the same hooks with the numpy forward (no XLA
        compilation: for one-off looks at many small models).

        The forward runs on chunks of `batch_chunk` inputs (default: as many as
        fit CACHE_CHUNK_BYTES of activations), each copied into arrays sized for
        the whole batch, so memory holds the returned cache and one chunk. A cache
        larger than `max_cache_bytes` (float32, default 2 GiB) is refused before
        running, with the size it would need and how many inputs fit.
        """
        rows = self.encode_ids(batch) if ids else self.encode(batch)
        readout = self._readout(self.output)
        slices, cache = self.runtime.run_with_cache(self.params, rows, readout,
                                                    max_cache_bytes=max_cache_bytes,
                                                    batch_chunk=batch_chunk, backend=backend)
        return [decode_readout(readout, s[1:]) for s in slices], cache

    def run_with_hooks(self, batch, fwd_hooks, *, ids: bool = False, label: str | None = None,
                       return_cache: bool = False,
                       max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES):
        """Decoded outputs with activations patched, as TransformerLens's `run_with_hooks`.

        `fwd_hooks` is a list of (hook name, function) pairs, names as in
        `run_with_cache`; each function gets the activation there, the same array
        `run_with_cache` records (the whole batch, padded to one length, BOS at 0), and
        returns its replacement, or None to leave it as it is. Several on one name run
        in order. The rest of the forward sees the replacement. The forward is the
        numpy one (`forward_numpy`, no compilation per patch). With
        `return_cache=True`, returns (outputs, cache) of the patched run.
        """
        hooks = _compose_hooks(fwd_hooks)
        rows = self.encode_ids(batch) if ids else self.encode(batch)
        readout = self._readout(label or self.output)
        slices, cache = self.runtime.run_with_cache(
            self.params, rows, readout, max_cache_bytes=max_cache_bytes, backend="numpy",
            hooks=hooks)
        outputs = [decode_readout(readout, s[1:]) for s in slices]
        return (outputs, cache) if return_cache else outputs

    def cache_bytes_per_input(self, length: int) -> int:
        """Bytes (float32) `run_with_cache` keeps per input padded to `length` positions
        (BOS included): every hook's activation, summed over layers."""
        return self.runtime.cache_bytes_per_input(length)

    def decode(self, label: str, residual: np.ndarray, n_tokens: int) -> list:
        """Read SOp `label` from one sequence's residual [T, D] (BOS at 0)."""
        readout = self._readout(label)
        return decode_readout(readout, residual[1: n_tokens + 1][:, list(readout.indices)])

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

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write `path/params.npz` and `path/model.json`; `CompiledModel.load(path)` reads them.

        See `rasp_compiler.model.persistence` for the format and what saving refuses.
        """
        from rasp_compiler.model.persistence import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path: str | Path, *, max_parameters: int | None = None) -> "CompiledModel":
        """A model saved by `save`, checked throughout; any problem raises LoadError.

        Its model.json may declare at most `max_parameters` parameters (default: the
        compile_program default, 200 million); pass the limit a larger model was compiled
        with. Nothing in params.npz is read before its names and shapes are checked.
        """
        from rasp_compiler.model.constants import DEFAULT_MAX_PARAMETERS
        from rasp_compiler.model.persistence import load_model

        return load_model(path, model_class=cls,
                          max_parameters=DEFAULT_MAX_PARAMETERS if max_parameters is None
                          else max_parameters)

    def to_hooked_transformer(self, device: str = "cpu"):
        """A TransformerLens HookedTransformer computing what this model computes (needs
        `pip install 'rasp-compiler[export]'`); its `rasp` attribute encodes inputs and
        decodes logits. See rasp_compiler.export.transformer_lens and docs/export.md."""
        from rasp_compiler.export.transformer_lens import to_hooked_transformer

        return to_hooked_transformer(self, device)

    def save_safetensors(self, path: str | Path) -> Path:
        """Write `path/model.safetensors` (TransformerLens names) and `path/config.json`,
        loadable into TransformerLens without rasp_compiler (docs/export.md)."""
        from rasp_compiler.export.safetensors import save_safetensors

        return save_safetensors(self, path)


__all__ = [
    "ActivationCache",
    "CACHE_CHUNK_BYTES",
    "CompilationRecord",
    "CompiledModel",
    "DECODE_TOLERANCE",
    "DEFAULT_BATCH_CHUNK",
    "DEFAULT_MAX_CACHE_BYTES",
    "HeadInfo",
    "LayerInfo",
    "MIN_BUCKET_BATCH",
    "MIN_BUCKET_FILL",
    "MIN_BUCKET_LENGTH",
    "MLPPartInfo",
    "ModelInfo",
    "NUMERICAL",
    "SelectorEntry",
    "SelectorReport",
    "TracrOutput",
    "Unclean",
    "lookup_ids",
]


def _compose_hooks(fwd_hooks) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """TransformerLens's `fwd_hooks` list as forward_numpy's hooks: one function per name
    (several on a name run in order; a function returning None changes nothing)."""
    if isinstance(fwd_hooks, Mapping):
        fwd_hooks = list(fwd_hooks.items())
    by_name: dict[str, list[Callable]] = {}
    try:
        pairs = list(fwd_hooks)
    except TypeError:
        pairs = None
    for i, pair in enumerate(pairs or ()):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                and callable(pair[1])):
            raise InvalidInputError(
                f"fwd_hooks[{i}] is {pair!r}; each hook is a (hook name, function) pair, e.g. "
                f"('blocks.0.attn.hook_pattern', lambda pattern: pattern)"
            )
        by_name.setdefault(pair[0], []).append(pair[1])
    if not by_name:
        raise InvalidInputError(
            f"run_with_hooks needs fwd_hooks, a non-empty list of (hook name, function) pairs; "
            f"got {fwd_hooks!r} (use run or run_with_cache for an unpatched run)"
        )

    def chain(functions):
        def patched(value):
            for function in functions:
                result = function(value)
                value = value if result is None else result
            return value
        return patched

    return {name: chain(functions) for name, functions in by_name.items()}
