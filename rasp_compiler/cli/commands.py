"""The `rasp-compiler` command line.

Over 600 lines on purpose for now: one parser and one handler per command; it is split by
job in issue 24's layered package, which moves every module in one step with the weights
unchanged.

Every command takes a program as a bundled name (`rasp-compiler list`) or as
`path/to/file.py:factory`; `run` also takes a folder saved by `compile -o`.
A mistake in the arguments, the program file or a saved model prints one line,
`rasp-compiler: error: ...`, and exits with status 2 (bad option values are
refused by argparse, also with status 2). Ctrl-C prints one line and exits with
status 130. Only a bug in rasp_compiler itself shows a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Sequence

from rasp_compiler.errors import (
    InvalidInputError,
    InvalidProgramError,
    LoadError,
    RaspCompilerError,
    counted,
)
from rasp_compiler.lang.tokens import parse_tokens
from rasp_compiler.program_files import list_programs, load_program

EXIT_USER_ERROR = 2


def _cmd_list(args: argparse.Namespace) -> int:
    specs = list_programs()
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        print(f"{spec.name:<{width}}  {spec.description}")
    return 0


@contextlib.contextmanager
def _no_runaway_recursion(name: str):
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


def _cmd_eval(args: argparse.Namespace) -> int:
    from rasp_compiler.lang.evaluator import evaluate
    from rasp_compiler.lang.graph import build_graph

    spec = load_program(args.program)
    program = spec.make()
    tokens = parse_tokens(spec.name, args.tokens, spec.vocab)
    with _no_runaway_recursion(spec.name):
        output = evaluate(program, tokens, causal=args.causal)
    print(f"{spec.name}: {spec.description}")
    print(f"input:  {tokens}")
    print(f"output: {output}")
    if not args.quiet:
        print()
        print(build_graph(program).summary())
    return 0


def parse_vocab(text: str) -> tuple:
    """'a,b,c' -> ('a', 'b', 'c'); '1,2,3' -> (1, 2, 3): numbers become numbers.

    An empty vocab, an empty token ('a,,b') or a repeated one is refused, not defaulted.
    """
    if not text:
        raise argparse.ArgumentTypeError(
            "the vocab is empty; write the tokens separated by commas, e.g. --vocab a,b,c")
    tokens = []
    for word in text.split(","):
        if not word:
            raise argparse.ArgumentTypeError(
                f"{text!r} has an empty token; write the tokens separated by single commas, "
                f"e.g. --vocab a,b,c")
        for kind in (int, float):
            try:
                tokens.append(kind(word))
                break
            except ValueError:
                continue
        else:
            tokens.append(word)
        if tokens.count(tokens[-1]) > 1:
            raise argparse.ArgumentTypeError(f"the token {word!r} appears twice in {text!r}")
    return tuple(tokens)


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free one) to 65535, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 would silently mean 'nothing')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


JAX_SEEDS = 2**32  # compress's seed makes a JAX key, which keeps 32 bits (verify.check_seed)


def seed_number(text: str) -> int:
    """An argparse type: a seed, a whole number >= 0 (random.Random(-5) is seed 5)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def jax_seed(text: str) -> int:
    """An argparse type: a seed for a JAX key, 0 to 2**32 - 1 (a larger one would repeat a
    smaller one's stream, and past 2**63 JAX raised OverflowError)."""
    value = seed_number(text)
    if value >= JAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"must be 0 to {JAX_SEEDS - 1:,} (JAX's random keys keep 32 bits of a seed), "
            f"got {value:,}")
    return value


def _saved_model_folder(reference: str) -> Path | None:
    """The folder if `reference` names one holding a saved model (or meant to)."""
    from rasp_compiler.model.persistence import CONFIG_FILE, PARAMS_FILE
    from rasp_compiler.superposition import compression

    folder = Path(reference)
    if not folder.is_dir():
        return None
    if any((folder / name).exists()
           for name in (CONFIG_FILE, PARAMS_FILE, compression.CONFIG_FILE)):
        return folder
    from rasp_compiler.program_files import program_names

    return None if reference in program_names() else folder


def _compile_spec(args: argparse.Namespace):
    import warnings

    from rasp_compiler.compiler.pipeline import compile_program

    try:
        spec = load_program(args.program)
    except LoadError:
        if _saved_model_folder(args.program) is None:
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
    with warnings.catch_warnings(record=True) as caught, _no_runaway_recursion(spec.name):
        warnings.simplefilter("always")
        options = dict(spec.options)
        if args.causal:
            options["causal"] = True
        model = compile_program(program, vocab, max_seq_len, **options)
    model.source = spec.source  # saved with the model: `explore saved/` finds the program
    for warning in caught:
        text = str(warning.message)
        if args.command != "inspect":  # inspect, the detailed look, says it in full
            text = _short_warning(text, model.info.aggregate_checks, args.program)
        print(f"warning: {text}", file=sys.stderr)
    return spec, model


