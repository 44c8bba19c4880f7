"""Saved models: the on-disk format, saving, and the checks made on load (the JSON codec is
json_codec.py, the guarded params.npz reader npz_reader.py).

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
docs/saved-models.md, for what that means and what to do about it.

"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from rasp_compiler.errors import (
    LoadError,
    SavedFileProblem,
    SaveError,
    describe_bytes,
)
from rasp_compiler.lang.identity import ValueMap, identity_key, same_value
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.constants import DEFAULT_MAX_PARAMETERS
from rasp_compiler.model.forward import ModelShape
from rasp_compiler.model.json_codec import from_json, kind_of, to_json
from rasp_compiler.model.npz_reader import PARAM_DTYPE, read_arrays
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
MODEL_CONFIG_FILE = "model.json"
PARAMS_FILE = "params.npz"
CHECKSUM_PREFIX = "sha256:"
TOKENS = "tokens"  # the layout owner of the input tokens' one-hot dims
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
        write_bytes_replacing(folder / MODEL_CONFIG_FILE, text.encode("utf-8"))
    except OSError as exc:
        raise SaveError(f"cannot save the model to {folder}: {exc}") from exc
    return folder


def check_save_destination(folder: Path) -> None:
    """Refuse to save onto a file or into a folder holding anything but an earlier save."""
    check_folder(folder, "save the model to", "saved model", (MODEL_CONFIG_FILE, PARAMS_FILE))


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
    except SavedFileProblem as problem:
        raise LoadError(f"cannot load the model saved in {folder}: {problem}") from (
            problem.__cause__)


def _load(folder: Path, model_class: type, max_parameters: int) -> CompiledModel:
    if not folder.is_dir():
        raise SavedFileProblem("it is a file, not a saved model's folder" if folder.exists()
                       else "no such folder")
    missing = [name for name in (MODEL_CONFIG_FILE, PARAMS_FILE) if not (folder / name).is_file()]
    if missing:
        raise SavedFileProblem(
            f"{' and '.join(missing)} missing; a saved model is a folder holding {MODEL_CONFIG_FILE} "
            f"and {PARAMS_FILE}, written by CompiledModel.save or `rasp-compiler compile -o`"
        )
    data = _read_config(folder / MODEL_CONFIG_FILE, max_parameters)
    _check_format(data)
    if data["format"] == 3 and "source" in data:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: source: unknown key in format 3 (format 4 added it)")
    checksum = data.pop("checksum", None)
    if not isinstance(checksum, str) or not checksum.startswith(CHECKSUM_PREFIX):
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: checksum: missing or not a '{CHECKSUM_PREFIX}...' string")
    try:
        config = from_json(data, SavedConfig)
    except SavedFileProblem as problem:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: {problem}") from None
    layout = _layout(config)
    _check_sizes(config, layout)
    # Every array's name, shape and dtype follow from model.json: params.npz is held to
    # them entry by entry, from its zip directory and .npy headers, before any data is read.
    expected = expected_arrays(config.shape)
    check_declared_size(expected, max_parameters, f"the shape in {MODEL_CONFIG_FILE}",
                        "CompiledModel.load(path, max_parameters=N)")
    arrays = read_arrays(folder / PARAMS_FILE, expected, MODEL_CONFIG_FILE)
    _check_finite(arrays)
    _check_readouts(config, layout)
    _check_info(config)
    _check_source(config)
    _check_vocab_embedding(config, layout, arrays["token_embed::embeddings"])
    if _checksum(data, arrays) != checksum:
        raise SavedFileProblem(
            f"{MODEL_CONFIG_FILE} or {PARAMS_FILE} was edited or corrupted (checksum mismatch); "
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
                raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: the key {key!r} appears twice in one object")
        return dict(pairs)

    try:
        size, limit = file.stat().st_size, config_byte_limit(max_parameters)
        if size > limit:
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE} is {describe_bytes(size)}, more than a saved model "
                           f"of at most {max_parameters:,} parameters writes ("
                           f"{describe_bytes(limit)}); it is not a saved model's")
        data = json.loads(file.read_text(encoding="utf-8"), object_pairs_hook=no_repeats)
    except SavedFileProblem:  # a LoadError, so a ValueError: not "invalid JSON"
        raise
    except OSError as exc:
        raise SavedFileProblem(f"cannot read {MODEL_CONFIG_FILE}: {exc}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE} is not valid JSON ({exc}); it is truncated or damaged") \
            from exc
    except RecursionError:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE} nests too deeply to be a saved model") from None
    if not isinstance(data, dict):
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE} holds {kind_of(data)}, not a JSON object")
    return data


def _check_format(data: dict) -> None:
    version = data.get("format")
    if version in READABLE_FORMATS and type(version) is int:
        return
    if "format" not in data:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: format: missing; this is not a model saved by "
                       f"rasp_compiler")
    if type(version) is not int or version < 1:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: format: {version!r} is not a format version")
    if version < min(READABLE_FORMATS):
        raise SavedFileProblem(f"saved by an older rasp_compiler (format {version}); recompile and "
                       f"save again")
    raise SavedFileProblem(f"saved by a newer rasp_compiler (format {version}; this one reads format "
                   f"{FORMAT_VERSION}); upgrade rasp_compiler")


def check_declared_size(expected: dict[str, tuple[tuple[int, ...], str]],
                        max_parameters: int, declared_by: str, how: str) -> None:
    """Refuse, before opening the archive, arrays whose declared sizes add up past
    `max_parameters` (`declared_by` says where the shapes come from, `how` how to load
    a model that large)."""
    count = sum(math.prod(shape) for shape, _ in expected.values())
    if count > max_parameters:
        raise SavedFileProblem(
            f"{declared_by} declares {count:,} parameters ({describe_bytes(4 * count)} of "
            f"float32), more than max_parameters={max_parameters:,} allows; a model compiled "
            f"with a larger max_parameters loads with {how}"
        )


# ---------------------------------------------------------------------------- checks


def _layout(config: SavedConfig) -> ResidualLayout:
    dims: list[Dim] = []
    first: dict[Dim, int] = {}
    for i, (sop, value, numerical) in enumerate(config.layout):
        if numerical and value is not None:
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: layout[{i}]: the numerical dim {sop!r} holds no "
                           f"value, got {value!r}")
        if not numerical and value is None:
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: layout[{i}]: the categorical dim of {sop!r} needs "
                           f"a value, got null")
        dim = Dim(sop) if numerical else Dim(sop, value)
        if dim in first:
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: layout[{i}]: the dim {dim} also is layout[{first[dim]}]")
        first[dim] = i
        dims.append(dim)
    for special in (ONE, BOS):
        if special not in first:
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: layout: no {special.sop!r} dim (every model has one)")
    return ResidualLayout(tuple(dims))


def _check_sizes(config: SavedConfig, layout: ResidualLayout) -> None:
    """The vocab, the special tokens and the lengths against the declared shape."""
    shape, vocab = config.shape, config.vocab
    if config.max_seq_len < 1:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: max_seq_len: must be at least 1, got {config.max_seq_len}")
    if not vocab:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: vocab: empty")
    keys = [identity_key(token) for token in vocab]  # 1 and True are two tokens
    if len(set(keys)) != len(keys):
        repeated = next(token for token, key in zip(vocab, keys) if keys.count(key) > 1)
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: vocab: the token {repeated!r} appears twice")
    for name, token in (("bos", config.bos), ("pad", config.pad)):
        if token in vocab:
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: {name}: the token {token!r} is also in the vocab")
    if config.bos == config.pad:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: bos and pad are the same token {config.bos!r}")
    expected = {
        "vocab_size": (len(vocab) + 2, f"{len(vocab)} vocab tokens + BOS + PAD"),
        "max_positions": (config.max_seq_len + 1, f"max_seq_len {config.max_seq_len} + BOS"),
        "d_model": (layout.width, f"the layout has {layout.width} dims"),
    }
    for name, (value, why) in expected.items():
        if getattr(shape, name) != value:
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: shape.{name} is {getattr(shape, name)}, expected "
                           f"{value} ({why})")
    for l, layer in enumerate(shape.layers):
        for name, value in dataclasses.asdict(layer).items():
            if value < 0:
                raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: shape.layers[{l}].{name} is negative ({value})")


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
            raise SavedFileProblem(f"{PARAMS_FILE}: {key} holds {len(bad)} non-finite values (NaN or "
                           f"infinity), the first at {list(map(int, bad[0]))}")


def _check_readouts(config: SavedConfig, layout: ResidualLayout) -> None:
    seen: set[str] = set()
    for i, readout in enumerate(config.readouts):
        where = f"{MODEL_CONFIG_FILE}: readouts[{i}] ({readout.label!r})"
        if readout.label in seen:
            raise SavedFileProblem(f"{where}: a second readout of the same SOp")
        seen.add(readout.label)
        for index in readout.indices:
            if not 0 <= index < layout.width:
                raise SavedFileProblem(f"{where}: index {index} is outside the residual (dims 0.."
                               f"{layout.width - 1})")
        if readout.numerical:
            if readout.values or len(readout.coefficients) != len(readout.indices):
                raise SavedFileProblem(f"{where}: a numerical readout needs one coefficient per index "
                               f"and no values")
            if not all(math.isfinite(c) for c in readout.coefficients):
                raise SavedFileProblem(f"{where}: a coefficient is not finite")
            continue
        if readout.coefficients or len(readout.values) != len(readout.indices):
            raise SavedFileProblem(f"{where}: a categorical readout needs one value per index and no "
                           f"coefficients")
        for index, value in zip(readout.indices, readout.values):
            if layout.dims[index] != Dim(readout.label, value):
                raise SavedFileProblem(f"{where}: index {index} is the dim {layout.dims[index]}, not "
                               f"{readout.label}:{value}")


def _check_info(config: SavedConfig) -> None:
    info, shape = config.info, config.shape
    labels = [readout.label for readout in config.readouts]
    if info.output not in labels:
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: info.output {info.output!r} has no readout (readable: "
                       f"{', '.join(labels)})")
    if len(info.layers) != len(shape.layers):
        raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: info.layers describes {len(info.layers)} layers, "
                       f"shape.layers {len(shape.layers)}")
    for l, (layer, layer_shape) in enumerate(zip(info.layers, shape.layers)):
        if layer.index != l or any(head.layer != l for head in layer.heads):
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: info.layers[{l}] is numbered {layer.index} (heads "
                           f"{[head.layer for head in layer.heads]}), not {l}")
        if len(layer.heads) != layer_shape.heads or layer.mlp_hidden != layer_shape.mlp_hidden:
            raise SavedFileProblem(
                f"{MODEL_CONFIG_FILE}: info.layers[{l}] has {len(layer.heads)} heads and MLP width "
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
            raise SavedFileProblem(f"{MODEL_CONFIG_FILE}: source.{name}: {text[:40]!r} is not a program's "
                           f"{name} (1 to {MAX_SOURCE_CHARS} printable characters)")


def _check_vocab_embedding(config: SavedConfig, layout: ResidualLayout,
                           embed: np.ndarray) -> None:
    """Token row i must embed vocab[i]: a reordered or renamed vocab is caught here."""
    vocab, index = config.vocab, layout.index
    clash = f"{MODEL_CONFIG_FILE} and {PARAMS_FILE} disagree"
    bos_column = embed[:, index[BOS]]
    if bos_column[len(vocab)] != 1 or np.any(np.delete(bos_column, len(vocab)) != 0):
        raise SavedFileProblem(f"{clash}: token_embed row {len(vocab)} (after the {len(vocab)} vocab "
                       f"tokens) must be BOS; was the vocab edited?")
    token_columns = ValueMap((dim.value, i) for i, dim in enumerate(layout.dims)
                             if dim.sop == TOKENS)  # 1 and True: two tokens, two columns
    if not token_columns:
        return  # the program never reads the raw tokens: only the checksum guards the vocab
    if set(map(identity_key, token_columns)) != set(map(identity_key, vocab)):
        raise SavedFileProblem(f"{clash}: the layout's {TOKENS} dims hold {sorted(map(str, token_columns))}"
                       f", the vocab {sorted(map(str, vocab))}; was the vocab edited?")
    columns = list(token_columns.values())
    for row, token in enumerate(vocab):
        hot = [layout.dims[c].value for c in columns if embed[row, c] == 1]
        if len(hot) != 1 or not same_value(hot[0], token):
            raise SavedFileProblem(f"{clash}: vocab token {token!r} (token_embed row {row}) is embedded "
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


