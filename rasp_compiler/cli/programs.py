"""How a command's PROGRAM argument becomes a model: a bundled name, `path.py:factory`,
or a folder saved by `compile -o` / `compress -o`.

Why a module of its own: every command resolves its program the same way and must
refuse the same mistakes with the same one-line messages (a folder given to a command
that needs the program, a program file without VOCAB or MAX_SEQ_LEN, a Map that
recurses without end), and `rasp-compiler circuit` and `explore` also take saved
models; one place keeps those rules and messages in step.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from rasp_compiler.errors import InvalidInputError, InvalidProgramError, LoadError
from rasp_compiler.program_files import load_program


@contextlib.contextmanager
def no_runaway_recursion(name: str):
    """User functions may recurse without end, or end the process: say so in one line
    instead of a traceback or a silent exit."""
    from rasp_compiler.program_files import describe_exit

    try:
        yield
    except RecursionError:
        raise InvalidProgramError(
            f"{name}: the program recursed without end (RecursionError): one of its functions "
            f"calls itself with no base case, or it nests deeper than Python's recursion "
            f"limit ({sys.getrecursionlimit()})"
        ) from None
    except SystemExit as exc:
        raise InvalidProgramError(
            f"{name}: one of the program's functions {describe_exit(exc)} while it was "
            f"evaluated; a Map or SequenceMap function must return a value"
        ) from None


def saved_model_folder(reference: str) -> Path | None:
    """The folder if `reference` names one holding a saved model (or meant to)."""
    from rasp_compiler.model.persistence import MODEL_CONFIG_FILE, PARAMS_FILE
    from rasp_compiler.superposition.compressed_files import COMPRESSION_CONFIG_FILE

    folder = Path(reference)
    if not folder.is_dir():
        return None
    if any((folder / name).exists()
           for name in (MODEL_CONFIG_FILE, PARAMS_FILE, COMPRESSION_CONFIG_FILE)):
        return folder
    from rasp_compiler.program_files import program_names

    return None if reference in program_names() else folder


def compile_spec(args: argparse.Namespace):
    import warnings

    from rasp_compiler.compiler.pipeline import compile_program

    try:
        spec = load_program(args.program)
    except LoadError:
        if saved_model_folder(args.program) is None:
            raise
        raise InvalidInputError(
            f"{args.program} is a folder, not a program: `rasp-compiler run {args.program} "
            f"TOKENS...` runs a saved model and `rasp-compiler explore {args.program}` explores "
            f"it; the other commands need the program itself"
        ) from None
    vocab = args.vocab if args.vocab is not None else spec.vocab
    max_seq_len = args.max_seq_len if args.max_seq_len is not None else spec.max_seq_len
    if not vocab or not max_seq_len:
        missing = [(name, what, option) for name, what, option, value in (
            ("VOCAB", "its tokens", "--vocab a,b,c", vocab),
            ("MAX_SEQ_LEN", "the longest input", "--max-seq-len 5", max_seq_len)) if not value]
        raise InvalidInputError(
            f"{spec.path} defines no {' and no '.join(f'{n} ({w})' for n, w, _ in missing)}: "
            f"add {' and '.join(n for n, _, _ in missing)} to the file (the README's 'Your own "
            f"programs' and docs/examples/my_programs.py show a program file) or pass "
            f"{' and '.join(o for _, _, o in missing)}"
        )
    program = spec.make(max_seq_len)
    with warnings.catch_warnings(record=True) as caught, no_runaway_recursion(spec.name):
        warnings.simplefilter("always")
        options = dict(spec.options)
        if args.causal:
            options["causal"] = True
        model = compile_program(program, vocab, max_seq_len, **options)
    model.source = spec.source  # saved with the model: `explore saved/` finds the program
    for warning in caught:
        text = str(warning.message)
        if args.command != "inspect":  # inspect, the detailed look, says it in full
            text = short_warning(text, model.info.aggregate_checks, args.program)
        print(f"warning: {text}", file=sys.stderr)
    return spec, model


def short_warning(text: str, checks, program: str) -> str:
    """An unproven Aggregate's warning in two lines' worth: its gist, not every proof
    tried (dyck2's was 700 characters on every `verify`); `inspect` prints it whole."""
    import re

    for label, status, reason in checks:
        if status == "unproven" and f": {reason}." in text:
            gist = re.split(r", and |: ", reason, maxsplit=1)[0]
            return (text.replace(f": {reason}.", f" ({gist}).")
                    + f"; `rasp-compiler inspect {program}` says why in full")
    return text
