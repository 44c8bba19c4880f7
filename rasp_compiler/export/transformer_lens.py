"""Export: a compiled model as a TransformerLens `HookedTransformer`, or as safetensors.

The exported transformer computes what ours computes, under TransformerLens's
own names and conventions:

- `embed.W_E` is our token table (ids: `model.vocab` in order, then BOS, then
  PAD) and `pos_embed.W_pos` our position table; BOS goes first, at position 0.
- Every layer is padded to one head count, head size and MLP width
  (`tracr_view.padded_layers`): padded heads have zero value and output
  weights and padded MLP units zero weights in and out, so they change nothing.
- No attention scaling (`use_attn_scale=False`: our logits are not divided by
  sqrt(d_head)), no biases (all zero), no normalisation, ReLU MLPs, and
  `attention_dir` "bidirectional", or "causal" for a causal model.
- The unembedding reads the output SOp: one logit per output value for a
  categorical output (the logit is the residual's `output:value` dimension, so
  the argmax is the decoded value), or a single "logit" that is the output
  number for a numerical one.

TransformerLens's bidirectional attention has no padding mask, so the exported
model runs batches of one length (BOS plus n tokens, no PAD); `ExportEncoding`
(the model's `rasp` attribute) encodes such batches and decodes the logits.

torch, TransformerLens and safetensors are an optional extra
(`pip install 'rasp-compiler[export]'`), imported only here and only when
exporting. TransformerLens 2.x and 3.x have `HookedTransformer`; 4.0 removed
it, so the supported range is `SUPPORTED_TRANSFORMER_LENS`. Everything is
float32; on a GPU, torch's default keeps TF32 off for float32 matmuls
(`torch.get_float32_matmul_precision() == "highest"`), and exporting to a CUDA
device warns when that setting was changed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rasp_compiler.errors import (
    CompileWarning,
    InvalidInputError,
    LoadError,
    MissingDependencyError,
    SaveError,
)
from rasp_compiler.lang.identity import value_dict
from rasp_compiler.model import tracr_view
from rasp_compiler.model.constants import DECODE_TOLERANCE

SUPPORTED_TRANSFORMER_LENS = ">=2,<4"  # the versions that have HookedTransformer
SUPPORTED_MAJOR_VERSIONS = (2, 3)
INSTALL_HINT = "pip install 'rasp-compiler[export]'"
EXPORT_FORMAT = "rasp_compiler.transformer_lens/1"  # the `format` field of config.json
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


# ---------------------------------------------------------------------------- dependencies


def transformer_lens_version_problem(version: str) -> str | None:
    """Why an installed TransformerLens `version` cannot take the export, or None if it can."""
    major = re.match(r"\s*v?(\d+)", version)
    if major and int(major.group(1)) in SUPPORTED_MAJOR_VERSIONS:
        return None
    removed = (" (TransformerLens 4 removed HookedTransformer)"
               if major and int(major.group(1)) >= 4 else "")
    return (
        f"TransformerLens {version} is installed, but exporting needs TransformerLens "
        f"{SUPPORTED_TRANSFORMER_LENS}, the versions with HookedTransformer{removed}; "
        f"install a supported one: {INSTALL_HINT}"
    )


def _require(module: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the {module} package, which is not installed ({exc}); "
            f"install the export extra: {INSTALL_HINT}"
        ) from None


def load_transformer_lens():
    """(torch, transformer_lens), after checking TransformerLens's version (importlib.metadata).

    The version is checked before TransformerLens is imported: an unsupported one
    might not import at all, or import without HookedTransformer.
    """
    torch = _require("torch", "exporting to TransformerLens")
    try:
        version = importlib.metadata.version("transformer-lens")
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"exporting to TransformerLens needs the transformer-lens package "
            f"({SUPPORTED_TRANSFORMER_LENS}), which is not installed; install the export "
            f"extra: {INSTALL_HINT}"
        ) from None
    problem = transformer_lens_version_problem(version)
    if problem:
        raise MissingDependencyError(problem)
    return torch, _require("transformer_lens", "exporting to TransformerLens")


# ---------------------------------------------------------------------------- encoding


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
        from rasp_compiler.model.compiled import lookup_ids

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
        from rasp_compiler.model.compiled import Unclean

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
        from rasp_compiler.model.persistence import to_json

        return to_json(self)

    @classmethod
    def from_json(cls, data: Any) -> "ExportEncoding":
        """The encoding from config.json's `encoding`; a problem raises LoadError."""
        from rasp_compiler.model.persistence import from_json

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


# ---------------------------------------------------------------------------- weights


