"""How an exported model reads and writes: `ExportEncoding` turns token batches into the
exported model's ids (BOS first, one length per batch: TransformerLens's bidirectional
attention has no padding mask) and its logits back into values, using only what
config.json stores, so an export is usable without the compiled model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from rasp_compiler.errors import (
    CompileWarning,
    InvalidInputError,
    LoadError,
)
from rasp_compiler.lang.identity import value_dict
from rasp_compiler.model import tracr_view
from rasp_compiler.model.compiled import Unclean, lookup_ids
from rasp_compiler.model.constants import DECODE_TOLERANCE
from rasp_compiler.model.json_codec import from_json, to_json


@dataclass(frozen=True)
class ExportEncoding:
    """What a user of the exported model needs to feed it and read it.

    - `input_encoding`: (token, id) pairs: `model.vocab` in order, then BOS, then
      PAD. Feed `[BOS id, token ids...]`; `to_tokens` does it.
    - `output_decoding`: categorical output: the value of each logit, in order;
      numerical output: empty (the one logit is the number).
    - `residual_labels`: `SOp:value` (or `SOp` for a numerical one) for each
      residual dimension, as `model.residual_labels`.
    - `unclean_aggregates`: categorical Aggregates the compiler could not prove
      single-valued; where one mixes values the logits are a blend.
    - `logits`: what the logits mean, in words.

    Saved as the `encoding` object of an export's config.json (tokens and values
    as JSON scalars, tuples as {"tuple": [...]}).
    """

    output: str
    input_encoding: tuple[tuple[Any, int], ...]
    bos: Any
    pad: Any
    max_seq_len: int
    causal: bool
    numerical_output: bool
    output_decoding: tuple[Any, ...]
    residual_labels: tuple[str, ...]
    unclean_aggregates: tuple[str, ...]
    logits: str

    @property
    def encoding_map(self) -> dict:
        """token -> id (BOS and PAD included; a ValueMap when the vocab holds 1 and True)."""
        return value_dict(self.input_encoding)

    @property
    def bos_id(self) -> int:
        return self.encoding_map[self.bos]

    @property
    def pad_id(self) -> int:
        return self.encoding_map[self.pad]

    def encode(self, batch) -> np.ndarray:
        """Token sequences of one length (no BOS) to ids [B, 1 + n], BOS first (int64)."""

        if isinstance(batch, np.ndarray):  # a batch of tokens, as model.run takes it
            batch = batch.tolist()
        if isinstance(batch, (str, bytes)) or not isinstance(batch, (list, tuple)):
            raise InvalidInputError(
                f"expected a batch: a list of token sequences, got {type(batch).__name__} "
                f"{batch!r}; to encode one sequence write [sequence]"
            )
        if not batch:
            raise InvalidInputError("the batch is empty; give at least one token sequence")
        vocab_ids = value_dict((token, i) for token, i in self.input_encoding
                               if token not in (self.bos, self.pad))
        rows = []
        for b, sequence in enumerate(batch):
            if isinstance(sequence, (str, bytes)) or not isinstance(sequence, (list, tuple)):
                raise InvalidInputError(
                    f"input {b} must be a list of tokens, got {type(sequence).__name__} "
                    f"{sequence!r}")
            if not 1 <= len(sequence) <= self.max_seq_len:
                raise InvalidInputError(
                    f"input {b} has {len(sequence)} tokens; this model takes 1 to "
                    f"{self.max_seq_len} (BOS is added)")
            if len(sequence) != len(batch[0]):
                raise InvalidInputError(
                    f"input {b} has {len(sequence)} tokens and input 0 has {len(batch[0])}: the "
                    f"exported model runs batches of one length (TransformerLens masks no "
                    f"padding in bidirectional attention); run each length separately")
            rows.append([self.bos_id] + lookup_ids(vocab_ids, sequence, f"input {b}, ",
                                                   "the vocab"))
        return np.asarray(rows, dtype=np.int64)

    def to_tokens(self, batch, device=None):
        """`encode` as a torch tensor (on `device`), ready for the exported model."""
        import torch

        return torch.as_tensor(self.encode(batch), device=device)

    def decode(self, logits) -> list[list]:
        """The output per sequence from logits [B, 1 + n, d_vocab_out], BOS dropped.

        Categorical: the value whose logit is within 0.1 of 1 while the others are
        within 0.1 of 0 (as `model.run` decodes), `None` where no value is present,
        and `Unclean` (the blended values) otherwise. Numerical: the number.
        """

        if hasattr(logits, "detach"):
            logits = logits.detach().cpu().numpy()
        values = np.asarray(logits, dtype=np.float64)
        if values.ndim != 3 or values.shape[-1] != (1 if self.numerical_output
                                                    else len(self.output_decoding)):
            raise InvalidInputError(
                f"expected logits [batch, positions, {len(self.output_decoding) or 1}], got "
                f"shape {values.shape}")
        values = values[:, 1:]  # position 0 is BOS
        if self.numerical_output:
            return [[float(x) for x in row[:, 0]] for row in values]
        out = []
        for row in values:
            decoded = []
            for logit in row:
                order = np.argsort(-logit, kind="stable")
                big = logit[order[0]]
                second = logit[order[1]] if len(logit) > 1 else 0.0
                if big >= 1 - DECODE_TOLERANCE and second <= DECODE_TOLERANCE:
                    decoded.append(self.output_decoding[order[0]])
                elif big <= DECODE_TOLERANCE:
                    decoded.append(None)
                else:
                    decoded.append(Unclean(self.output, tuple(
                        (self.output_decoding[i], float(logit[i])) for i in order
                        if logit[i] > DECODE_TOLERANCE)))
            out.append(decoded)
        return out

    def to_json(self) -> dict:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any) -> "ExportEncoding":
        """The encoding from config.json's `encoding`; a problem raises LoadError."""

        try:
            return from_json(data, cls, "encoding")
        except LoadError as problem:
            raise LoadError(f"cannot read the export's encoding: {problem}") from None


