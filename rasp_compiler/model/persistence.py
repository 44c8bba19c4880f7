"""Saved models: the on-disk format, a dataclass<->JSON codec, and the checks made on load.

Over 600 lines on purpose for now: the format, its codec and the load checks, which must
agree field by field; it is split by job in issue 24's layered package, which moves every
module in one step with the weights unchanged.

A saved model is a folder holding two files:

    params.npz  every parameter as "module::name" (e.g. "layer_0/attn/query::w"), float32
    model.json  format, vocab, max_seq_len, bos, pad, shape, layout, readouts, info, checksum

Loading trusts nothing in the folder: every key, type, array shape and cross-reference is
checked, and a SHA-256 checksum over the config and the weights refuses a file damaged or
half-written after saving. Each problem raises one `LoadError` naming the folder and the
field (`info.layers[0].heads[1].coldness: missing`). Loading never executes code: model.json
is plain JSON, and params.npz is read entry by entry (`read_arrays`): its names, sizes and
.npy headers are held to the shapes model.json declares before any array data is read, so
memory stays within what model.json declares, itself bounded by `max_parameters`.

The checksum has no key: it is not a signature. Someone who edits a weight and writes the
new checksum gets a model that loads (and passes every structural check); see
docs/compiler.md, "Saved models", for what that means and what to do about it.

The codec turns the frozen dataclasses (ModelInfo, Readout, ModelShape, ...) into JSON and
back from their type hints, so a new field is saved and checked without new code here.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import hashlib
import io
import json
import math
import operator
import types
import typing
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from rasp_compiler.errors import InternalError, LoadError, SaveError, describe_bytes
from rasp_compiler.lang.identity import ValueMap, identity_key, same_value
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.constants import DEFAULT_MAX_PARAMETERS
from rasp_compiler.model.forward import ModelShape
from rasp_compiler.model.records import ModelInfo, ProgramSource
from rasp_compiler.model.residual import BOS, ONE, Dim, Readout, ResidualLayout
from rasp_compiler.model.save_folder import check_folder, write_bytes_replacing, write_replacing

# Older formats are refused rather than read, since recompiling is cheap. Format 1 had no
# checksum (an edited file could not be told from a good one); format 2 numbered the
# layers in info from 1 (format 3 numbers them from 0, as the parameters and hooks do).
# Format 4 adds `source` (the program's name and how to load it again); format 3 files,
# which lack it and are otherwise the same, still load (with no source).
FORMAT_VERSION = 4
READABLE_FORMATS = (3, 4)
CONFIG_FILE = "model.json"
PARAMS_FILE = "params.npz"
CHECKSUM_PREFIX = "sha256:"
TOKENS = "tokens"  # the layout owner of the input tokens' one-hot dims
PARAM_DTYPE = np.dtype("<f4")
# What a damaged npz can raise from inside zipfile / zlib / numpy's npy reader
# (RuntimeError: an encrypted entry; RecursionError, MemoryError: a pathological header).
_ARCHIVE_ERRORS = (OSError, EOFError, ValueError, NotImplementedError, KeyError, RuntimeError,
                   RecursionError, MemoryError, SyntaxError, zipfile.BadZipFile, zlib.error)
# An .npy header numpy writes for a float32 matrix is 128 bytes; numpy's own reader refuses
# headers past 10,000 characters. Anything longer is not a saved model's.
NPY_HEADER_LIMIT = 10_000
NPY_MAX_PREFIX = 12  # before the header: magic (6), version (2), header length (2 or 4)
READ_CHUNK = 1 << 20  # array data is read in pieces of this many bytes into its own buffer
# model.json of the largest models the default max_parameters allows is a few MB (one line
# per residual dim, one per head); the limit grows with max_parameters.
CONFIG_BYTES_PER_DEFAULT_LIMIT = 64 * 1024**2


@dataclasses.dataclass(frozen=True)
class SavedConfig:
    """Everything in model.json but the checksum."""

    format: int
    vocab: tuple[Any, ...]
    max_seq_len: int
    bos: Any
    pad: Any
    shape: ModelShape
    layout: tuple[tuple[str, Any, bool], ...]  # (sop, value or None, is numerical) per dim
    readouts: tuple[Readout, ...]
    info: ModelInfo
    source: ProgramSource | None = None  # format 4: where the program came from


class _Invalid(LoadError):
    """One thing wrong with a saved model; `load_model` adds the folder to the message."""


# ---------------------------------------------------------------------------- save


def save_model(model: CompiledModel, path: str | Path) -> Path:
    """Write `path/params.npz` and `path/model.json`; `load_model(path)` reads them back.

    `path` may be new, an empty folder, or a folder holding an earlier save (overwritten);
    a file or a folder of other things is refused (SaveError), as is any OS error writing.
    """
    folder = Path(path)
    check_save_destination(folder)
    config = SavedConfig(
        format=FORMAT_VERSION,
        vocab=model.vocab,
        max_seq_len=model.max_seq_len,
        bos=model.bos,
        pad=model.pad,
        shape=model.shape,
        layout=tuple((d.sop, None if d.is_numerical else d.value, d.is_numerical)
                     for d in model.layout.dims),
        readouts=tuple(model.readouts.values()),
        info=model.info,
        source=getattr(model, "source", None),
    )
    data = to_json(config)
    arrays = {f"{module}::{name}": np.ascontiguousarray(np.asarray(value, dtype=PARAM_DTYPE))
              for module, inner in model.params.items() for name, value in inner.items()}
    data["checksum"] = _checksum(data, arrays)
    text = json.dumps(data, indent=1)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        def write_params(partial: Path) -> None:
            with open(partial, "wb") as handle:  # a handle: np.savez would add .npz to a name
                np.savez(handle, **arrays)

        write_replacing(folder / PARAMS_FILE, write_params)
        write_bytes_replacing(folder / CONFIG_FILE, text.encode("utf-8"))
    except OSError as exc:
        raise SaveError(f"cannot save the model to {folder}: {exc}") from exc
    return folder


def check_save_destination(folder: Path) -> None:
    """Refuse to save onto a file or into a folder holding anything but an earlier save."""
    check_folder(folder, "save the model to", "saved model", (CONFIG_FILE, PARAMS_FILE))


# ---------------------------------------------------------------------------- load


def load_model(path: str | Path, model_class: type = CompiledModel, *,
               max_parameters: int = DEFAULT_MAX_PARAMETERS) -> CompiledModel:
    """Read and check a folder written by `save_model`; any problem raises LoadError.

    `model_class` is what to build (CompiledModel.load passes its own class). A model.json
    declaring more than `max_parameters` parameters (default: compile_program's limit) is
    refused before params.npz is opened; pass the limit the model was compiled with.
    """
    folder = Path(path)
    if isinstance(max_parameters, bool) or not isinstance(max_parameters, int) \
            or max_parameters < 1:
        raise LoadError(f"max_parameters must be a positive int, got {max_parameters!r}")
    try:
        return _load(folder, model_class, max_parameters)
    except _Invalid as problem:
        raise LoadError(f"cannot load the model saved in {folder}: {problem}") from (
            problem.__cause__)


def _load(folder: Path, model_class: type, max_parameters: int) -> CompiledModel:
    if not folder.is_dir():
        raise _Invalid("it is a file, not a saved model's folder" if folder.exists()
                       else "no such folder")
    missing = [name for name in (CONFIG_FILE, PARAMS_FILE) if not (folder / name).is_file()]
    if missing:
        raise _Invalid(
            f"{' and '.join(missing)} missing; a saved model is a folder holding {CONFIG_FILE} "
            f"and {PARAMS_FILE}, written by CompiledModel.save or `rasp-compiler compile -o`"
        )
    data = _read_config(folder / CONFIG_FILE, max_parameters)
    _check_format(data)
    if data["format"] == 3 and "source" in data:
        raise _Invalid(f"{CONFIG_FILE}: source: unknown key in format 3 (format 4 added it)")
    checksum = data.pop("checksum", None)
    if not isinstance(checksum, str) or not checksum.startswith(CHECKSUM_PREFIX):
        raise _Invalid(f"{CONFIG_FILE}: checksum: missing or not a '{CHECKSUM_PREFIX}...' string")
    try:
        config = from_json(data, SavedConfig)
    except _Invalid as problem:
        raise _Invalid(f"{CONFIG_FILE}: {problem}") from None
    layout = _layout(config)
    _check_sizes(config, layout)
    # Every array's name, shape and dtype follow from model.json: params.npz is held to
    # them entry by entry, from its zip directory and .npy headers, before any data is read.
    expected = expected_arrays(config.shape)
    check_declared_size(expected, max_parameters, f"the shape in {CONFIG_FILE}",
                        "CompiledModel.load(path, max_parameters=N)")
    arrays = read_arrays(folder / PARAMS_FILE, expected, CONFIG_FILE)
    _check_finite(arrays)
    _check_readouts(config, layout)
    _check_info(config)
    _check_source(config)
    _check_vocab_embedding(config, layout, arrays["token_embed::embeddings"])
    if _checksum(data, arrays) != checksum:
        raise _Invalid(
            f"{CONFIG_FILE} or {PARAMS_FILE} was edited or corrupted (checksum mismatch); "
            f"recompile the program and save it again"
        )
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        module, name = key.split("::")
        params.setdefault(module, {})[name] = array
    return model_class(
        params=params,
        shape=config.shape,
        vocab=config.vocab,
        max_seq_len=config.max_seq_len,
        bos=config.bos,
        pad=config.pad,
        layout=layout,
        readouts={readout.label: readout for readout in config.readouts},
        info=config.info,
        source=config.source,
    )


def config_byte_limit(max_parameters: int) -> int:
    """The largest model.json read for a model of at most `max_parameters` parameters."""
    return max(CONFIG_BYTES_PER_DEFAULT_LIMIT,
               CONFIG_BYTES_PER_DEFAULT_LIMIT * max_parameters // DEFAULT_MAX_PARAMETERS)


def _read_config(file: Path, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> dict:
    def no_repeats(pairs):
        keys = [key for key, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                raise _Invalid(f"{CONFIG_FILE}: the key {key!r} appears twice in one object")
        return dict(pairs)

    try:
        size, limit = file.stat().st_size, config_byte_limit(max_parameters)
        if size > limit:
            raise _Invalid(f"{CONFIG_FILE} is {describe_bytes(size)}, more than a saved model "
                           f"of at most {max_parameters:,} parameters writes ("
                           f"{describe_bytes(limit)}); it is not a saved model's")
        data = json.loads(file.read_text(encoding="utf-8"), object_pairs_hook=no_repeats)
    except _Invalid:  # a LoadError, so a ValueError: not "invalid JSON"
        raise
    except OSError as exc:
        raise _Invalid(f"cannot read {CONFIG_FILE}: {exc}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _Invalid(f"{CONFIG_FILE} is not valid JSON ({exc}); it is truncated or damaged") \
            from exc
    except RecursionError:
        raise _Invalid(f"{CONFIG_FILE} nests too deeply to be a saved model") from None
    if not isinstance(data, dict):
        raise _Invalid(f"{CONFIG_FILE} holds {_kind(data)}, not a JSON object")
    return data


def _check_format(data: dict) -> None:
    version = data.get("format")
    if version in READABLE_FORMATS and type(version) is int:
        return
    if "format" not in data:
        raise _Invalid(f"{CONFIG_FILE}: format: missing; this is not a model saved by "
                       f"rasp_compiler")
    if type(version) is not int or version < 1:
        raise _Invalid(f"{CONFIG_FILE}: format: {version!r} is not a format version")
    if version < min(READABLE_FORMATS):
        raise _Invalid(f"saved by an older rasp_compiler (format {version}); recompile and "
                       f"save again")
    raise _Invalid(f"saved by a newer rasp_compiler (format {version}; this one reads format "
                   f"{FORMAT_VERSION}); upgrade rasp_compiler")


def check_declared_size(expected: dict[str, tuple[tuple[int, ...], str]],
                        max_parameters: int, declared_by: str, how: str) -> None:
    """Refuse, before opening the archive, arrays whose declared sizes add up past
    `max_parameters` (`declared_by` says where the shapes come from, `how` how to load
    a model that large)."""
    count = sum(math.prod(shape) for shape, _ in expected.values())
    if count > max_parameters:
        raise _Invalid(
            f"{declared_by} declares {count:,} parameters ({describe_bytes(4 * count)} of "
            f"float32), more than max_parameters={max_parameters:,} allows; a model compiled "
            f"with a larger max_parameters loads with {how}"
        )


def read_arrays(file: Path, expected: dict[str, tuple[tuple[int, ...], str]],
                declared_by: str) -> dict[str, np.ndarray]:
    """The float32 arrays of the npz archive `file`, which must hold exactly `expected`
    (key -> (shape, how that shape follows from `declared_by`, e.g. model.json)).

    Everything is checked before any array data is read: the entry names (from the zip
    directory), each entry's sizes (uncompressed: its header and expected shape; compressed:
    no more than that), then its .npy header (length, shape, dtype). The data is then read
    in pieces into a buffer of the expected size, never more, and zipfile checks each
    entry's CRC. So memory stays within the expected sizes whatever the archive claims.
    """
    name = file.name
    if not zipfile.is_zipfile(file):
        raise _Invalid(f"{name} is not an npz (zip) archive; it is truncated or damaged")
    try:
        with zipfile.ZipFile(file) as archive:
            entries = _archive_entries(archive, name, expected, declared_by)
            headers = {key: _entry_header(archive, entries[key], name, key, want, why,
                                          declared_by)
                       for key, (want, why) in expected.items()}
            return {key: _entry_data(archive, entries[key], name, key, expected[key][0],
                                     *headers[key])
                    for key in expected}
    except _Invalid:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise _Invalid(f"{name} cannot be read ({type(exc).__name__}: {exc}); it is "
                       f"truncated or damaged") from exc


def _archive_entries(archive: zipfile.ZipFile, name: str, expected: dict,
                     declared_by: str) -> dict[str, zipfile.ZipInfo]:
    """The zip entry of each expected array; any other entry, a repeated or a missing one
    is refused."""
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise _Invalid(f"{name} holds {info.filename!r}, which is not an array (an npz "
                           f"archive holds only NAME.npy entries)")
        key = info.filename[: -len(".npy")]
        if key in entries:
            raise _Invalid(f"{name} holds two entries named {info.filename!r}")
        entries[key] = info
    missing = sorted(set(expected) - set(entries))
    if missing:
        raise _Invalid(f"{name}: missing the parameters {', '.join(missing)}")
    extra = sorted(set(entries) - set(expected))
    if extra:
        shown = ", ".join(extra[:5]) + (f", ... ({len(extra)} in all)" if len(extra) > 5 else "")
        raise _Invalid(f"{name}: unexpected parameters {shown} ({declared_by} declares "
                       f"{len(expected)} arrays)")
    return entries


def _entry_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, key: str,
                  want: tuple[int, ...], why: str, declared_by: str) -> tuple[int, bool]:
    """Check one entry's sizes and .npy header against the shape `want`; return the
    header's length in bytes and whether the data is in Fortran order."""
    need = PARAM_DTYPE.itemsize * math.prod(want)
    where = f"{name}: {key}"
    if info.flag_bits & 0x1:
        raise _Invalid(f"{where} is encrypted; numpy never writes encrypted entries")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Invalid(f"{where} is compressed with zip method {info.compress_type}; numpy "
                       f"writes stored or deflated entries only")
    most = need + NPY_MAX_PREFIX + NPY_HEADER_LIMIT
    if info.file_size > most:
        raise _Invalid(f"{where} holds {describe_bytes(info.file_size)} once uncompressed, "
                       f"more than its expected shape {list(want)} needs "
                       f"({describe_bytes(need)} and a header)")
    # Deflate adds at most 5 bytes per 16 kB block; a larger entry hides something else.
    if info.compress_size > info.file_size + info.file_size // 1000 + 1024:
        raise _Invalid(f"{where} takes {describe_bytes(info.compress_size)} compressed, more "
                       f"than the {describe_bytes(info.file_size)} it holds")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise _Invalid(f"{where} has .npy format version {version[0]}.{version[1]}; numpy "
                           f"writes float32 arrays as version 1.0 (or 2.0)")
        length_bytes = stream.read(2 if version == (1, 0) else 4)
        length = int.from_bytes(length_bytes, "little")
        if length > NPY_HEADER_LIMIT:
            raise _Invalid(f"{where} has a {describe_bytes(length)} .npy header; numpy writes "
                           f"about 128 bytes (at most {NPY_HEADER_LIMIT:,})")
        header = io.BytesIO(length_bytes + stream.read(length))
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = read_header(header, max_header_size=NPY_HEADER_LIMIT)
    if shape != want:
        raise _Invalid(f"{name}: {key} has shape {list(shape)}, expected {list(want)} = "
                       f"{why} from {declared_by}")
    if dtype != PARAM_DTYPE:
        raise _Invalid(f"{name}: {key} has dtype {dtype}, expected float32")
    header_bytes = 8 + len(length_bytes) + length  # magic and version, length, header
    if info.file_size != header_bytes + need:
        raise _Invalid(f"{where} holds {info.file_size:,} bytes, but its header and shape "
                       f"make {header_bytes + need:,}; it is truncated or damaged")
    return header_bytes, fortran_order