def transformer_lens_config(model) -> dict:
    """HookedTransformerConfig's fields for the model, as JSON-ready values.

    Sizes are the padded uniform ones (`model.model_config`); `init_weights=False`
    because every weight is loaded; the device and dtype (float32) are left to the
    caller and TransformerLens's default.
    """
    readout = model.readouts[model.output]
    if not readout.numerical and not readout.values:
        raise InvalidInputError(
            f"{model.output} can take no value at all (its value set is empty), so there is "
            f"nothing to unembed; export a program whose output has values")
    config = tracr_view.model_config(model)
    return {
        "model_name": f"rasp_compiler:{model.output}",
        "n_layers": len(model.shape.layers),
        "d_model": model.shape.d_model,
        "n_ctx": model.shape.max_positions,
        "d_head": config.key_size,
        "n_heads": config.num_heads,
        "d_mlp": config.mlp_hidden_size,
        "d_vocab": model.shape.vocab_size,
        "d_vocab_out": 1 if readout.numerical else len(readout.values),
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "causal" if model.causal else "bidirectional",
        "use_attn_scale": False,
        "positional_embedding_type": "standard",
        "default_prepend_bos": False,
        "init_weights": False,
    }


def transformer_lens_weights(model) -> dict[str, np.ndarray]:
    """Every parameter under its TransformerLens state-dict name and shape, float32.

    W_Q, W_K, W_V [n_heads, d_model, d_head]; W_O [n_heads, d_head, d_model];
    W_in [d_model, d_mlp]; W_out [d_mlp, d_model]; W_U [d_model, d_vocab_out];
    every bias zero. TransformerLens's buffers (IGNORE, mask) are not parameters.
    """
    config = transformer_lens_config(model)
    heads, size, width = config["n_heads"], config["d_head"], config["d_mlp"]
    d = model.shape.d_model
    weights = {
        "embed.W_E": model.params["token_embed"]["embeddings"],
        "pos_embed.W_pos": model.params["pos_embed"]["embeddings"],
    }
    for l, layer in enumerate(tracr_view.padded_layers(model)):
        block = f"blocks.{l}"
        for name, w in (("Q", layer.w_q), ("K", layer.w_k), ("V", layer.w_v)):
            weights[f"{block}.attn.W_{name}"] = w.transpose(1, 0, 2)
            weights[f"{block}.attn.b_{name}"] = np.zeros((heads, size))
        weights[f"{block}.attn.W_O"] = layer.w_o
        weights[f"{block}.attn.b_O"] = np.zeros(d)
        weights[f"{block}.mlp.W_in"] = layer.w_1
        weights[f"{block}.mlp.b_in"] = np.zeros(width)
        weights[f"{block}.mlp.W_out"] = layer.w_2
        weights[f"{block}.mlp.b_out"] = np.zeros(d)
    readout = model.readouts[model.output]
    unembed = np.zeros((d, config["d_vocab_out"]), np.float32)
    if readout.numerical:
        np.add.at(unembed[:, 0], list(readout.indices),
                  np.asarray(readout.coefficients, np.float32))
    else:
        unembed[list(readout.indices), np.arange(len(readout.indices))] = 1.0
    weights["unembed.W_U"] = unembed
    weights["unembed.b_U"] = np.zeros(config["d_vocab_out"])
    return {name: np.ascontiguousarray(np.asarray(w, dtype=np.float32))
            for name, w in weights.items()}


# ---------------------------------------------------------------------------- TransformerLens


def tf32_problem(torch, device) -> str | None:
    """Why float32 matmuls on `device` would lose precision (TF32), or None."""
    if torch.device(device).type != "cuda":
        return None
    precision = torch.get_float32_matmul_precision()
    if precision == "highest" and not torch.backends.cuda.matmul.allow_tf32:
        return None
    return (
        f"torch runs float32 matmuls on CUDA as TF32 (float32 matmul precision {precision!r}, "
        f"allow_tf32={torch.backends.cuda.matmul.allow_tf32}): its 10-bit mantissa breaks "
        f"attention logits of size ~40; call torch.set_float32_matmul_precision('highest') "
        f"(torch's default) before running the exported model"
    )


def to_hooked_transformer(model, device: str = "cpu"):
    """A TransformerLens `HookedTransformer` computing what `model` computes (float32).

    The returned model carries `rasp`, the `ExportEncoding`: `rasp.to_tokens(batch)`
    feeds it, `rasp.decode(logits)` reads it, `rasp.residual_labels` names the
    residual. See the module docstring for the correspondence.
    """
    torch, transformer_lens = load_transformer_lens()
    encoding = export_encoding(model)
    config = transformer_lens.HookedTransformerConfig(
        **transformer_lens_config(model), device=str(device), dtype=torch.float32)
    with warnings.catch_warnings():
        # TransformerLens 3 deprecates HookedTransformer for TransformerBridge, which
        # wraps Hugging Face models; a compiled model has none, and 2.x/3.x keep it.
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message="HookedTransformer is deprecated")
        hooked = transformer_lens.HookedTransformer(config)
    state = hooked.state_dict()
    for name, value in transformer_lens_weights(model).items():
        state[name] = torch.tensor(value)  # a copy: our arrays may be read-only views
    hooked.load_state_dict(state, strict=True)
    hooked.eval()
    hooked.rasp = encoding
    problem = tf32_problem(torch, device)
    if problem:
        warnings.warn(problem, CompileWarning, stacklevel=2)
    return hooked


# ---------------------------------------------------------------------------- files


