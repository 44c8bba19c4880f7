"""A safetensors export: `model.safetensors` (TransformerLens's names and shapes) and
`config.json` (the TransformerLens config, the encoding, provenance), written with the
safetensors package alone (no torch); docs/export.md loads it into TransformerLens
without rasp_compiler. Also where every export checks its destination."""

from __future__ import annotations

import json
from pathlib import Path

from rasp_compiler.errors import (
    LoadError,
    SaveError,
)
from rasp_compiler.export.encoding import ExportEncoding, export_encoding
from rasp_compiler.export.transformer_lens import (
    SUPPORTED_TRANSFORMER_LENS,
    require,
    transformer_lens_config,
    transformer_lens_weights,
)
from rasp_compiler.model.save_folder import check_file, check_folder, write_bytes_replacing

EXPORT_FORMAT = "rasp_compiler.transformer_lens/1"  # the `format` field of config.json
WEIGHTS_FILE = "model.safetensors"
EXPORT_CONFIG_FILE = "config.json"


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
        return check_file(path, "export to", "model.pt")
    return check_folder(path, "export to", "export", (WEIGHTS_FILE, EXPORT_CONFIG_FILE))


def save_safetensors(model, path: str | Path) -> Path:
    """Write `path/model.safetensors` (TransformerLens names and shapes) and `path/config.json`.

    Needs only the safetensors package (no torch). `path` may be new, empty, or
    hold an earlier export (replaced); docs/export.md loads it into TransformerLens
    without rasp_compiler.
    """
    folder = check_destination(path)
    safetensors_numpy = require("safetensors.numpy", "saving safetensors")
    config = export_config(model)
    weights = transformer_lens_weights(model)
    metadata = {"format": EXPORT_FORMAT, "config": EXPORT_CONFIG_FILE}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_replacing(folder / WEIGHTS_FILE, safetensors_numpy.save(weights, metadata))
        write_bytes_replacing(folder / EXPORT_CONFIG_FILE,
                         json.dumps(config, indent=1).encode("utf-8"))
    except OSError as exc:
        raise SaveError(f"cannot export to {folder}: {exc}") from exc
    return folder


def read_export_config(path: str | Path) -> tuple[dict, ExportEncoding]:
    """(TransformerLens config dict, encoding) of a safetensors export folder; LoadError if bad."""
    file = Path(path) / EXPORT_CONFIG_FILE
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise LoadError(f"cannot read the export's {file}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise LoadError(f"{file} is not a rasp_compiler export (format {EXPORT_FORMAT!r})")
    if not isinstance(data.get("transformer_lens_config"), dict):
        raise LoadError(f"{file}: transformer_lens_config is missing or not an object")
    return data["transformer_lens_config"], ExportEncoding.from_json(data.get("encoding"))
