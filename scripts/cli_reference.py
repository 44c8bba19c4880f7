"""Write docs/cli.md: every `rasp-compiler` command with its arguments, from the parser.

    python scripts/cli_reference.py --write docs/cli.md

The page is built from the parser itself (each command's help, then each argument's
names, value and help), so it cannot drift from the code: tests/test_docs.py
regenerates it and checks the committed file matches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rasp_compiler.cli.parser import build_parser

HEADER = """# Command line reference

Every command of `rasp-compiler`, with its arguments. Generated from the parser by
`python scripts/cli_reference.py --write docs/cli.md` (a test checks it is current);
`rasp-compiler COMMAND --help` prints the same. The README's "Command line" section shows
the commands at work; a mistake prints one line `rasp-compiler: error: ...` and exits 2.

PROGRAM, wherever a command takes one, is a bundled program's name (`rasp-compiler list`),
`FILE.py:FACTORY` (or `FILE.py`, factory `program`), or a folder saved by `compile -o`
(and, where noted, `compress -o`).
"""


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse keeps no public list of subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    if action.nargs in ("*", "+"):
        return f"{metavar} ..."
    if action.nargs == "?":
        return f"[{metavar}]"
    return str(metavar)


def _row(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{_value(action)}`"
    value = _value(action) if action.option_strings else ""
    text = (action.help or "").replace("%(default)s", str(action.default)).replace("|", "\\|")
    text = " ".join(text.split())
    return f"| {names} | {f'`{value}`' if value else ''} | {text} |"


def reference() -> str:
    parts = [HEADER]
    for name, help_text, sub in _subcommands(build_parser()):
        parts.append(f"\n## `rasp-compiler {name}`\n\n{help_text[0].upper() + help_text[1:]}.\n")
        actions = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        if actions:
            parts.append("\n| argument | value | what it does |\n|---|---|---|\n")
            parts.append("\n".join(_row(a) for a in actions) + "\n")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the page here (default: print it)")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(reference())
    else:
        print(reference(), end="")


if __name__ == "__main__":
    main()
