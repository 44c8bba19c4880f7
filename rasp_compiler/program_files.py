"""Finding and loading RASP program files: the bundled `programs/` folder or any `file.py:factory`.

A program file is a Python module with a docstring (its first line is the
one-line description), `VOCAB`, `MAX_SEQ_LEN`, `EXAMPLES` (pairs of input and
expected output), optionally `COMPILE_OPTIONS` (keyword options of
`compile_program`) and a factory `program()` returning the output SOp.

Loading checks each of these (a VOCAB that is not a collection, a MAX_SEQ_LEN that
is not a positive int, a malformed example, an unknown option) and calling the
factory turns any failure in it into one LoadError naming the file and factory; so
does a file or factory that tries to end the process (SystemExit).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from rasp_compiler.errors import LoadError
from rasp_compiler.lang import rasp
from rasp_compiler.model.records import ProgramSource  # noqa: F401 (saved with the model)

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
    reference: str = ""  # what load_program takes to load it again ("" when made by hand)

    @property
    def source(self) -> ProgramSource:
        """What a model compiled from this program keeps of it (saved with the model)."""
        return ProgramSource(self.name, self.reference or self.name)

    def compile(self, vocab=None, max_seq_len: int | None = None, **options):
        """compile_program on this program with its VOCAB, MAX_SEQ_LEN and COMPILE_OPTIONS
        (each overridable); the model keeps `source`, so a saved copy can find the program
        again (`rasp-compiler explore saved/` then shows the ideal patterns and the
        evaluator's values)."""
        from rasp_compiler.compiler.pipeline import compile_program

        max_seq_len = max_seq_len or self.max_seq_len
        model = compile_program(self.make(max_seq_len), self.vocab if vocab is None else vocab,
                                max_seq_len, **{**self.options, **options})
        model.source = self.source
        return model

    def make(self, max_seq_len: int | None = None) -> rasp.SOp:
        """A fresh copy of the program's expression DAG.

        Factories that depend on the length (sorting breaks ties with index /
        max_seq_len) take a `max_seq_len` argument; it defaults to MAX_SEQ_LEN.
        Whatever goes wrong inside the factory is user code failing: it comes back
        as one LoadError naming the file, the factory and the exception.
        """
        name = getattr(self.factory, "__name__", repr(self.factory))
        try:
            signature = inspect.signature(self.factory)
        except (TypeError, ValueError):  # a builtin or C callable: no signature to check
            signature = None
        kwargs = {}
        if signature is not None and "max_seq_len" in signature.parameters:
            kwargs["max_seq_len"] = max_seq_len or self.max_seq_len
        if signature is not None:
            try:
                signature.bind(**kwargs)
            except TypeError:
                raise LoadError(
                    f"{self.path}: the factory {name}{signature} needs arguments that are "
                    f"never given; it is called with no arguments, or with max_seq_len= "
                    f"if it has that parameter: write def {name}() or def {name}(max_seq_len)"
                ) from None
        try:
            program = self.factory(**kwargs)
        except RecursionError:
            raise LoadError(
                f"{self.path}: the factory {name}() recursed without end (RecursionError); "
                f"check that its recursive calls reach a base case"
            ) from None
        except SystemExit as exc:  # `raise SystemExit("bye")` printed bye and exited 1
            raise LoadError(
                f"{self.path}: the factory {name}() {describe_exit(exc)}; a factory must "
                f"return the program's output SOp, not end the process"
            ) from None
        except Exception as exc:  # user code: say where it broke, keep the cause
            raise LoadError(
                f"{self.path}: the factory {name}() raised {type(exc).__name__}: {exc}"
            ) from exc
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
        bundled = False
    else:
        name = reference
        bundled = True
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
    vocab = _vocab(path, module)
    return ProgramSpec(
        name=name,
        description=doc.splitlines()[0] if doc else name,
        doc=doc,
        vocab=vocab,
        max_seq_len=_max_seq_len(path, module),
        examples=_examples(path, module, vocab),
        factory=factory,
        path=path,
        options=_compile_options(path, module),
        reference=name if bundled else f"{path.resolve()}:{factory_name}",
    )


def _vocab(path: Path, module: ModuleType) -> tuple:
    """VOCAB: any collection of hashable tokens (a tuple, list, set or range); may be absent."""
    vocab = getattr(module, "VOCAB", ())
    if isinstance(vocab, (str, bytes, Mapping)) or not isinstance(vocab, Iterable):
        raise LoadError(
            f"{path}: VOCAB must be a collection of tokens such as (\"a\", \"b\") or "
            f"range(10), got {type(vocab).__name__} {vocab!r}"
        )
    vocab = tuple(vocab)
    for token in vocab:
        try:
            hash(token)
        except TypeError:
            raise LoadError(f"{path}: VOCAB token {token!r} is not hashable; write lists "
                            f"inside it as tuples") from None
        if vocab.count(token) > 1:
            raise LoadError(f"{path}: VOCAB lists the token {token!r} twice")
    return vocab


def _max_seq_len(path: Path, module: ModuleType) -> int:
    """MAX_SEQ_LEN: a positive int; 0 when absent (the caller must then give one)."""
    value = getattr(module, "MAX_SEQ_LEN", 0)
    if "MAX_SEQ_LEN" in vars(module) and (type(value) is not int or value < 1):
        raise LoadError(f"{path}: MAX_SEQ_LEN must be a positive int, got "
                        f"{type(value).__name__} {value!r}")
    return value


def _examples(path: Path, module: ModuleType, vocab: tuple) -> tuple:
    """EXAMPLES: (input tokens, expected output) pairs of equal, non-zero length."""
    examples = getattr(module, "EXAMPLES", ())
    if isinstance(examples, (str, bytes, Mapping)) or not isinstance(examples, Iterable):
        raise LoadError(f"{path}: EXAMPLES must be a list of (input, expected output) pairs, "
                        f"got {type(examples).__name__} {examples!r}")
    examples = tuple(examples)
    for i, example in enumerate(examples):
        if (not isinstance(example, (tuple, list)) or len(example) != 2
                or not all(isinstance(part, (tuple, list)) for part in example)):
            raise LoadError(f"{path}: EXAMPLES[{i}] must be a pair (input tokens, expected "
                            f"output), both lists, got {example!r}")
        tokens, expected = example
        if not tokens or len(tokens) != len(expected):
            raise LoadError(f"{path}: EXAMPLES[{i}] needs a non-empty input and one expected "
                            f"value per token, got {len(tokens)} tokens and {len(expected)} "
                            f"values")
        unknown = [token for token in tokens if vocab and token not in vocab]
        if unknown:
            raise LoadError(f"{path}: EXAMPLES[{i}] uses {unknown[0]!r}, which is not in VOCAB")
    return examples


def _compile_options(path: Path, module: ModuleType) -> dict:
    """COMPILE_OPTIONS: keyword options of compile_program, checked by name here."""
    options = getattr(module, "COMPILE_OPTIONS", {})
    if not isinstance(options, Mapping):
        raise LoadError(f"{path}: COMPILE_OPTIONS must be a dict of compile_program options, "
                        f"got {type(options).__name__} {options!r}")
    if options:
        accepted = compile_option_names()
        unknown = [key for key in options if key not in accepted]
        if unknown:
            raise LoadError(f"{path}: COMPILE_OPTIONS has unknown option {unknown[0]!r}; "
                            f"compile_program accepts {', '.join(accepted)}")
    return dict(options)


def compile_option_names() -> list[str]:
    """The keyword-only options of compile_program, read from its signature."""
    from rasp_compiler.compiler.pipeline import compile_program

    return [name for name, parameter in inspect.signature(compile_program).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY]


def _import_file(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # `sys.exit(7)` at import exited 7 with no message
        sys.modules.pop(module_name, None)
        raise LoadError(f"importing {path} failed: it {describe_exit(exc)} at import; a "
                        f"program file defines VOCAB, MAX_SEQ_LEN and its factory, and must "
                        f"not end the process (guard a script part with "
                        f"`if __name__ == \"__main__\":`)") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise LoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def describe_exit(exc: SystemExit) -> str:
    """What user code did when it raised SystemExit: 'called sys.exit(7)', 'raised
    SystemExit('bye')', 'called sys.exit()'."""
    if not exc.args:
        return "called sys.exit() (SystemExit)"
    return f"called sys.exit({exc.args[0]!r}) (SystemExit)" if len(exc.args) == 1 else \
        f"raised SystemExit{exc.args!r}"


def reload_program(model):
    """A loaded model (no program) with its program found again from `model.source`.

    Returns (model, note). The program is loaded again (a bundled program, or the program
    file the reference names: its code runs, as for any `rasp-compiler` command on it) and
    compiled for the model's vocab, max_seq_len and mask; only when that gives exactly the
    saved weights, layout and readouts is the recompiled model (program, evaluator and all)
    returned, with an empty note. Otherwise the loaded model comes back unchanged, and the
    note says why (no source saved, the file is gone or fails, or the program changed).
    A model that has its program already comes back as it is.
    """
    import warnings

    import numpy as np

    from rasp_compiler.compiler.pipeline import compile_program
    from rasp_compiler.errors import CompileWarning, RaspCompilerError

    if model.compilation is not None:
        return model, ""
    source = model.source
    if source is None:
        return model, ("it was saved without the name of its program (by a version of "
                       "rasp_compiler before format 4, or compiled from Python without one)")
    try:
        spec = load_program(source.reference)
        options = {**spec.options, "causal": model.causal}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CompileWarning)  # shown when it was compiled
            again = compile_program(spec.make(model.max_seq_len), model.vocab,
                                    model.max_seq_len, **options)
    except RaspCompilerError as exc:
        return model, f"its program {source} could not be loaded and compiled again: {exc}"
    same = (again.layout.dims == model.layout.dims
            and dict(again.readouts) == dict(model.readouts)
            and again.params.keys() == model.params.keys()
            and all(again.params[m].keys() == model.params[m].keys()
                    and all(np.array_equal(np.asarray(again.params[m][k]),
                                           np.asarray(model.params[m][k]))
                            for k in model.params[m]) for m in model.params))
    if not same:
        return model, (f"its program {source} no longer compiles to these weights (it changed "
                       f"since the model was saved)")
    again.source = source
    return again, ""
