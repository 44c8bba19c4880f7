"""A compressed model on disk: compression.json (the record of how it was trained, with a
checksum), compression.npz (W and the readers), and the exact model it compresses saved
beside them in base/, all checked on load as saved models are."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rasp_compiler.errors import (
    LoadError,
    SaveError,
)
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.constants import DEFAULT_MAX_PARAMETERS
from rasp_compiler.model.json_codec import from_json, to_json
from rasp_compiler.model.npz_reader import read_arrays
from rasp_compiler.model.persistence import check_declared_size, save_model
from rasp_compiler.model.save_folder import check_folder
from rasp_compiler.superposition.compressed_forward import read_hooks
from rasp_compiler.superposition.compressed_model import CompressedModel, CompressionInfo

FORMAT_VERSION = 1
COMPRESSION_CONFIG_FILE = "compression.json"
ARRAYS_FILE = "compression.npz"
BASE_FOLDER = "base"


def _checksum(data: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the canonical JSON, then each array's name, dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(json.dumps([key, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class _SavedCompression:
    format: int
    info: CompressionInfo
    readers: tuple[str, ...]  # the read hooks with a decoder (empty: linear)


def check_compressed_destination(folder: Path) -> None:
    """Refuse to save onto a file or into a folder holding anything but an earlier save."""
    check_folder(folder, "save the compressed model to", "compressed model",
                 (COMPRESSION_CONFIG_FILE, ARRAYS_FILE, BASE_FOLDER))


def save_compressed(model: CompressedModel, path: str | Path) -> Path:
    folder = Path(path)
    check_compressed_destination(folder)
    readers = model.readers or {}
    arrays = {"W": np.ascontiguousarray(model.W, np.float32)}
    for name, reader in readers.items():
        for key, value in reader.items():
            arrays[f"readers::{name}::{key}"] = np.ascontiguousarray(value, np.float32)
    data = to_json(_SavedCompression(FORMAT_VERSION, model.info, tuple(sorted(readers))))
    data["checksum"] = _checksum(data, arrays)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_model(model.base, folder / BASE_FOLDER)
        with open(folder / ARRAYS_FILE, "wb") as handle:
            np.savez(handle, **arrays)
        (folder / COMPRESSION_CONFIG_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError as exc:
        raise SaveError(f"cannot save the compressed model to {folder}: {exc}") from exc
    return folder


def load_compressed(path: str | Path, max_parameters: int | None = None) -> CompressedModel:
    folder = Path(path)
    limit = DEFAULT_MAX_PARAMETERS if max_parameters is None else max_parameters

    def fail(problem: str):
        return LoadError(f"cannot load the compressed model saved in {folder}: {problem}")

    if not folder.is_dir():
        raise fail("it is a file, not a saved model's folder" if folder.exists()
                   else "no such folder")
    missing = [name for name in (COMPRESSION_CONFIG_FILE, ARRAYS_FILE, BASE_FOLDER)
               if not (folder / name).exists()]
    if missing:
        raise fail(f"{', '.join(missing)} missing; a compressed model is a folder holding "
                   f"{COMPRESSION_CONFIG_FILE}, {ARRAYS_FILE} and {BASE_FOLDER}/, written by "
                   f"CompressedModel.save or `rasp-compiler compress -o`")
    try:
        if (folder / COMPRESSION_CONFIG_FILE).stat().st_size > 16 * 1024**2:
            raise fail(f"{COMPRESSION_CONFIG_FILE} is larger than any compressed model's (16 MB)")
        data = json.loads((folder / COMPRESSION_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise fail(f"{COMPRESSION_CONFIG_FILE} cannot be read ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise fail(f"{COMPRESSION_CONFIG_FILE}: format: expected {FORMAT_VERSION}, got "
                   f"{data.get('format') if isinstance(data, dict) else data!r}")
    checksum = data.pop("checksum", None)
    try:
        saved = from_json(data, _SavedCompression)
    except LoadError as problem:
        raise fail(f"{COMPRESSION_CONFIG_FILE}: {problem}") from None
    base = CompiledModel.load(folder / BASE_FOLDER, max_parameters=limit)
    info = saved.info
    width = base.shape.d_model
    # The arrays' names and shapes follow from compression.json and the base model: hold
    # compression.npz to them before reading any of its data.
    if not 1 <= info.d <= width or info.d_model != width:
        raise fail(f"{COMPRESSION_CONFIG_FILE}: info.d is {info.d} and info.d_model {info.d_model}; the "
                   f"base model's residual has {width} dims (d must be 1..{width})")
    if info.hidden < 0 or bool(saved.readers) != (info.hidden > 0):
        raise fail(f"{COMPRESSION_CONFIG_FILE}: info.hidden {info.hidden} does not match the readers "
                   f"{list(saved.readers)} (nonlinear reads have hidden > 0, linear ones 0)")
    if saved.readers and set(saved.readers) != set(read_hooks(base.shape)):
        raise fail(f"{COMPRESSION_CONFIG_FILE}: readers {list(saved.readers)} are not this model's reads "
                   f"{read_hooks(base.shape)}")
    expected = {"W": ((width, info.d), "[d_model, d]")}
    for name in saved.readers:
        expected.update({f"readers::{name}::w1": ((info.d, info.hidden), "[d, hidden]"),
                         f"readers::{name}::b1": ((info.hidden,), "[hidden]"),
                         f"readers::{name}::w2": ((info.hidden, width), "[hidden, d_model]")})
    try:
        check_declared_size(expected, limit, COMPRESSION_CONFIG_FILE,
                            "CompressedModel.load(path, max_parameters=N)")
        arrays = read_arrays(folder / ARRAYS_FILE, expected, COMPRESSION_CONFIG_FILE)
    except LoadError as problem:
        raise fail(str(problem)) from problem.__cause__
    if checksum != _checksum(data, arrays):
        raise fail(f"{COMPRESSION_CONFIG_FILE} or {ARRAYS_FILE} was edited or corrupted (checksum "
                   f"mismatch); compress the model again")
    readers = {name: {key: arrays[f"readers::{name}::{key}"] for key in ("w1", "b1", "w2")}
               for name in saved.readers} or None
    return CompressedModel(base, arrays["W"], readers, info)


def load_saved_model(path: str | Path, max_parameters: int | None = None):
    """Whatever a folder holds: a compressed model (saved by `compress -o`: it has
    compression.json) or a compiled one (`compile -o`), loaded and checked. The command
    line and the explorer take either wherever they take a saved folder."""
    folder = Path(path)
    if (folder / COMPRESSION_CONFIG_FILE).exists():
        return CompressedModel.load(folder, max_parameters=max_parameters)
    return CompiledModel.load(folder, max_parameters=max_parameters)