def _entry_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, key: str,
                shape: tuple[int, ...], header_bytes: int, fortran_order: bool) -> np.ndarray:
    """A checked entry's array, read in pieces into a buffer of its expected size."""
    buffer = bytearray(info.file_size - header_bytes)
    view = memoryview(buffer)
    with archive.open(info) as stream:
        stream.read(header_bytes)
        done = 0
        while done < len(buffer):
            piece = stream.read(min(READ_CHUNK, len(buffer) - done))
            if not piece:
                raise _Invalid(f"{name}: {key} ends after {done:,} of its {len(buffer):,} "
                               f"bytes; it is truncated or damaged")
            view[done: done + len(piece)] = piece
            done += len(piece)
        if stream.read(1):  # also reaches the end of the entry, where zipfile checks its CRC
            raise _Invalid(f"{name}: {key} holds more data than its shape")
    return np.frombuffer(buffer, dtype=PARAM_DTYPE).reshape(
        shape, order="F" if fortran_order else "C")


# ---------------------------------------------------------------------------- checks


def _layout(config: SavedConfig) -> ResidualLayout:
    dims: list[Dim] = []
    first: dict[Dim, int] = {}
    for i, (sop, value, numerical) in enumerate(config.layout):
        if numerical and value is not None:
            raise _Invalid(f"{CONFIG_FILE}: layout[{i}]: the numerical dim {sop!r} holds no "
                           f"value, got {value!r}")
        if not numerical and value is None:
            raise _Invalid(f"{CONFIG_FILE}: layout[{i}]: the categorical dim of {sop!r} needs "
                           f"a value, got null")
        dim = Dim(sop) if numerical else Dim(sop, value)
        if dim in first:
            raise _Invalid(f"{CONFIG_FILE}: layout[{i}]: the dim {dim} also is layout[{first[dim]}]")
        first[dim] = i
        dims.append(dim)
    for special in (ONE, BOS):
        if special not in first:
            raise _Invalid(f"{CONFIG_FILE}: layout: no {special.sop!r} dim (every model has one)")
    return ResidualLayout(tuple(dims))


