"""The `rasp-compiler` command line.

Every command takes a program as a bundled name (`rasp-compiler list`) or as
`path/to/file.py:factory`. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from rasp_compiler.errors import InvalidInputError, RaspCompilerError
from rasp_compiler.library import ProgramSpec, list_programs, load_program

EXIT_USER_ERROR = 2


def parse_tokens(spec: ProgramSpec, words: Sequence[str], vocab: Sequence | None = None) -> list:
    """Command-line words to vocab tokens: each word must be the str() of one token."""
    vocab = tuple(vocab if vocab is not None else spec.vocab)
    by_text = {str(token): token for token in vocab}
    tokens = []
    for word in words:
        if word not in by_text:
            raise InvalidInputError(
                f"token {word!r} is not in the vocab of {spec.name}: "
                f"{', '.join(sorted(by_text))}"
            )
        tokens.append(by_text[word])
    return tokens


def _cmd_list(args: argparse.Namespace) -> int:
    specs = list_programs()
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        print(f"{spec.name:<{width}}  {spec.description}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from rasp_compiler.evaluator import evaluate
    from rasp_compiler.graph import build_graph

    spec = load_program(args.program)
    program = spec.make()
    tokens = parse_tokens(spec, args.tokens)
    print(f"{spec.name}: {spec.description}")
    print(f"input:  {tokens}")
    print(f"output: {evaluate(program, tokens)}")
    if not args.quiet:
        print()
        print(build_graph(program).summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rasp-compiler",
        description="Compile RASP programs to exact transformers and inspect them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list the bundled programs")
    listing.set_defaults(run=_cmd_list)

    evaluating = commands.add_parser(
        "eval", help="evaluate a program with the reference evaluator and show its graph"
    )
    evaluating.add_argument("program", help="a bundled program name or path.py:factory")
    evaluating.add_argument("tokens", nargs="+", help="input tokens, as written in the vocab")
    evaluating.add_argument("-q", "--quiet", action="store_true", help="omit the graph summary")
    evaluating.set_defaults(run=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except RaspCompilerError as exc:
        print(f"rasp-compiler: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
