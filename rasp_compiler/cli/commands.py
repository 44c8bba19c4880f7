"""The handlers of the `rasp-compiler` subcommands: list, eval, compile, run, inspect,
export, explore, verify, compress.

Each handler takes the parsed arguments and returns the exit status; a mistake raises a
RaspCompilerError, which parser.main prints as one line. Why apart from the parser: the
parser (parser.py) says what each command accepts, these say what it does, and each
reads on its own. Heavy modules (JAX, the compiler) are imported inside the handlers, so
`rasp-compiler list` and `--help` load none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from rasp_compiler.cli.programs import (
    compile_spec,
    no_runaway_recursion,
    saved_model_folder,
)
from rasp_compiler.errors import InvalidInputError, RaspCompilerError, counted
from rasp_compiler.lang.tokens import parse_tokens
from rasp_compiler.program_files import list_programs, load_program


def cmd_list(args: argparse.Namespace) -> int:
    specs = list_programs()
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        print(f"{spec.name:<{width}}  {spec.description}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rasp_compiler.lang.evaluator import evaluate
    from rasp_compiler.lang.graph import build_graph

    spec = load_program(args.program)
    program = spec.make()
    tokens = parse_tokens(spec.name, args.tokens, spec.vocab)
    with no_runaway_recursion(spec.name):
        output = evaluate(program, tokens, causal=args.causal)
    print(f"{spec.name}: {spec.description}")
    print(f"input:  {tokens}")
    print(f"output: {output}")
    if not args.quiet:
        print()
        print(build_graph(program).summary())
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    if args.output:  # before compiling: a refused destination should not cost a compile
        from rasp_compiler.model.persistence import check_save_destination

        check_save_destination(Path(args.output))
    spec, model = compile_spec(args)
    print(f"{spec.name}: {spec.description}")
    summary = model.summary()
    print(summary)
    print(f"compiled in {model.info.compile_seconds:.3f}s; "
          f"{model.parameter_count():,} parameters ({model.parameter_count(nonzero=True):,} non-zero)")
    print_terms(summary)
    if args.output:
        print(f"saved to {model.save(args.output)}")
    if args.run:
        tokens = parse_tokens(spec.name, args.run, model.vocab)
        print(f"input:  {tokens}")
        print(f"output: {model.run([tokens])[0]}")
    return 0


def print_terms(text: str) -> None:
    """What the layer plan's words mean (coldness, steps, bos-cleanup, ...), those it uses."""
    from rasp_compiler.diagnostics.glossary import explain

    lines = explain(text)
    if lines:
        print("terms:")
        for line in lines:
            print(f"  {line}")


def cmd_run(args: argparse.Namespace) -> int:
    from rasp_compiler.model.compiled import CompiledModel

    folder = saved_model_folder(args.program)
    if folder is not None:  # a model saved by `compile -o`
        if args.vocab is not None or args.max_seq_len is not None:
            raise InvalidInputError(
                f"{folder} is a saved model: its vocab and max_seq_len were fixed when it was "
                f"compiled; drop --vocab / --max-seq-len or compile the program again"
            )
        model = CompiledModel.load(folder)
        print(model.run([parse_tokens("the saved model", args.tokens, model.vocab)])[0])
        return 0
    spec, model = compile_spec(args)
    tokens = parse_tokens(spec.name, args.tokens, model.vocab)
    print(model.run([tokens])[0])
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from rasp_compiler.model.records import require_compilation
    from rasp_compiler.verify.checker import verify

    spec, model = compile_spec(args)
    if args.exhaustive is None and args.samples is None:
        args.exhaustive = default_exhaustive(len(model.vocab), model.max_seq_len)
    program = require_compilation(model, "rasp-compiler verify").program
    with no_runaway_recursion(spec.name):
        report = verify(program, model, exhaustive_up_to=args.exhaustive,
                        samples=args.samples, seed=args.seed, progress=not args.quiet,
                        strict=args.strict)
    print(report)
    return 0 if report.ok else 1


def default_exhaustive(vocab_size: int, max_seq_len: int, limit: int = 100_000) -> int:
    """The longest n such that every input of 1..n tokens is at most `limit` inputs (at
    least 1). It stops at the first n past the limit: summing every power up to
    max_seq_len for every n took time quadratic in max_seq_len."""
    n, count = 0, 0
    while n < max_seq_len and count + vocab_size ** (n + 1) <= limit:
        n += 1
        count += vocab_size ** n
    return max(n, 1)