def _check_sizes(config: SavedConfig, layout: ResidualLayout) -> None:
    """The vocab, the special tokens and the lengths against the declared shape."""
    shape, vocab = config.shape, config.vocab
    if config.max_seq_len < 1:
        raise _Invalid(f"{CONFIG_FILE}: max_seq_len: must be at least 1, got {config.max_seq_len}")
    if not vocab:
        raise _Invalid(f"{CONFIG_FILE}: vocab: empty")
    keys = [identity_key(token) for token in vocab]  # 1 and True are two tokens
    if len(set(keys)) != len(keys):
        repeated = next(token for token, key in zip(vocab, keys) if keys.count(key) > 1)
        raise _Invalid(f"{CONFIG_FILE}: vocab: the token {repeated!r} appears twice")
    for name, token in (("bos", config.bos), ("pad", config.pad)):
        if token in vocab:
            raise _Invalid(f"{CONFIG_FILE}: {name}: the token {token!r} is also in the vocab")
    if config.bos == config.pad:
        raise _Invalid(f"{CONFIG_FILE}: bos and pad are the same token {config.bos!r}")
    expected = {
        "vocab_size": (len(vocab) + 2, f"{len(vocab)} vocab tokens + BOS + PAD"),
        "max_positions": (config.max_seq_len + 1, f"max_seq_len {config.max_seq_len} + BOS"),
        "d_model": (layout.width, f"the layout has {layout.width} dims"),
    }
    for name, (value, why) in expected.items():
        if getattr(shape, name) != value:
            raise _Invalid(f"{CONFIG_FILE}: shape.{name} is {getattr(shape, name)}, expected "
                           f"{value} ({why})")
    for l, layer in enumerate(shape.layers):
        for name, value in dataclasses.asdict(layer).items():
            if value < 0:
                raise _Invalid(f"{CONFIG_FILE}: shape.layers[{l}].{name} is negative ({value})")


