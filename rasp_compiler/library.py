"""Finding and loading RASP programs: the bundled `programs/` folder or any `file.py:factory`.

A program file is a Python module with a docstring (its first line is the
one-line description), `VOCAB`, `MAX_SEQ_LEN`, `EXAMPLES` (pairs of input and
expected output) and a factory `program()` returning the output SOp.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from rasp_compiler import rasp
from rasp_compiler.errors import LoadError

DEFAULT_FACTORY = "program"


@dataclass(frozen=True)
class ProgramSpec:
    """One program with the settings it is meant to be compiled and checked with."""

    name: str
    description: str
    doc: str
    vocab: tuple
    max_seq_len: int
    examples: tuple
    factory: Callable[[], rasp.SOp]
    path: Path
    options: dict

    def make(self, max_seq_len: int | None = None) -> rasp.SOp:
        """A fresh copy of the program's expression DAG.

        Factories that depend on the length (sorting breaks ties with index /
        max_seq_len) take a `max_seq_len` argument; it defaults to MAX_SEQ_LEN.
        """
        if "max_seq_len" in inspect.signature(self.factory).parameters:
            program = self.factory(max_seq_len=max_seq_len or self.max_seq_len)
        else:
            program = self.factory()
        if not isinstance(program, rasp.SOp):
            raise LoadError(
                f"{self.path}: the factory returned {type(program).__name__} {program!r}, "
                f"not an SOp; it must return the program's output SOp"
            )
        return program

    def __repr__(self) -> str:
        return f"ProgramSpec({self.name!r}: {self.description})"


def programs_dir() -> Path:
    """The bundled programs: installed beside the package, or at the repository root."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "programs", package.parent / "programs"):
        if (candidate / "__init__.py").is_file():
            return candidate
    raise LoadError(
        f"cannot find the bundled programs folder next to {package}; reinstall rasp_compiler"
    )


def program_names() -> list[str]:
    return sorted(
        path.stem for path in programs_dir().glob("*.py") if not path.name.startswith("_")
    )


def list_programs() -> list[ProgramSpec]:
    return [load_program(name) for name in program_names()]


def load_program(reference: str) -> ProgramSpec:
    """A bundled program by name (`"sort"`) or a file and factory (`"my.py:make_sort"`)."""
    if reference.endswith(".py") or ":" in reference or "/" in reference:
        path_text, _, factory_name = reference.partition(":")
        path = Path(path_text)
        factory_name = factory_name or DEFAULT_FACTORY
        name = path.stem
    else:
        name = reference
        path = programs_dir() / f"{name}.py"
        factory_name = DEFAULT_FACTORY
        if not path.is_file():
            raise LoadError(
                f"no bundled program named {name!r}; `rasp-compiler list` shows them: "
                f"{', '.join(program_names())}"
            )
    if not path.is_file():
        raise LoadError(f"program file {str(path)!r} does not exist")
    module = _import_file(path, f"rasp_compiler_programs.{name}")
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise LoadError(
            f"{path}: no function {factory_name!r}; write `{path}:<factory>` naming the "
            f"function that returns the program"
        )
    doc = (module.__doc__ or "").strip()
    return ProgramSpec(
        name=name,
        description=doc.splitlines()[0] if doc else name,
        doc=doc,
        vocab=tuple(getattr(module, "VOCAB", ())),
        max_seq_len=int(getattr(module, "MAX_SEQ_LEN", 0)),
        examples=tuple(getattr(module, "EXAMPLES", ())),
        factory=factory,
        path=path,
        options=dict(getattr(module, "COMPILE_OPTIONS", {})),
    )


def _import_file(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise LoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module
