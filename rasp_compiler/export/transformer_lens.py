"""Export to TransformerLens: a compiled model as a `HookedTransformer`, and its torch checkpoint.

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
import re
import warnings
from pathlib import Path

import numpy as np

from rasp_compiler.errors import (
    CompileWarning,
    InvalidInputError,
    MissingDependencyError,
    SaveError,
)
from rasp_compiler.export.encoding import export_encoding
from rasp_compiler.model import tracr_view
from rasp_compiler.model.save_folder import check_file, write_replacing

SUPPORTED_TRANSFORMER_LENS = ">=2,<4"  # the versions that have HookedTransformer
SUPPORTED_MAJOR_VERSIONS = (2, 3)
INSTALL_HINT = "pip install 'rasp-compiler[export]'"


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


def require(module: str, purpose: str):
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
    torch = require("torch", "exporting to TransformerLens")
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
    return torch, require("transformer_lens", "exporting to TransformerLens")


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


def save_transformer_lens(model, path: str | Path) -> Path:
    """Write one torch file: {"config", "state_dict", "encoding"} of `to_hooked_transformer`.

    Load with `torch.load(path)`, then `HookedTransformer(checkpoint["config"])` and
    `load_state_dict(checkpoint["state_dict"])` (same TransformerLens version).
    """
    target = check_file(path, "export to", "model.pt")
    hooked = to_hooked_transformer(model)
    torch, _ = load_transformer_lens()
    checkpoint = {
        "config": transformer_lens_config(model),
        "state_dict": hooked.state_dict(),
        "encoding": hooked.rasp.to_json(),
    }
    try:
        write_replacing(target, lambda partial: torch.save(checkpoint, partial))
    except OSError as exc:
        raise SaveError(f"cannot export to {target}: {exc}") from exc
    return target


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