def expected_arrays(shape: ModelShape) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each parameter's key, its shape and how that shape follows from the ModelShape."""
    d = shape.d_model
    out = {
        "token_embed::embeddings": ((shape.vocab_size, d), "[vocab_size, d_model]"),
        "pos_embed::embeddings": ((shape.max_positions, d), "[max_positions, d_model]"),
    }
    for l, layer in enumerate(shape.layers):
        keys, values = layer.heads * layer.key_size, layer.heads * layer.value_size
        out.update({
            f"layer_{l}/attn/query::w": ((d, keys), "[d_model, heads * key_size]"),
            f"layer_{l}/attn/key::w": ((d, keys), "[d_model, heads * key_size]"),
            f"layer_{l}/attn/value::w": ((d, values), "[d_model, heads * value_size]"),
            f"layer_{l}/attn/linear::w": ((values, d), "[heads * value_size, d_model]"),
            f"layer_{l}/mlp/linear_1::w": ((d, layer.mlp_hidden), "[d_model, mlp_hidden]"),
            f"layer_{l}/mlp/linear_2::w": ((layer.mlp_hidden, d), "[mlp_hidden, d_model]"),
        })
    return out


def _check_finite(arrays: dict[str, np.ndarray]) -> None:
    for key, array in arrays.items():
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):
            raise _Invalid(f"{PARAMS_FILE}: {key} holds {len(bad)} non-finite values (NaN or "
                           f"infinity), the first at {list(map(int, bad[0]))}")