def export_encoding(model) -> ExportEncoding:
    """The model's `ExportEncoding`; warns (CompileWarning) if it has Unclean-flagged
    aggregates, whose blends the logits cannot flag by themselves."""
    readout = model.readouts[model.output]
    unclean = tuple(label for label, status, _ in model.info.aggregate_checks
                    if status in ("unsafe", "unproven"))
    if readout.numerical:
        logits = (f"{model.output} is numerical: d_vocab_out is 1 and logits[..., 0] is the "
                  f"output number itself (a linear readout of the residual), not a logit; do "
                  f"not softmax or argmax it")
    else:
        logits = (f"one logit per value of {model.output} (logit i is the residual's "
                  f"{model.output}:value dimension for output_decoding[i]): about 1 for the "
                  f"value the program gives and about 0 for the others, so the argmax is the "
                  f"output at every position after BOS (position 0, BOS, has no output)")
    if unclean:
        logits += (
            f". Caution: {', '.join(unclean)} may select positions holding different values "
            f"(compiled with allow_unsafe_aggregates=True, or not proven single-valued); on "
            f"such inputs the logits are a blend and their argmax names just one of the "
            f"blended values. encoding.decode(logits) marks those positions Unclean, as "
            f"model.run does")
        warnings.warn(f"exporting {model.output}: {logits}", CompileWarning, stacklevel=3)
    encoder = tracr_view.input_encoder(model)
    return ExportEncoding(
        output=model.output,
        input_encoding=tuple(encoder.encoding_map.items()),
        bos=model.bos,
        pad=model.pad,
        max_seq_len=model.max_seq_len,
        causal=model.causal,
        numerical_output=readout.numerical,
        output_decoding=() if readout.numerical else tuple(readout.values),
        residual_labels=tuple(tracr_view.residual_labels(model)),
        unclean_aggregates=unclean,
        logits=logits,
    )
