"""`CompressedModel`: what `compress` returns. It runs like a compiled model (run,
run_with_cache, accuracy against the evaluator, save and load) on the compiled model's own
encoding, length buckets and packing (its `runtime`), with the projection W whose row i
is feature i's true direction; and the records of how it was trained and how it scores."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.errors import (
    EvaluationError,
    InvalidInputError,
    InvalidProgramError,
)
from rasp_compiler.lang import rasp
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.model.compiled import ActivationCache
from rasp_compiler.model.html import compressed_model_html
from rasp_compiler.superposition.compressed_forward import (
    NUMERICAL_ATOL,
    NUMERICAL_RTOL,
    all_hooks,
    decode_nearest,
    final_read,
    residual_hook_names,
)
from rasp_compiler.superposition.objective import EXHAUSTIVE_LIMIT, input_count
from rasp_compiler.superposition.scoring import FeatureDirections
from rasp_compiler.verify.inputs import all_inputs, random_inputs
from rasp_compiler.verify.report import values_match


@dataclass(frozen=True)
class CompressionInfo:
    """How a compressed model was trained, and how well it did (saved with it)."""

    d: int
    d_model: int
    seed: int
    nonlinear: bool
    hidden: int  # width of each read's ReLU decoder (0: linear reads)
    init: str
    steps: int  # steps taken
    max_steps: int
    batch_size: int
    learning_rate: float
    output_weight: float
    reconstruction_weight: float
    exhaustive: bool  # trained on every input (else on fresh random inputs each step)
    training_inputs: int  # distinct inputs trained on (exhaustive) or evaluated on (sampled)
    stopped: str  # "target" (agreement reached), "plateau" (early stop) or "budget"
    agreement: float  # per-position agreement with the uncompressed model on the eval set
    loss: float
    output_loss: float
    reconstruction_loss: float
    seconds: float
    # (step, seconds since the start, loss, agreement) at every evaluation
    history: tuple[tuple[int, float, float, float], ...] = ()
    # the reconstruction loss's weights (`feature_weights`); saves from before the option
    # were trained with "uniform"
    weighting: str = "uniform"

    def reached(self, agreement: float) -> tuple[int, float] | None:
        """(step, seconds) of the first evaluation at or above `agreement`; None if never."""
        for step, seconds, _, measured in self.history:
            if measured >= agreement:
                return step, seconds
        return None


@dataclass(frozen=True)
class CompressionAccuracy:
    """A compressed model against the reference evaluator: rates, not a pass/fail verdict."""

    inputs_checked: int
    positions_checked: int
    undefined: int  # inputs on which the evaluator has no answer (not counted)
    position_accuracy: float  # positions decoded to the evaluator's value
    sequence_accuracy: float  # inputs right at every position
    mismatches: tuple  # the first few (input, position, expected, got)

    def __str__(self) -> str:
        lines = [
            f"{self.position_accuracy:.2%} of {self.positions_checked:,} positions and "
            f"{self.sequence_accuracy:.2%} of {self.inputs_checked:,} inputs right "
            f"({self.undefined} undefined inputs skipped)"
        ]
        lines += [f"  input {list(xs)} position {p}: expected {e!r}, got {g!r}"
                  for xs, p, e, g in self.mismatches]
        return "\n".join(lines)


class CompressedModel:
    """A compiled model run through a compressed residual stream; behaves like the model.

    `base` is the exact compiled model, `W` [d_model, d] the learnt projection, `readers`
    the nonlinear reads' decoders (None when linear), `info` the training facts.
    """

    def __init__(self, base, W: np.ndarray, readers: dict | None, info: CompressionInfo):
        self.base = base
        self.W = np.asarray(W, np.float32)
        self.readers = readers
        self.info = info
        self._projection: dict[str, Any] = {"W": jnp.asarray(self.W)}
        if readers:
            self._projection["readers"] = jax.tree_util.tree_map(jnp.asarray, readers)

    def _forward(self, ids, mask):
        return final_read(self.base.params, self.base.shape, self._projection, ids, mask)

    def _forward_cached(self, ids, mask):
        return all_hooks(self.base.params, self.base.shape, self._projection, ids, mask)

    
    @property
    def d(self) -> int:
        return self.W.shape[1]

    @property
    def d_model(self) -> int:
        return self.W.shape[0]

    @property
    def output(self) -> str:
        return self.base.output

    @property
    def name(self) -> str:
        """The program's name where known (the base model's `source`), else the output's."""
        return self.base.name

    @property
    def vocab(self) -> tuple:
        return self.base.vocab

    @property
    def max_seq_len(self) -> int:
        return self.base.max_seq_len

    @property
    def causal(self) -> bool:
        return self.base.causal

    @property
    def residual_labels(self) -> list[str]:
        """The original features (`sop:value`), one per row of W."""
        return self.base.residual_labels

    @property
    def residual_hooks(self) -> list[str]:
        """Hooks holding the compressed residual [.., d]: where an SAE can be trained."""
        return residual_hook_names(self.base.depth)

    def interference(self) -> np.ndarray:
        """W @ W.T [D, D]: entry (i, j) is how much reading feature i picks up of feature j
        (the identity for an uncompressed model; off-diagonal entries are superposition)."""
        return self.W @ self.W.T

    def feature_directions(self):
        """The ground truth: every original feature's direction in the compressed space and
        (through `activations`) its true value at any hook for any input."""

        return FeatureDirections(tuple(self.residual_labels), self.W.copy(), self)

    def __repr__(self) -> str:
        kind = f"nonlinear reads (hidden {self.info.hidden})" if self.readers else "linear"
        return (f"CompressedModel({self.output!r}: residual {self.d_model} -> {self.d}, {kind}, "
                f"{self.info.steps} steps, agreement {self.info.agreement:.2%} with the exact "
                f"model)")

    def _repr_html_(self) -> str:
        """A notebook's display: a compact summary."""

        return compressed_model_html(self)

    def show(self, tokens=None, *more_inputs, height: int = 720):
        """The explorer for `tokens`, inline in a notebook (see rasp_compiler.explorer.notebook)."""
        from rasp_compiler.explorer.notebook import show

        return show(self, tokens, *more_inputs, height=height)

    def summary(self) -> str:
        i = self.info
        return "\n".join([
            repr(self),
            f"trained {i.steps:,}/{i.max_steps:,} steps in {i.seconds:.1f}s, stopped: "
            f"{i.stopped}; on {'every input' if i.exhaustive else 'random inputs'} "
            f"({i.training_inputs:,} evaluated)",
            f"loss {i.loss:.4g} = {i.output_weight:g} x output {i.output_loss:.4g} + "
            f"{i.reconstruction_weight:g} x reconstruction {i.reconstruction_loss:.4g}",
        ])

    
    def _readout(self, label: str):
        if label not in self.base.readouts:
            raise InvalidInputError(f"{label!r} has no readout in this model; readable SOps: "
                                    f"{', '.join(self.base.readouts)}")
        return self.base.readouts[label]

    def _packed_buckets(self, rows: list[list[int]], chunk: int = 1024):
        """(members, ids, mask) per padded batch, grouped like the compiled model's buckets."""
        buckets: dict[int, list[int]] = {}
        for b, row in enumerate(rows):
            buckets.setdefault(self.base.runtime.bucket_length(len(row)), []).append(b)
        for length, members in sorted(buckets.items()):
            for start in range(0, len(members), chunk):
                part = members[start: start + chunk]
                padded = max(8, 1 << math.ceil(math.log2(len(part))))
                ids, mask = self.base.runtime.pack([rows[b] for b in part], length, padded)
                yield part, ids, mask

    def residual(self, batch, *, ids: bool = False) -> list[np.ndarray]:
        """Per input, what the readout reads: the final residual decompressed [T, D]."""
        rows = self.base.encode_ids(batch) if ids else self.base.encode(batch)
        out: list[np.ndarray | None] = [None] * len(rows)
        for members, packed, mask in self._packed_buckets(rows):
            reads = np.asarray(self._forward(packed, mask))
            for i, b in enumerate(members):
                out[b] = reads[i, : len(rows[b]) + 1]
        return out

    def run(self, batch, *, label: str | None = None, ids: bool = False) -> list[list]:
        """Decoded outputs (or SOp `label`), one list per input, no BOS.

        Compressed readouts are never clean one-hots, so a categorical value decodes to the
        largest readout entry (None when it is below NONE_THRESHOLD), a numerical one to
        its linear form.
        """
        readout = self._readout(label or self.output)
        return [decode_nearest(readout, r[1:, list(readout.indices)])
                for r in self.residual(batch, ids=ids)]

    def run_with_cache(self, batch, *, ids: bool = False):
        """Outputs and every activation under the compiled model's hook names, all inputs
        padded to one length. The residual hooks (`hook_resid_*`, `hook_embed`,
        `hook_pos_embed`, `hook_attn_out`, `hook_mlp_out`) hold the compressed [.., d]
        stream; the reads `blocks.{l}.hook_attn_in`, `blocks.{l}.hook_mlp_in` and
        `hook_readout_in` the decompressed [.., D] one the frozen weights see."""

        rows = self.base.encode_ids(batch) if ids else self.base.encode(batch)
        if not rows:
            raise InvalidInputError("run_with_cache got an empty batch; give at least one "
                                    "sequence")
        length = self.base.runtime.bucket_length(max(len(r) for r in rows))
        readout = self._readout(self.output)
        outputs: list[list] = []
        activations: dict[str, np.ndarray] = {}
        chunk = 1024
        for start in range(0, len(rows), chunk):
            part = rows[start: start + chunk]
            packed, mask = self.base.runtime.pack(part, length, min(chunk, len(rows)))
            cache = self._forward_cached(packed, mask)
            final = np.asarray(cache["hook_readout_in"])
            outputs += [decode_nearest(readout, final[b, 1: len(r) + 1][:, list(readout.indices)])
                        for b, r in enumerate(part)]
            for name, value in cache.items():
                value = np.asarray(value)
                if name not in activations:
                    activations[name] = np.empty((len(rows),) + value.shape[1:], value.dtype)
                activations[name][start: start + len(part)] = value[: len(part)]
        return outputs, ActivationCache(activations, [len(r) for r in rows])

    
    def accuracy(self, *, exhaustive_up_to: int | None = None, samples: int | None = None,
                 inputs=None, seed: int = 0, program=None, atol: float = NUMERICAL_ATOL,
                 rtol: float = NUMERICAL_RTOL, chunk: int = 1024) -> CompressionAccuracy:
        """The share of positions (and of whole inputs) decoded to the evaluator's value.

        Inputs as in `verify`: every input up to `exhaustive_up_to` tokens, `samples`
        random ones, and/or `inputs`; with none given, every input when there are at most
        EXHAUSTIVE_LIMIT, else 1000 random ones. `program` defaults to the compiled
        model's (a loaded model has none: pass it). Categorical values must be the same
        value; numbers within `atol + rtol * |expected|`.
        """

        program = program if program is not None else self.base.program
        if program is None:
            raise InvalidProgramError(
                "accuracy needs the RASP program to compare with (a loaded model does not keep "
                "it): pass program=, e.g. load_program(name).make(model.max_seq_len)"
            )
        if exhaustive_up_to is None and samples is None and inputs is None:
            if input_count(len(self.vocab), self.max_seq_len) <= EXHAUSTIVE_LIMIT:
                exhaustive_up_to = self.max_seq_len
            else:
                samples = 1000
        if exhaustive_up_to is not None and not 1 <= exhaustive_up_to <= self.max_seq_len:
            raise InvalidInputError(f"exhaustive_up_to must be in 1..{self.max_seq_len}, got "
                                    f"{exhaustive_up_to}")
        streams = []
        if exhaustive_up_to is not None:
            streams.append(all_inputs(self.vocab, exhaustive_up_to))
        if samples is not None:
            streams.append(random_inputs(self.vocab, self.max_seq_len, samples, seed))
        if inputs is not None:
            streams.append([tuple(xs) for xs in inputs])
        graph = build_graph(program)
        categorical = rasp.is_categorical(graph.output_expr)
        checked = positions = right_positions = right_inputs = undefined = 0
        mismatches = []
        stream = itertools.chain.from_iterable(streams)
        while batch := [tuple(xs) for xs in itertools.islice(stream, chunk)]:
            outputs = self.run([list(xs) for xs in batch])
            for xs, got_row in zip(batch, outputs):
                try:
                    expected_row = evaluate_all(graph, list(xs), causal=self.causal).output_values
                except EvaluationError:
                    undefined += 1
                    continue
                checked += 1
                all_right = True
                for position, (got, expected) in enumerate(zip(got_row, expected_row)):
                    positions += 1
                    if values_match(got, expected, rtol, atol, categorical):
                        right_positions += 1
                    else:
                        all_right = False
                        if len(mismatches) < 10:
                            mismatches.append((xs, position, expected, got))
                right_inputs += all_right
        return CompressionAccuracy(
            inputs_checked=checked, positions_checked=positions, undefined=undefined,
            position_accuracy=right_positions / max(positions, 1),
            sequence_accuracy=right_inputs / max(checked, 1), mismatches=tuple(mismatches))

    def save(self, path: str | Path) -> Path:
        """Write `path/base/` (the compiled model's own save), `path/compression.npz` (W and
        the readers) and `path/compression.json` (the training facts and a checksum)."""
        from rasp_compiler.superposition.compressed_files import save_compressed

        return save_compressed(self, path)

    @classmethod
    def load(cls, path: str | Path, *, max_parameters: int | None = None) -> "CompressedModel":
        """A compressed model saved by `save`, checked; any problem raises LoadError.
        `max_parameters` bounds what the saved files may declare (as CompiledModel.load)."""
        from rasp_compiler.superposition.compressed_files import load_compressed

        return load_compressed(path, max_parameters)
