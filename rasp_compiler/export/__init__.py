"""Exporting a compiled model to the tools researchers use: TransformerLens's
`HookedTransformer` (transformer_lens.py), a torch checkpoint of it, and safetensors files
that TransformerLens loads without us (safetensors.py); encoding.py is how an exported
model reads tokens and writes values."""

from rasp_compiler.export.encoding import ExportEncoding, export_encoding
from rasp_compiler.export.safetensors import (
    EXPORT_CONFIG_FILE,
    EXPORT_FORMAT,
    WEIGHTS_FILE,
    check_destination,
    export_config,
    read_export_config,
    save_safetensors,
)
from rasp_compiler.export.transformer_lens import (
    SUPPORTED_TRANSFORMER_LENS,
    load_transformer_lens,
    save_transformer_lens,
    tf32_problem,
    to_hooked_transformer,
    transformer_lens_config,
    transformer_lens_version_problem,
    transformer_lens_weights,
    unpadded,
)

__all__ = [
    "EXPORT_CONFIG_FILE", "EXPORT_FORMAT", "ExportEncoding", "SUPPORTED_TRANSFORMER_LENS",
    "WEIGHTS_FILE", "check_destination", "export_config", "export_encoding",
    "load_transformer_lens", "read_export_config", "save_safetensors", "save_transformer_lens", "tf32_problem",
    "to_hooked_transformer", "transformer_lens_config", "transformer_lens_version_problem",
    "transformer_lens_weights", "unpadded",
]
