"""Where saved things go: the checks made before any work, and the writes that never leave a
half-written file under a real name. One module for every saver (models, compressed models,
exports), so each refuses the same mistakes with the same words.

A save folder may be new, empty, or hold an earlier save of the same kind (replaced); a
file, or a folder of other things, is refused. A single-file save (a torch export) goes in
a folder that exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from rasp_compiler.errors import SaveError


def check_folder(path: str | Path, doing: str, kind: str, files: tuple[str, ...]) -> Path:
    """Refuse a folder destination that cannot take this save: a file, a path through a
    file, or a folder holding other things and none of `files` (the save's own names).
    `doing` starts the message ("save the model to"), `kind` names what a save of this
    kind is ("saved model", "export")."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise SaveError(
            f"cannot {doing} {folder}: it is a file; name a folder (new, empty, or holding "
            f"an earlier {kind}): it is written as {' and '.join(files)}")
    blocking = next((parent for parent in folder.parents
                     if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise SaveError(f"cannot {doing} {folder}: {blocking} is a file, not a folder")
    if folder.is_dir():
        try:
            entries = sorted(os.listdir(folder))
        except OSError as exc:
            raise SaveError(f"cannot {doing} {folder}: {exc}") from exc
        if entries and not set(files) & set(entries):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise SaveError(
                f"cannot {doing} {folder}: the folder holds other files ({shown}) and no "
                f"{kind}; choose a new or empty folder")
    return folder


def check_file(path: str | Path, doing: str, example: str) -> Path:
    """Refuse a file destination that cannot be written: a folder, or a file in a folder
    that does not exist. `example` names a file to suggest inside a folder given by mistake."""
    target = Path(path)
    if target.is_dir():
        raise SaveError(f"cannot {doing} {target}: it is a folder; name a file, e.g. "
                        f"{target / example}")
    if target.parent.exists() and not target.parent.is_dir():
        raise SaveError(f"cannot {doing} {target}: {target.parent} is a file, not a folder")
    if not target.parent.is_dir():
        raise SaveError(f"cannot {doing} {target}: the folder {target.parent} does not exist")
    return target


def write_replacing(target: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` writes beside `target`, then the file is renamed over it: no
    half-written file is ever under its name (a crash leaves the earlier save whole)."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()


def write_bytes_replacing(target: Path, data: bytes) -> None:
    """`write_replacing` for bytes already in memory."""
    write_replacing(target, lambda partial: partial.write_bytes(data))