def _short_warning(text: str, checks, program: str) -> str:
    """An unproven Aggregate's warning in two lines' worth: its gist, not every proof
    tried (dyck2's was 700 characters on every `verify`); `inspect` prints it whole."""
    import re

    for label, status, reason in checks:
        if status == "unproven" and f": {reason}." in text:
            gist = re.split(r", and |: ", reason, maxsplit=1)[0]
            return (text.replace(f": {reason}.", f" ({gist}).")
                    + f"; `rasp-compiler inspect {program}` says why in full")
    return text


def _cmd_compile(args: argparse.Namespace) -> int:
    if args.output:  # before compiling: a refused destination should not cost a compile
        from rasp_compiler.model.persistence import check_save_destination

        check_save_destination(Path(args.output))
    spec, model = _compile_spec(args)
    print(f"{spec.name}: {spec.description}")
    summary = model.summary()
    print(summary)
    print(f"compiled in {model.info.compile_seconds:.3f}s; "
          f"{model.parameter_count():,} parameters ({model.parameter_count(nonzero=True):,} non-zero)")
    _print_terms(summary)
    if args.output:
        print(f"saved to {model.save(args.output)}")
    if args.run:
        tokens = parse_tokens(spec.name, args.run, model.vocab)
        print(f"input:  {tokens}")
        print(f"output: {model.run([tokens])[0]}")
    return 0


def _print_terms(text: str) -> None:
    """What the layer plan's words mean (coldness, steps, bos-cleanup, ...), those it uses."""
    from rasp_compiler.diagnostics.glossary import explain

    lines = explain(text)
    if lines:
        print("terms:")
        for line in lines:
            print(f"  {line}")


def _cmd_run(args: argparse.Namespace) -> int:
    from rasp_compiler.model.compiled import CompiledModel

    folder = _saved_model_folder(args.program)
    if folder is not None:  # a model saved by `compile -o`
        if args.vocab is not None or args.max_seq_len is not None:
            raise InvalidInputError(
                f"{folder} is a saved model: its vocab and max_seq_len were fixed when it was "
                f"compiled; drop --vocab / --max-seq-len or compile the program again"
            )
        model = CompiledModel.load(folder)
        print(model.run([parse_tokens("the saved model", args.tokens, model.vocab)])[0])
        return 0
    spec, model = _compile_spec(args)
    tokens = parse_tokens(spec.name, args.tokens, model.vocab)
    print(model.run([tokens])[0])
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from rasp_compiler.model.records import require_compilation
    from rasp_compiler.verify.checker import verify

    spec, model = _compile_spec(args)
    if args.exhaustive is None and args.samples is None:
        args.exhaustive = _default_exhaustive(len(model.vocab), model.max_seq_len)
    program = require_compilation(model, "rasp-compiler verify").program
    with _no_runaway_recursion(spec.name):
        report = verify(program, model, exhaustive_up_to=args.exhaustive,
                        samples=args.samples, seed=args.seed, progress=not args.quiet,
                        strict=args.strict)
    print(report)
    return 0 if report.ok else 1


def _default_exhaustive(vocab_size: int, max_seq_len: int, limit: int = 100_000) -> int:
    """The longest n such that every input of 1..n tokens is at most `limit` inputs (at
    least 1). It stops at the first n past the limit: summing every power up to
    max_seq_len for every n took time quadratic in max_seq_len."""
    n, count = 0, 0
    while n < max_seq_len and count + vocab_size ** (n + 1) <= limit:
        n += 1
        count += vocab_size ** n
    return max(n, 1)


def _check_report_path(path: Path, what: str = "the HTML report",
                       example: str = "report.html") -> None:
    """A report or picture goes to a file in an existing folder; say so before compiling."""
    from rasp_compiler.model.save_folder import check_file as check_file_destination

    check_file_destination(path, f"write {what} to", example)