def _check_readouts(config: SavedConfig, layout: ResidualLayout) -> None:
    seen: set[str] = set()
    for i, readout in enumerate(config.readouts):
        where = f"{CONFIG_FILE}: readouts[{i}] ({readout.label!r})"
        if readout.label in seen:
            raise _Invalid(f"{where}: a second readout of the same SOp")
        seen.add(readout.label)
        for index in readout.indices:
            if not 0 <= index < layout.width:
                raise _Invalid(f"{where}: index {index} is outside the residual (dims 0.."
                               f"{layout.width - 1})")
        if readout.numerical:
            if readout.values or len(readout.coefficients) != len(readout.indices):
                raise _Invalid(f"{where}: a numerical readout needs one coefficient per index "
                               f"and no values")
            if not all(math.isfinite(c) for c in readout.coefficients):
                raise _Invalid(f"{where}: a coefficient is not finite")
            continue
        if readout.coefficients or len(readout.values) != len(readout.indices):
            raise _Invalid(f"{where}: a categorical readout needs one value per index and no "
                           f"coefficients")
        for index, value in zip(readout.indices, readout.values):
            if layout.dims[index] != Dim(readout.label, value):
                raise _Invalid(f"{where}: index {index} is the dim {layout.dims[index]}, not "
                               f"{readout.label}:{value}")


