"""The `rasp-compiler` command line."""

from rasp_compiler.cli.commands import main

__all__ = ["main"]
