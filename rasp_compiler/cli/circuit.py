"""`rasp-compiler circuit PROGRAM`: a model's circuit (rasp_compiler.circuits) on the
command line, as a readable summary, JSON, Graphviz DOT or a PNG drawn by Graphviz.

Why a module of its own: the command has its own output formats and its own outside
tool (Graphviz's `dot`, for --format png), and the text summary is written for a person
reading a terminal: every node with what it computes, every edge with the input it
enters, and for a functional circuit the pairs tried and, for each kept edge, its effect
share and one pair that shows it. JSON and DOT are `Circuit.to_json()` and `to_dot()`
unchanged, so a script gets exactly what the Python API gives.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from rasp_compiler.cli.programs import compile_spec, saved_model_folder
from rasp_compiler.errors import InvalidInputError, SaveError

FORMATS = ("text", "json", "dot", "png")
GRAPHVIZ_INSTALL = ("install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
                    "install graphviz; others: https://graphviz.org/download/), or write "
                    "--format dot and render it elsewhere")
DOT_SECONDS = 120  # a circuit of a few hundred edges renders in well under a second


def cmd_circuit(args: argparse.Namespace) -> int:
    from rasp_compiler.circuits import circuit as circuit_of

    _check_options(args)
    output = Path(args.output) if args.output else None
    dot = None
    if args.format == "png":  # before compiling: a missing tool should not cost a compile
        if output is None:
            raise InvalidInputError(
                "--format png writes a picture file: give its path with -o, e.g. "
                "-o circuit.png (json, dot and text print to the terminal without -o)")
        dot = shutil.which("dot")
        if dot is None:
            raise InvalidInputError(
                f"--format png needs Graphviz's `dot` on PATH, and there is none: "
                f"{GRAPHVIZ_INSTALL}")
    if output is not None:
        from rasp_compiler.model.save_folder import check_file

        check_file(output, f"write the circuit ({args.format}) to",
                               f"circuit.{'txt' if args.format == 'text' else args.format}")
    model = _model(args)
    functional = dict(ablation=args.ablation or "resample", samples=args.samples,
                      seed=args.seed or 0) if args.functional else {}
    circuit = circuit_of(model, args.granularity, functional=args.functional, **functional)
    if args.format == "png":
        _render_png(dot, circuit.to_dot(), output)
        print(f"wrote {output} ({_headline(circuit)})")
        return 0
    text = {"text": circuit_text, "json": lambda c: c.to_json(),
            "dot": lambda c: c.to_dot()}[args.format](circuit)
    if output is None:
        print(text)
        return 0
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as error:
        raise SaveError(f"cannot write the circuit to {output}: {error.strerror or error}") \
            from None
    print(f"wrote {output} ({_headline(circuit)})")
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """--ablation, --samples and --seed choose a functional circuit's pairs: refused alone,
    where they would silently change nothing."""
    given = [option for option, value in (("--ablation", args.ablation),
                                          ("--samples", args.samples),
                                          ("--seed", args.seed)) if value is not None]
    if given and not args.functional:
        raise InvalidInputError(
            f"{', '.join(given)} choose{'s' * (len(given) == 1)} the pairs of a functional "
            f"circuit; add --functional (the structural circuit comes from the weights alone)")


def _model(args: argparse.Namespace):
    """The model PROGRAM names: a bundled program or path.py:factory, compiled; or a folder
    saved by `compile -o` or `compress -o`, loaded."""
    folder = saved_model_folder(args.program)
    if folder is None:
        return compile_spec(args)[1]
    if args.vocab is not None or args.max_seq_len is not None or args.causal:
        raise InvalidInputError(
            f"{folder} is a saved model: its vocab, max_seq_len and causal mask were fixed "
            f"when it was compiled; drop --vocab / --max-seq-len / --causal or give the "
            f"program itself")
    from rasp_compiler.superposition.compressed_files import load_saved_model

    return load_saved_model(folder)


def _render_png(dot: str, text: str, output: Path) -> None:
    try:
        result = subprocess.run([dot, "-Tpng", "-o", str(output)], input=text, text=True,
                                capture_output=True, timeout=DOT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SaveError(f"Graphviz's dot took over {DOT_SECONDS} s to draw the circuit; "
                        f"write --format dot and render it with other options") from None
    if result.returncode != 0:
        problem = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise SaveError(f"Graphviz's dot could not draw the circuit to {output} "
                        f"(exit status {result.returncode}): {problem}")


def _headline(circuit) -> str:
    kind = "functional" if circuit.functional else "structural"
    return (f"{circuit.program}: {kind} circuit at {circuit.granularity} granularity, "
            f"{len(circuit.nodes)} nodes, {len(circuit.edges)} edges")


def _tokens(values) -> str:
    return " ".join(str(value) for value in values) if values else "(empty)"


def circuit_text(circuit) -> str:
    """A circuit as a person reads it: what it is, its nodes (embeddings first, in forward
    order) with the program's nodes each computes, and its edges, each with the input it
    enters; a functional circuit also says which pairs were tried and, for each kept edge,
    the share of pairs its patch changes and one of them (clean and corrupt input, the
    output clean and with that edge patched)."""
    lines = [_headline(circuit)]
    if circuit.functional:
        lines.append(f"  kept {len(circuit.edges)} of the {len(circuit.structural_edges)} "
                     f"structural edges: those whose patch alone changes the decoded output")
        lines.append(f"  pairs: {circuit.ablation} ablation on {circuit.pairs.describe()}")
    else:
        lines.append(f"  {len(circuit.edges)} of the {len(circuit.candidates)} candidate "
                     f"edges: a source writes residual dimensions the destination reads")
    computes = circuit.alignment.model_to_rasp
    nodes = [node for node in circuit.model_nodes if node.name in circuit.nodes]
    width = max((len(node.name) for node in nodes), default=0)
    lines.append("")
    lines.append(f"nodes ({len(nodes)}), embeddings first:")
    for node in nodes:
        what = ", ".join(computes.get(node.name, ()))
        lines.append(f"  {node.name:<{width}}  {node.short:<9} "
                     f"{'computes ' + what if what else ''}".rstrip())
    lines.append("")
    lines.append(f"edges ({len(circuit.edges)}): source -> destination [input it enters]")
    if not circuit.edges:
        lines.append("  none: no edge's patch alone changes the output on these pairs"
                     if circuit.functional else "  none")
    tried = "pairs" if circuit.pairs is None or circuit.pairs.corrupt is not None else "inputs"
    for edge in circuit.edges:
        line = f"  {edge.source} -> {edge.destination} [{edge.input}]"
        effect = circuit.effects.get(edge)
        if effect is None:
            lines.append(line)
            continue
        lines.append(f"{line}  changes {effect.share:.0%} of {tried} "
                     f"({effect.changed:,} of {effect.tried:,})")
        example = effect.example
        if example is not None:
            if example.corrupt is not None:
                lines.append(f"      e.g. clean {_tokens(example.clean)}, corrupt "
                             f"{_tokens(example.corrupt)}:")
            else:
                lines.append(f"      e.g. input {_tokens(example.clean)} ({circuit.ablation} "
                             f"ablation):")
            lines.append(f"      output {_tokens(example.clean_output)}, with this edge "
                         f"patched {_tokens(example.patched_output)}")
    return "\n".join(lines)