def _check_info(config: SavedConfig) -> None:
    info, shape = config.info, config.shape
    labels = [readout.label for readout in config.readouts]
    if info.output not in labels:
        raise _Invalid(f"{CONFIG_FILE}: info.output {info.output!r} has no readout (readable: "
                       f"{', '.join(labels)})")
    if len(info.layers) != len(shape.layers):
        raise _Invalid(f"{CONFIG_FILE}: info.layers describes {len(info.layers)} layers, "
                       f"shape.layers {len(shape.layers)}")
    for l, (layer, layer_shape) in enumerate(zip(info.layers, shape.layers)):
        if layer.index != l or any(head.layer != l for head in layer.heads):
            raise _Invalid(f"{CONFIG_FILE}: info.layers[{l}] is numbered {layer.index} (heads "
                           f"{[head.layer for head in layer.heads]}), not {l}")
        if len(layer.heads) != layer_shape.heads or layer.mlp_hidden != layer_shape.mlp_hidden:
            raise _Invalid(
                f"{CONFIG_FILE}: info.layers[{l}] has {len(layer.heads)} heads and MLP width "
                f"{layer.mlp_hidden}, shape.layers[{l}] {layer_shape.heads} and "
                f"{layer_shape.mlp_hidden}"
            )


MAX_SOURCE_CHARS = 4096  # a program's name and reference: a name and a file path


