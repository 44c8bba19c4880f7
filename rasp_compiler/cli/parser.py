"""The `rasp-compiler` command line: its parser and `main`.

Every command takes a program as a bundled name (`rasp-compiler list`) or as
`path/to/file.py:factory`; `run`, `export`, `explore` and `circuit` also take a
folder saved by `compile -o`. A mistake in the arguments, the program file or a saved model
prints one line, `rasp-compiler: error: ...`, and exits with status 2 (bad option values
are refused by argparse, also with status 2). Ctrl-C prints one line and exits with
status 130. Only a bug in rasp_compiler itself shows a traceback.

Why this module: it is the one place that lists the commands and their options; the
handlers are commands.py and circuit.py, the value types arguments.py, PROGRAM
resolution programs.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from rasp_compiler.cli import circuit, commands
from rasp_compiler.cli.arguments import (
    jax_seed,
    parse_vocab,
    port_number,
    positive_int,
    seed_number,
)
from rasp_compiler.errors import RaspCompilerError

# The circuits' choices, written here so that `--help` imports no numpy or JAX (the
# circuit command checks they are still rasp_compiler.circuits' own: tests/cli).
GRANULARITIES = ("head", "component", "matrix")
ABLATIONS = ("resample", "zero", "mean")

EXIT_USER_ERROR = 2  # a mistake in the arguments, the program or a saved model
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def _add_compile_options(parser: argparse.ArgumentParser, *,
                         program_help: str = "a bundled program name or path.py:factory",
                         metavar: str | None = None) -> None:
    parser.add_argument("program", help=program_help, metavar=metavar)
    parser.add_argument("--vocab", type=parse_vocab,
                        help="comma-separated tokens (default: the program's VOCAB)")
    parser.add_argument("--max-seq-len", type=positive_int,
                        help="default: the program's MAX_SEQ_LEN")
    parser.add_argument("--causal", action="store_true",
                        help="compile a decoder-only model (attention masked to earlier keys)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rasp-compiler",
        description="Compile RASP programs to exact transformers and inspect them.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_list_command(subparsers)
    _add_eval_command(subparsers)
    _add_compile_command(subparsers)
    _add_run_command(subparsers)
    _add_inspect_command(subparsers)
    _add_export_command(subparsers)
    _add_explore_command(subparsers)
    _add_verify_command(subparsers)
    _add_compress_command(subparsers)
    _add_circuit_command(subparsers)
    return parser


def _add_list_command(subparsers) -> None:
    listing = subparsers.add_parser("list", help="list the bundled programs")
    listing.set_defaults(handler=commands.cmd_list)


def _add_eval_command(subparsers) -> None:
    evaluating = subparsers.add_parser(
        "eval", help="evaluate a program with the reference evaluator and show its graph"
    )
    evaluating.add_argument("program", help="a bundled program name or path.py:factory")
    evaluating.add_argument("tokens", nargs="+", help="input tokens, as written in the vocab")
    evaluating.add_argument("-q", "--quiet", action="store_true", help="omit the graph summary")
    evaluating.add_argument("--causal", action="store_true",
                            help="the causal meaning (each position sees the tokens up to it)")
    evaluating.set_defaults(handler=commands.cmd_eval)


def _add_compile_command(subparsers) -> None:
    compiling = subparsers.add_parser(
        "compile", help="compile a program to a transformer and print its layer plan"
    )
    _add_compile_options(compiling)
    compiling.add_argument("-o", "--output", help="save the model to this folder (new, empty, "
                           "or holding an earlier save, which is replaced)")
    compiling.add_argument("--run", nargs="+", metavar="TOKEN", help="then run it on these tokens")
    compiling.set_defaults(handler=commands.cmd_compile)


def _add_run_command(subparsers) -> None:
    running = subparsers.add_parser(
        "run", help="run a program (compiled on the fly) or a saved model folder on tokens"
    )
    _add_compile_options(running)
    running.add_argument("tokens", nargs="+", help="input tokens, as written in the vocab")
    running.set_defaults(handler=commands.cmd_run)


def _add_inspect_command(subparsers) -> None:
    inspecting = subparsers.add_parser(
        "inspect", help="layer plan, residual map, selector report, pattern and read-back checks"
    )
    _add_compile_options(inspecting)
    inspecting.add_argument("--layer-plan", "--layout", dest="layout", action="store_true",
                            help="only the layer plan (--layout: its older name)")
    inspecting.add_argument("--residual", action="store_true", help="only the residual map")
    inspecting.add_argument("--selectors", action="store_true", help="only the selector report")
    inspecting.add_argument("--check", action="store_true",
                            help="pattern check and value read-back (on --input or the examples)")
    inspecting.add_argument("--input", nargs="+", metavar="TOKEN", help="the input to inspect")
    inspecting.add_argument("--html", metavar="PATH",
                            help="write the explorer's self-contained, offline page for --input "
                                 "(or the program's examples)")
    inspecting.add_argument("--json", action="store_true",
                            help="print the layer plan (or with --residual the residual map) as JSON")
    inspecting.set_defaults(handler=commands.cmd_inspect)


def _add_export_command(subparsers) -> None:
    exporting = subparsers.add_parser(
        "export", help="export to TransformerLens (a torch file) or safetensors (a folder)"
    )
    _add_compile_options(exporting)
    exporting.add_argument("--format", required=True, choices=["transformerlens", "safetensors"],
                           help="transformerlens: one torch file of config, state_dict and "
                           "encoding; safetensors: a folder of model.safetensors and config.json")
    exporting.add_argument("-o", "--output", required=True, metavar="PATH",
                           help="the file (transformerlens) or folder (safetensors) to write")
    exporting.set_defaults(handler=commands.cmd_export)


def _add_explore_command(subparsers) -> None:
    exploring = subparsers.add_parser(
        "explore", help="explore the model in the browser: a local server on 127.0.0.1 that "
                        "runs the inputs you type"
    )
    _add_compile_options(exploring, metavar="PROGRAM_OR_MODEL",
                         program_help="a bundled program name, path.py:factory, or a folder "
                                      "saved by `compile -o`")
    exploring.add_argument("--input", nargs="+", metavar="TOKEN", help="the input shown first")
    exploring.add_argument("--port", type=port_number, default=0,
                           help="the port on 127.0.0.1 (default 0: any free port)")
    exploring.add_argument("--no-browser", action="store_true",
                           help="print the page's address without opening a browser")
    exploring.set_defaults(handler=commands.cmd_explore)


def _add_verify_command(subparsers) -> None:
    verifying = subparsers.add_parser(
        "verify", help="compare the compiled model with the evaluator, position by position"
    )
    _add_compile_options(verifying)
    verifying.add_argument("--exhaustive", type=positive_int, metavar="N",
                           help="every input of 1..N tokens (default: as long as <= 100,000 inputs)")
    verifying.add_argument("--samples", type=positive_int, metavar="N", help="N random inputs")
    verifying.add_argument("--seed", type=seed_number, default=0,
                           help="the random inputs' seed, a whole number >= 0 (default 0)")
    verifying.add_argument("--strict", action="store_true",
                           help="also fail where an output's raw one-hot columns are more than "
                                "1e-3 from exact (not just decoded right)")
    verifying.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    verifying.set_defaults(handler=commands.cmd_verify)


def _add_compress_command(subparsers) -> None:
    compressing = subparsers.add_parser(
        "compress", help="learn a compressed residual stream (superposition with ground truth)"
    )
    _add_compile_options(compressing)
    compressing.add_argument("--dim", type=positive_int, required=True, metavar="D",
                             help="width of the compressed residual (1..d_model)")
    compressing.add_argument("--seed", type=jax_seed, default=0,
                             help="the training seed, 0 to 4294967295 (default 0)")
    compressing.add_argument("--steps", type=positive_int,
                             help="training budget in Adam steps (default: compress's, 20,000; "
                                  "early stopping usually uses far fewer)")
    reads = compressing.add_mutually_exclusive_group()
    reads.add_argument("--nonlinear", dest="nonlinear", action="store_true", default=True,
                       help="a small ReLU decoder on every read (the default)")
    reads.add_argument("--linear", dest="nonlinear", action="store_false",
                       help="linear reads only (x = h W^T): the simplest superposed model, "
                            "which at half width mostly no longer computes its program")
    compressing.add_argument("-o", "--output", help="save the compressed model to this folder")
    compressing.add_argument("--picture", metavar="PATH",
                             help="write the interference (W W^T) picture, PNG or SVG")
    compressing.add_argument("--norms", metavar="PATH", help="write the feature norms picture")
    compressing.add_argument("--html", metavar="PATH",
                             help="write the explorer's static page for the compressed model "
                                  "(its interference matrix; the program's examples run "
                                  "compressed beside the exact model)")
    compressing.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    compressing.set_defaults(handler=commands.cmd_compress)


def _add_circuit_command(subparsers) -> None:
    circuiting = subparsers.add_parser(
        "circuit", help="the model's circuit: nodes and edges from the weights (structural) or "
                        "those whose patch changes the output (--functional)"
    )
    _add_compile_options(circuiting, metavar="PROGRAM_OR_MODEL",
                         program_help="a bundled program name, path.py:factory, or a folder "
                                      "saved by `compile -o` or `compress -o`")
    circuiting.add_argument("--granularity", choices=GRANULARITIES, default="head",
                            help="head: a node per attention head (default); component: per "
                                 "attention layer; matrix: per weight matrix (W_Q, W_K, W_V, "
                                 "W_O, W_in, W_out)")
    circuiting.add_argument("--functional", action="store_true",
                            help="keep only the edges whose patch alone changes the decoded "
                                 "output on some (clean, corrupt) pair")
    circuiting.add_argument("--ablation", choices=ABLATIONS,
                            help="with --functional: what a patched edge carries: the source's "
                                 "output on a same-length corrupt input (resample, the "
                                 "default), 0 (zero), or its mean (mean)")
    circuiting.add_argument("--samples", type=positive_int, metavar="N",
                            help="with --functional: N random pairs (default: every pair when "
                                 "there are at most 2,048, else 256 random ones)")
    circuiting.add_argument("--seed", type=seed_number,
                            help="with --functional: the random pairs' seed, a whole number "
                                 ">= 0 (default 0)")
    circuiting.add_argument("--format", choices=circuit.FORMATS, default="text",
                            help="text: a summary to read (default); json: Circuit.to_json(); "
                                 "dot: Graphviz DOT text; png: a picture drawn by Graphviz's "
                                 "dot (needs -o)")
    circuiting.add_argument("-o", "--output", metavar="PATH",
                            help="write to this file instead of the terminal (png: required)")
    circuiting.set_defaults(handler=circuit.cmd_circuit)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:  # Ctrl-C while compiling, verifying, training: no traceback
        print(f"rasp-compiler: interrupted (Ctrl-C) during {args.command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RaspCompilerError as exc:
        print(f"rasp-compiler: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `rasp-compiler list | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except OSError as exc:  # the disk or the OS refused (e.g. writing the HTML report)
        print(f"rasp-compiler: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