def export_config(model) -> dict:
    """config.json of a safetensors export: TransformerLens config, encoding, provenance."""
    return {
        "format": EXPORT_FORMAT,
        "weights": WEIGHTS_FILE,
        "transformer_lens_versions": SUPPORTED_TRANSFORMER_LENS,
        "transformer_lens_config": transformer_lens_config(model),
        "encoding": export_encoding(model).to_json(),
    }


def check_destination(path: str | Path, format: str = "safetensors") -> Path:
    """Refuse a destination an export cannot be written to, before any work is done.

    safetensors: a folder, new, empty, or holding an earlier export (replaced).
    transformerlens: a file (new, or replaced) in an existing folder.
    """
    if format == "transformerlens":
        from rasp_compiler.model.persistence import check_file_destination

        return check_file_destination(path, "export to", "model.pt")
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise SaveError(
            f"cannot export to {target}: it is a file; name a folder (new, empty, or holding an "
            f"earlier export): the export is written as {WEIGHTS_FILE} and {CONFIG_FILE}")
    if target.is_dir():
        entries = sorted(os.listdir(target))
        if entries and not {WEIGHTS_FILE, CONFIG_FILE} & set(entries):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise SaveError(
                f"cannot export to {target}: the folder holds other files ({shown}) and no "
                f"export; choose a new or empty folder")
    return target


def _write_replacing(target: Path, data: bytes) -> None:
    """Write beside `target`, then rename over it: no half-written file under its name."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()


def save_safetensors(model, path: str | Path) -> Path:
    """Write `path/model.safetensors` (TransformerLens names and shapes) and `path/config.json`.

    Needs only the safetensors package (no torch). `path` may be new, empty, or
    hold an earlier export (replaced); docs/export.md loads it into TransformerLens
    without rasp_compiler.
    """
    folder = check_destination(path)
    safetensors_numpy = _require("safetensors.numpy", "saving safetensors")
    config = export_config(model)
    weights = transformer_lens_weights(model)
    metadata = {"format": EXPORT_FORMAT, "config": CONFIG_FILE}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_replacing(folder / WEIGHTS_FILE, safetensors_numpy.save(weights, metadata))
        _write_replacing(folder / CONFIG_FILE,
                         json.dumps(config, indent=1).encode("utf-8"))
    except OSError as exc:
        raise SaveError(f"cannot export to {folder}: {exc}") from exc
    return folder


def save_transformer_lens(model, path: str | Path) -> Path:
    """Write one torch file: {"config", "state_dict", "encoding"} of `to_hooked_transformer`.

    Load with `torch.load(path)`, then `HookedTransformer(checkpoint["config"])` and
    `load_state_dict(checkpoint["state_dict"])` (same TransformerLens version).
    """
    target = check_destination(path, "transformerlens")
    hooked = to_hooked_transformer(model)
    torch, _ = load_transformer_lens()
    checkpoint = {
        "config": transformer_lens_config(model),
        "state_dict": hooked.state_dict(),
        "encoding": hooked.rasp.to_json(),
    }
    partial = target.with_name(f".{target.name}.partial")
    try:
        torch.save(checkpoint, partial)
        os.replace(partial, target)
    except OSError as exc:
        raise SaveError(f"cannot export to {target}: {exc}") from exc
    finally:
        if partial.exists():
            partial.unlink()
    return target


def read_export_config(path: str | Path) -> tuple[dict, ExportEncoding]:
    """(TransformerLens config dict, encoding) of a safetensors export folder; LoadError if bad."""
    file = Path(path) / CONFIG_FILE
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise LoadError(f"cannot read the export's {file}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise LoadError(f"{file} is not a rasp_compiler export (format {EXPORT_FORMAT!r})")
    if not isinstance(data.get("transformer_lens_config"), dict):
        raise LoadError(f"{file}: transformer_lens_config is missing or not an object")
    return data["transformer_lens_config"], ExportEncoding.from_json(data.get("encoding"))


def unpadded(model, name: str, activation: np.ndarray) -> np.ndarray:
    """A TransformerLens activation cut to our shape: the model's own heads, head
    sizes and MLP units of that layer, dropping the zero padding (see run_with_cache)."""
    activation = np.asarray(activation)
    if not name.startswith("blocks."):
        return activation
    layer = model.shape.layers[int(name.split(".")[1])]
    h, dk, dv, width = layer.heads, layer.key_size, layer.value_size, layer.mlp_hidden
    hook = name.split(".", 2)[2]
    if hook in ("attn.hook_q", "attn.hook_k"):
        return activation[:, :, :h, :dk]
    if hook in ("attn.hook_v", "attn.hook_z"):
        return activation[:, :, :h, :dv]
    if hook in ("attn.hook_attn_scores", "attn.hook_pattern"):
        return activation[:, :h]
    if hook in ("mlp.hook_pre", "mlp.hook_post"):
        return activation[..., :width]
    return activation


__all__ = [
    "ExportEncoding", "SUPPORTED_TRANSFORMER_LENS", "check_destination", "export_config",
    "export_encoding", "load_transformer_lens", "read_export_config", "save_safetensors", "save_transformer_lens",
    "to_hooked_transformer", "transformer_lens_config", "transformer_lens_weights", "unpadded",
]