def _cmd_inspect(args: argparse.Namespace) -> int:
    if args.html:
        _check_report_path(Path(args.html))
    spec, model = _compile_spec(args)
    everything = not (args.layout or args.residual or args.selectors or args.check)
    if args.json:
        print(model.layout_report().to_json() if args.layout or everything
              else model.residual_map().to_json())
        return 0
    if args.layout or everything:
        layout = str(model.layout_report())
        print(layout)
        _print_terms(layout)
    if args.residual or everything:
        print(model.residual_map())
    if args.selectors or everything:
        print(model.selector_report())
    tokens = parse_tokens(spec.name, args.input, model.vocab) if args.input else None
    if args.check or (everything and tokens):
        inputs = [tokens] if tokens else [list(ex[0]) for ex in spec.examples]
        print(model.check_patterns(inputs))
        print(model.read_back(inputs))
    if args.html:  # the explorer's page, for --input or else the program's examples
        from rasp_compiler.explorer.app import default_inputs, write_static_page

        inputs = [tokens] if tokens else default_inputs(model, [ex[0] for ex in spec.examples])
        print(f"wrote {write_static_page(model, inputs, args.html, owner=spec.name)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import warnings

    from rasp_compiler import export
    from rasp_compiler.model.compiled import CompiledModel

    # Before compiling: a refused destination should not cost a compile.
    destination = export.check_destination(args.output, args.format)
    folder = _saved_model_folder(args.program)
    if folder is not None:  # a model saved by `compile -o`
        if args.vocab is not None or args.max_seq_len is not None or args.causal:
            raise InvalidInputError(
                f"{folder} is a saved model: its vocab, max_seq_len and causal mask were fixed "
                f"when it was compiled; drop --vocab / --max-seq-len / --causal or export the "
                f"program itself"
            )
        model = CompiledModel.load(folder)
    else:
        _, model = _compile_spec(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.format == "safetensors":
            written = export.save_safetensors(model, destination)
        else:
            written = export.save_transformer_lens(model, destination)
        encoding = export.export_encoding(model)
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        print(f"warning: {message}", file=sys.stderr)
    config = export.transformer_lens_config(model)
    print(f"exported {model.output} to {written} ({args.format}): "
          f"{counted(config['n_layers'], 'layer')}, {counted(config['n_heads'], 'head')} per "
          f"layer of size {config['d_head']}, MLP width {config['d_mlp']}, "
          f"d_model {config['d_model']}, attention {config['attention_dir']}")
    print(f"input: [BOS id, token ids...], ids {dict(encoding.input_encoding)}")
    print(f"logits: {encoding.logits}")
    return 0


def _cmd_explore(args: argparse.Namespace) -> int:
    import webbrowser

    from rasp_compiler.explorer import app as explorer

    folder = _saved_model_folder(args.program)
    if folder is not None:  # saved by `compile -o` or `compress -o`
        if args.vocab is not None or args.max_seq_len is not None or args.causal:
            raise InvalidInputError(
                f"{folder} is a saved model: its vocab, max_seq_len and causal mask were fixed "
                f"when it was compiled; drop --vocab / --max-seq-len / --causal or explore the "
                f"program instead"
            )
        model, note = explorer.load_saved(folder)
        source = explorer.base_model(model).source
        owner, examples = explorer.owner_of(model), []
        if note:
            print(f"note: the page shows no ideal patterns or evaluator values: {note}",
                  file=sys.stderr)
        elif source is not None:
            print(f"the program: {source} (compiled again, the same weights as saved)")
            with contextlib.suppress(RaspCompilerError):  # its examples: the first input
                examples = [ex[0] for ex in load_program(source.reference).examples]
    else:
        spec, model = _compile_spec(args)
        owner, examples, note = spec.name, [ex[0] for ex in spec.examples], ""
    if args.input:  # refuse a bad --input here, as `run` would, before serving anything
        model.encode([parse_tokens(owner, args.input, model.vocab)])
    words = args.input or explorer.default_inputs(model, examples)[0]
    server = explorer.ExplorerServer(model, owner, words, args.port,
                                     program_note=note)
    print(f"the model explorer for {explorer.base_model(model).name} is at {server.url} (Ctrl-C stops it)",
          flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    explorer.run_until_interrupted(server)
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from rasp_compiler.superposition.compression import compress

    if args.output:  # before training: a refused destination should not cost a compression
        from rasp_compiler.superposition.compression import check_compressed_destination

        check_compressed_destination(Path(args.output))
    for picture, what, example in (
            (args.picture, "the interference picture (--picture)", "interference.png"),
            (args.norms, "the feature norms picture (--norms)", "norms.png"),
            (args.html, "the HTML page (--html)", "report.html")):
        if picture:
            _check_report_path(Path(picture), what, example)
    spec, model = _compile_spec(args)
    compressed = compress(model, args.dim, seed=args.seed, steps=args.steps,
                          nonlinear=args.nonlinear, progress=not args.quiet)
    print(compressed.summary())
    print(f"accuracy against the evaluator: {compressed.accuracy()}")
    if args.output:
        print(f"saved to {compressed.save(args.output)}")
    if args.picture:
        from rasp_compiler.superposition.experiments import interference_picture

        print(f"wrote {interference_picture(compressed, args.picture)}")
    if args.norms:
        from rasp_compiler.superposition.experiments import feature_norms_picture

        print(f"wrote {feature_norms_picture(compressed, args.norms)}")
    if args.html:  # the explorer's page: interference matrix, and the examples run compressed
        from rasp_compiler.explorer.app import default_inputs, write_static_page

        inputs = default_inputs(model, [example[0] for example in spec.examples])
        print(f"wrote {write_static_page(compressed, inputs, args.html, spec.name)}")
    return 0


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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list the bundled programs")
    listing.set_defaults(handler=_cmd_list)

    evaluating = commands.add_parser(
        "eval", help="evaluate a program with the reference evaluator and show its graph"
    )
    evaluating.add_argument("program", help="a bundled program name or path.py:factory")
    evaluating.add_argument("tokens", nargs="+", help="input tokens, as written in the vocab")
    evaluating.add_argument("-q", "--quiet", action="store_true", help="omit the graph summary")
    evaluating.add_argument("--causal", action="store_true",
                            help="the causal meaning (each position sees the tokens up to it)")
    evaluating.set_defaults(handler=_cmd_eval)

    compiling = commands.add_parser(
        "compile", help="compile a program to a transformer and print its layer plan"
    )
    _add_compile_options(compiling)
    compiling.add_argument("-o", "--output", help="save the model to this folder (new, empty, "
                           "or holding an earlier save, which is replaced)")
    compiling.add_argument("--run", nargs="+", metavar="TOKEN", help="then run it on these tokens")
    compiling.set_defaults(handler=_cmd_compile)

    running = commands.add_parser(
        "run", help="run a program (compiled on the fly) or a saved model folder on tokens"
    )
    _add_compile_options(running)
    running.add_argument("tokens", nargs="+", help="input tokens, as written in the vocab")
    running.set_defaults(handler=_cmd_run)

    inspecting = commands.add_parser(
        "inspect", help="layout, residual map, selector report, pattern and read-back checks"
    )
    _add_compile_options(inspecting)
    inspecting.add_argument("--layout", action="store_true", help="only the layer layout")
    inspecting.add_argument("--residual", action="store_true", help="only the residual map")
    inspecting.add_argument("--selectors", action="store_true", help="only the selector report")
    inspecting.add_argument("--check", action="store_true",
                            help="pattern check and value read-back (on --input or the examples)")
    inspecting.add_argument("--input", nargs="+", metavar="TOKEN", help="the input to inspect")
    inspecting.add_argument("--html", metavar="PATH",
                            help="write the explorer's self-contained, offline page for --input "
                                 "(or the program's examples)")
    inspecting.add_argument("--json", action="store_true",
                            help="print the layout (or with --residual the residual map) as JSON")
    inspecting.set_defaults(handler=_cmd_inspect)

    exporting = commands.add_parser(
        "export", help="export to TransformerLens (a torch file) or safetensors (a folder)"
    )
    _add_compile_options(exporting)
    exporting.add_argument("--format", required=True, choices=["transformerlens", "safetensors"],
                           help="transformerlens: one torch file of config, state_dict and "
                           "encoding; safetensors: a folder of model.safetensors and config.json")
    exporting.add_argument("-o", "--output", required=True, metavar="PATH",
                           help="the file (transformerlens) or folder (safetensors) to write")
    exporting.set_defaults(handler=_cmd_export)

    exploring = commands.add_parser(
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
    exploring.set_defaults(handler=_cmd_explore)

    verifying = commands.add_parser(
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
    verifying.set_defaults(handler=_cmd_verify)

    compressing = commands.add_parser(
        "compress", help="learn a compressed residual stream (superposition with ground truth)"
    )
    _add_compile_options(compressing)
    compressing.add_argument("--dim", type=positive_int, required=True, metavar="D",
                             help="width of the compressed residual (1..d_model)")
    compressing.add_argument("--seed", type=jax_seed, default=0,
                             help="the training seed, 0 to 4294967295 (default 0)")
    compressing.add_argument("--steps", type=positive_int, default=3000,
                             help="training budget (Adam steps; early stopping may use fewer)")
    compressing.add_argument("--nonlinear", action="store_true",
                             help="a small ReLU decoder on every read")
    compressing.add_argument("-o", "--output", help="save the compressed model to this folder")
    compressing.add_argument("--picture", metavar="PATH",
                             help="write the interference (W W^T) picture, PNG or SVG")
    compressing.add_argument("--norms", metavar="PATH", help="write the feature norms picture")
    compressing.add_argument("--html", metavar="PATH",
                             help="write the explorer's static page for the compressed model "
                                  "(its interference matrix; the program's examples run "
                                  "compressed beside the exact model)")
    compressing.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    compressing.set_defaults(handler=_cmd_compress)
    return parser


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


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

