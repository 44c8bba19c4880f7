"""Reading params.npz without trusting it: the archive's names, sizes and .npy headers are
held to the shapes model.json declares before any array data is read, and data is read
in pieces into its own buffer with the CRC checked, so a hostile or damaged file costs at
most what model.json declares (itself bounded by max_parameters), never what the file
claims. numpy's own loader would allocate whatever a header asks for."""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from rasp_compiler.errors import (
    SavedFileProblem,
    describe_bytes,
)

# What a damaged npz can raise from inside zipfile / zlib / numpy's npy reader
# (RuntimeError: an encrypted entry; RecursionError, MemoryError: a pathological header).
ARCHIVE_ERRORS = (OSError, EOFError, ValueError, NotImplementedError, KeyError, RuntimeError,
                  RecursionError, MemoryError, SyntaxError, zipfile.BadZipFile, zlib.error)
# An .npy header numpy writes for a float32 matrix is 128 bytes; numpy's own reader refuses
# headers past 10,000 characters. Anything longer is not a saved model's.
NPY_HEADER_LIMIT = 10_000
NPY_MAX_PREFIX = 12  # before the header: magic (6), version (2), header length (2 or 4)
PARAM_DTYPE = np.dtype("<f4")  # every saved parameter: little-endian float32
READ_CHUNK = 1 << 20  # array data is read in pieces of this many bytes into its own buffer


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
        raise SavedFileProblem(f"{name} is not an npz (zip) archive; it is truncated or damaged")
    try:
        with zipfile.ZipFile(file) as archive:
            entries = _archive_entries(archive, name, expected, declared_by)
            headers = {key: _entry_header(archive, entries[key], name, key, want, why,
                                          declared_by)
                       for key, (want, why) in expected.items()}
            return {key: _entry_data(archive, entries[key], name, key, expected[key][0],
                                     *headers[key])
                    for key in expected}
    except SavedFileProblem:
        raise
    except ARCHIVE_ERRORS as exc:
        raise SavedFileProblem(f"{name} cannot be read ({type(exc).__name__}: {exc}); it is "
                       f"truncated or damaged") from exc


def _archive_entries(archive: zipfile.ZipFile, name: str, expected: dict,
                     declared_by: str) -> dict[str, zipfile.ZipInfo]:
    """The zip entry of each expected array; any other entry, a repeated or a missing one
    is refused."""
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise SavedFileProblem(f"{name} holds {info.filename!r}, which is not an array (an npz "
                           f"archive holds only NAME.npy entries)")
        key = info.filename[: -len(".npy")]
        if key in entries:
            raise SavedFileProblem(f"{name} holds two entries named {info.filename!r}")
        entries[key] = info
    missing = sorted(set(expected) - set(entries))
    if missing:
        raise SavedFileProblem(f"{name}: missing the parameters {', '.join(missing)}")
    extra = sorted(set(entries) - set(expected))
    if extra:
        shown = ", ".join(extra[:5]) + (f", ... ({len(extra)} in all)" if len(extra) > 5 else "")
        raise SavedFileProblem(f"{name}: unexpected parameters {shown} ({declared_by} declares "
                       f"{len(expected)} arrays)")
    return entries


def _entry_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, key: str,
                  want: tuple[int, ...], why: str, declared_by: str) -> tuple[int, bool]:
    """Check one entry's sizes and .npy header against the shape `want`; return the
    header's length in bytes and whether the data is in Fortran order."""
    need = PARAM_DTYPE.itemsize * math.prod(want)
    where = f"{name}: {key}"
    if info.flag_bits & 0x1:
        raise SavedFileProblem(f"{where} is encrypted; numpy never writes encrypted entries")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise SavedFileProblem(f"{where} is compressed with zip method {info.compress_type}; numpy "
                       f"writes stored or deflated entries only")
    most = need + NPY_MAX_PREFIX + NPY_HEADER_LIMIT
    if info.file_size > most:
        raise SavedFileProblem(f"{where} holds {describe_bytes(info.file_size)} once uncompressed, "
                       f"more than its expected shape {list(want)} needs "
                       f"({describe_bytes(need)} and a header)")
    # Deflate adds at most 5 bytes per 16 kB block; a larger entry hides something else.
    if info.compress_size > info.file_size + info.file_size // 1000 + 1024:
        raise SavedFileProblem(f"{where} takes {describe_bytes(info.compress_size)} compressed, more "
                       f"than the {describe_bytes(info.file_size)} it holds")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise SavedFileProblem(f"{where} has .npy format version {version[0]}.{version[1]}; numpy "
                           f"writes float32 arrays as version 1.0 (or 2.0)")
        length_bytes = stream.read(2 if version == (1, 0) else 4)
        length = int.from_bytes(length_bytes, "little")
        if length > NPY_HEADER_LIMIT:
            raise SavedFileProblem(f"{where} has a {describe_bytes(length)} .npy header; numpy writes "
                           f"about 128 bytes (at most {NPY_HEADER_LIMIT:,})")
        header = io.BytesIO(length_bytes + stream.read(length))
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = read_header(header, max_header_size=NPY_HEADER_LIMIT)
    if shape != want:
        raise SavedFileProblem(f"{name}: {key} has shape {list(shape)}, expected {list(want)} = "
                       f"{why} from {declared_by}")
    if dtype != PARAM_DTYPE:
        raise SavedFileProblem(f"{name}: {key} has dtype {dtype}, expected float32")
    header_bytes = 8 + len(length_bytes) + length  # magic and version, length, header
    if info.file_size != header_bytes + need:
        raise SavedFileProblem(f"{where} holds {info.file_size:,} bytes, but its header and shape "
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
                raise SavedFileProblem(f"{name}: {key} ends after {done:,} of its {len(buffer):,} "
                               f"bytes; it is truncated or damaged")
            view[done: done + len(piece)] = piece
            done += len(piece)
        if stream.read(1):  # also reaches the end of the entry, where zipfile checks its CRC
            raise SavedFileProblem(f"{name}: {key} holds more data than its shape")
    return np.frombuffer(buffer, dtype=PARAM_DTYPE).reshape(
        shape, order="F" if fortran_order else "C")