def _check_source(config: SavedConfig) -> None:
    """The program's name and reference: short printable text. Loading never follows the
    reference; `program_files.reload_program` does, when asked (`explore` asks)."""
    if config.source is None:
        return
    for name in ("name", "reference"):
        text = getattr(config.source, name)
        if not text or len(text) > MAX_SOURCE_CHARS or not text.isprintable():
            raise _Invalid(f"{CONFIG_FILE}: source.{name}: {text[:40]!r} is not a program's "
                           f"{name} (1 to {MAX_SOURCE_CHARS} printable characters)")


def _check_vocab_embedding(config: SavedConfig, layout: ResidualLayout,
                           embed: np.ndarray) -> None:
    """Token row i must embed vocab[i]: a reordered or renamed vocab is caught here."""
    vocab, index = config.vocab, layout.index
    clash = f"{CONFIG_FILE} and {PARAMS_FILE} disagree"
    bos_column = embed[:, index[BOS]]
    if bos_column[len(vocab)] != 1 or np.any(np.delete(bos_column, len(vocab)) != 0):
        raise _Invalid(f"{clash}: token_embed row {len(vocab)} (after the {len(vocab)} vocab "
                       f"tokens) must be BOS; was the vocab edited?")
    token_columns = ValueMap((dim.value, i) for i, dim in enumerate(layout.dims)
                             if dim.sop == TOKENS)  # 1 and True: two tokens, two columns
    if not token_columns:
        return  # the program never reads the raw tokens: only the checksum guards the vocab
    if set(map(identity_key, token_columns)) != set(map(identity_key, vocab)):
        raise _Invalid(f"{clash}: the layout's {TOKENS} dims hold {sorted(map(str, token_columns))}"
                       f", the vocab {sorted(map(str, vocab))}; was the vocab edited?")
    columns = list(token_columns.values())
    for row, token in enumerate(vocab):
        hot = [layout.dims[c].value for c in columns if embed[row, c] == 1]
        if len(hot) != 1 or not same_value(hot[0], token):
            raise _Invalid(f"{clash}: vocab token {token!r} (token_embed row {row}) is embedded "
                           f"as {TOKENS}:{', '.join(map(str, hot)) or 'nothing'}; was the vocab "
                           f"edited?")