def check_report_path(path: Path, what: str = "the HTML report",
                       example: str = "report.html") -> None:
    """A report or picture goes to a file in an existing folder; say so before compiling."""
    from rasp_compiler.model.save_folder import check_file

    check_file(path, f"write {what} to", example)


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.html:
        check_report_path(Path(args.html))
    spec, model = compile_spec(args)
    everything = not (args.layout or args.residual or args.selectors or args.check)
    if args.json:
        print(model.layer_plan_report().to_json() if args.layout or everything
              else model.residual_map().to_json())
        return 0
    if args.layout or everything:
        layout = str(model.layer_plan_report())
        print(layout)
        print_terms(layout)
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
        from rasp_compiler.explorer.page import write_static_page
        from rasp_compiler.explorer.views import default_inputs

        inputs = [tokens] if tokens else default_inputs(model, [ex[0] for ex in spec.examples])
        print(f"wrote {write_static_page(model, inputs, args.html, owner=spec.name)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import warnings

    from rasp_compiler import export
    from rasp_compiler.model.compiled import CompiledModel

    # Before compiling: a refused destination should not cost a compile.
    destination = export.check_destination(args.output, args.format)
    folder = saved_model_folder(args.program)
    if folder is not None:  # a model saved by `compile -o`
        if args.vocab is not None or args.max_seq_len is not None or args.causal:
            raise InvalidInputError(
                f"{folder} is a saved model: its vocab, max_seq_len and causal mask were fixed "
                f"when it was compiled; drop --vocab / --max-seq-len / --causal or export the "
                f"program itself"
            )
        model = CompiledModel.load(folder)
    else:
        _, model = compile_spec(args)
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


def cmd_explore(args: argparse.Namespace) -> int:
    import webbrowser

    from rasp_compiler.explorer import server as explorer_server
    from rasp_compiler.explorer import views

    folder = saved_model_folder(args.program)
    if folder is not None:  # saved by `compile -o` or `compress -o`
        if args.vocab is not None or args.max_seq_len is not None or args.causal:
            raise InvalidInputError(
                f"{folder} is a saved model: its vocab, max_seq_len and causal mask were fixed "
                f"when it was compiled; drop --vocab / --max-seq-len / --causal or explore the "
                f"program instead"
            )
        model, note = views.load_saved(folder)
        source = views.base_model(model).source
        owner, examples = views.owner_of(model), []
        if note:
            print(f"note: the page shows no ideal patterns or evaluator values: {note}",
                  file=sys.stderr)
        elif source is not None:
            print(f"the program: {source} (compiled again, the same weights as saved)")
            with contextlib.suppress(RaspCompilerError):  # its examples: the first input
                examples = [ex[0] for ex in load_program(source.reference).examples]
    else:
        spec, model = compile_spec(args)
        owner, examples, note = spec.name, [ex[0] for ex in spec.examples], ""
    if args.input:  # refuse a bad --input here, as `run` would, before serving anything
        model.encode([parse_tokens(owner, args.input, model.vocab)])
    words = args.input or views.default_inputs(model, examples)[0]
    server = explorer_server.ExplorerServer(model, owner, words, args.port, program_note=note)
    print(f"the model explorer for {views.base_model(model).name} is at {server.url} "
          f"(Ctrl-C stops it)", flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    explorer_server.run_until_interrupted(server)
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from rasp_compiler.superposition.compression import compress

    if args.output:  # before training: a refused destination should not cost a compression
        from rasp_compiler.superposition.compressed_files import check_compressed_destination

        check_compressed_destination(Path(args.output))
    for picture, what, example in (
            (args.picture, "the interference picture (--picture)", "interference.png"),
            (args.norms, "the feature norms picture (--norms)", "norms.png"),
            (args.html, "the HTML page (--html)", "report.html")):
        if picture:
            check_report_path(Path(picture), what, example)
    spec, model = compile_spec(args)
    budget = {} if args.steps is None else {"steps": args.steps}
    compressed = compress(model, args.dim, seed=args.seed, nonlinear=args.nonlinear,
                          progress=not args.quiet, **budget)
    print(compressed.summary())
    print(f"accuracy against the evaluator: {compressed.accuracy()}")
    if args.output:
        print(f"saved to {compressed.save(args.output)}")
    if args.picture:
        from rasp_compiler.superposition.sweep import interference_picture

        print(f"wrote {interference_picture(compressed, args.picture)}")
    if args.norms:
        from rasp_compiler.superposition.sweep import feature_norms_picture

        print(f"wrote {feature_norms_picture(compressed, args.norms)}")
    if args.html:  # the explorer's page: interference matrix, and the examples run compressed
        from rasp_compiler.explorer.page import write_static_page
        from rasp_compiler.explorer.views import default_inputs

        inputs = default_inputs(model, [example[0] for example in spec.examples])
        print(f"wrote {write_static_page(compressed, inputs, args.html, spec.name)}")
    return 0
