"""The `rasp-compiler` command line."""

from rasp_compiler.cli.parser import main

__all__ = ["main"]