def _checksum(data: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the canonical JSON of the config, then each array's key, dtype, shape, bytes."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    for key in sorted(arrays):
        array = arrays[key]
        digest.update(json.dumps([key, array.dtype.str, list(array.shape)]).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return CHECKSUM_PREFIX + digest.hexdigest()


# ---------------------------------------------------------------------------- codec


def to_json(value: Any, hint: Any = None) -> Any:
    """A dataclass (or a value of type `hint`) as JSON-ready lists, dicts and scalars."""
    hint = type(value) if hint is None else hint
    if hint is Any:
        return _encode_value(value)
    if dataclasses.is_dataclass(hint):
        hints = _field_hints(hint)
        return {f.name: to_json(getattr(value, f.name), hints[f.name])
                for f in dataclasses.fields(hint)}
    optional = _optional(hint)
    if optional is not None:
        return None if value is None else to_json(value, optional)
    origin = typing.get_origin(hint)
    if hint is tuple or origin is tuple:
        items = _item_hints(hint, len(value))
        if items is None:
            raise SaveError(f"cannot save {value!r}: expected a tuple shaped like {hint}")
        return [to_json(item, item_hint) for item, item_hint in zip(value, items)]
    if origin in (collections.abc.Mapping, dict):
        _, value_hint = typing.get_args(hint)
        if not all(isinstance(key, str) for key in value):
            raise SaveError(f"cannot save {value!r}: JSON object keys must be strings")
        return {key: to_json(item, value_hint) for key, item in value.items()}
    if hint is bool:
        return bool(value)
    if hint is int:
        return operator.index(value)
    if hint is float:
        return float(value)
    if hint is str:
        return str(value)
    raise InternalError(f"no JSON encoding for the type {hint!r} (a field of the info records); "
                        f"extend persistence.to_json")


def from_json(data: Any, hint: Any, path: str = "") -> Any:
    """Inverse of `to_json`: check `data` against `hint`; name the field path of any problem."""
    if hint is Any:
        return _decode_value(data, path)
    if dataclasses.is_dataclass(hint):
        fields = dataclasses.fields(hint)
        names = [f.name for f in fields]
        if not isinstance(data, dict):
            raise _Invalid(f"{path or 'the file'}: expected an object with keys "
                           f"{', '.join(names)}, got {_kind(data)}")
        for field in fields:  # a field with a default was added later: older files lack it
            if field.name not in data and field.default is dataclasses.MISSING \
                    and field.default_factory is dataclasses.MISSING:
                raise _Invalid(f"{_join(path, field.name)}: missing")
        for key in data:
            if key not in names:
                raise _Invalid(f"{_join(path, key)}: unknown key (a {hint.__name__} has "
                               f"{', '.join(names)})")
        hints = _field_hints(hint)
        return hint(**{name: from_json(data[name], hints[name], _join(path, name))
                       for name in names if name in data})
    optional = _optional(hint)
    if optional is not None:
        return None if data is None else from_json(data, optional, path)
    origin = typing.get_origin(hint)
    if hint is tuple or origin is tuple:
        if not isinstance(data, list):
            raise _Invalid(f"{path}: expected a list, got {_kind(data)}")
        items = _item_hints(hint, len(data))
        if items is None:
            raise _Invalid(f"{path}: expected {len(typing.get_args(hint))} items, got {len(data)}")
        return tuple(from_json(item, item_hint, f"{path}[{i}]")
                     for i, (item, item_hint) in enumerate(zip(data, items)))
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(data, dict):
            raise _Invalid(f"{path}: expected an object, got {_kind(data)}")
        _, value_hint = typing.get_args(hint)
        return {key: from_json(item, value_hint, f"{path}[{key!r}]") for key, item in data.items()}
    if hint is bool:
        if not isinstance(data, bool):
            raise _Invalid(f"{path}: expected true or false, got {_kind(data)}")
        return data
    if hint is int:
        if type(data) is not int:
            raise _Invalid(f"{path}: expected a whole number, got {_kind(data)}")
        return data
    if hint is float:
        if type(data) not in (int, float):
            raise _Invalid(f"{path}: expected a number, got {_kind(data)}")
        return float(data)
    if hint is str:
        if not isinstance(data, str):
            raise _Invalid(f"{path}: expected a string, got {_kind(data)}")
        return data
    raise InternalError(f"no JSON decoding for the type {hint!r} (a field of the info records); "
                        f"extend persistence.from_json")


def _optional(hint: Any) -> Any:
    """X for a hint `X | None` (or Optional[X]); None for any other hint."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return None


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _item_hints(hint: Any, n: int) -> list | None:
    """The hint of each of a tuple's n items; None when a fixed-length tuple has another n."""
    args = typing.get_args(hint)
    if not args:
        return [Any] * n  # a bare `tuple` holds values of any kind
    if len(args) == 2 and args[1] is Ellipsis:
        return [args[0]] * n
    return list(args) if len(args) == n else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return f"{str(data).lower()}"
    if isinstance(data, (list, dict)):
        return f"a {'list' if isinstance(data, list) else 'object'} ({len(data)} items)"
    if isinstance(data, str):
        return f"the string {data[:40]!r}"
    return f"the number {data!r}"


def _encode_value(value: Any) -> Any:
    """A token or SOp value as JSON: None, bools, numbers and strings as themselves,
    tuples tagged {"tuple": [...]} so that they come back as tuples."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v) for v in value]}
    if isinstance(value, np.generic):
        return value.item()
    raise SaveError(
        f"cannot save the value {value!r} ({type(value).__name__}): saved models hold None, "
        f"bools, numbers, strings and tuples of them"
    )


def _decode_value(data: Any, path: str) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, dict) and set(data) == {"tuple"} and isinstance(data["tuple"], list):
        return tuple(_decode_value(v, f"{path}[{i}]") for i, v in enumerate(data["tuple"]))
    raise _Invalid(f"{path}: expected a value (null, a bool, number or string, or "
                   f'{{"tuple": [...]}}), got {_kind(data)}')
