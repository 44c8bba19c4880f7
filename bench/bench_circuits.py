"""Benchmark: ground-truth circuits of the bundled programs, and two discovery methods scored on them.

    python bench/bench_circuits.py                 # print the tables
    python bench/bench_circuits.py --write docs/performance.md
    python bench/bench_circuits.py --no-compressed # skip the compressed models

Per bundled program, compiled at its own vocab and max_seq_len, at head granularity:
the candidate edges (every edge the layer order allows), the structural circuit's edges,
the functional circuit's edges (resample ablation on the default pairs: every pair when
there are at most 2,048, else 256 random same-length pairs, seed 0) and the time to find
it; then activation patching and edge attribution patching, each run on an independent
sample (the default pairs with seed 1: the same pairs where they are all pairs) and
scored by ROC AUC against the functional circuit, over every candidate edge and over
the structural edges only (where every edge is one the weights allow, so a method must
tell the edges that act from those that could), with the time each took (EAP's includes
its JAX compilation, once per model shape).

Compressed models (`rasp_compiler.compress`, linear reads, d = residual // 2, seed 0,
COMPRESS_STEPS steps) of the COMPRESSED programs: the same columns for the compressed
model (its own structural and functional circuits: superposition makes every edge
structural and many functional), plus each method's AUC against the exact model's
functional circuit (the program's circuit, as a discovery method run on the compressed
model should find it).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path


from rasp_compiler.circuits import (
    activation_patching,
    circuit,
    edge_attribution_patching,
    make_pairs,
    score_circuit,
)
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.superposition.compression import LINEAR_RECIPE, compress
from rasp_compiler.program_files import load_program, program_names

from report import measured, write_block  # bench/report.py, beside this script

COMPRESSED = ["reverse", "frac_prevs", "histogram", "sort_unique", "sort_ties",
              "count_less_freq", "detect_pattern", "shift_by"]
COMPRESS_STEPS = 2000
METHOD_SEED = 1


def _auc(scores, truth, among: str = "all") -> str:
    value = score_circuit(scores, truth, among=among).roc_auc
    return "-" if math.isnan(value) else f"{value:.3f}"


def _aucs(scores, truth) -> str:
    """AUC over every candidate edge / over the structural edges only."""
    return f"{_auc(scores, truth)} / {_auc(scores, truth, 'structural')}"


def measure(name: str) -> tuple[object, str]:
    spec = load_program(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = compile_program(spec.make(), spec.vocab, spec.max_seq_len, **spec.options)
    functional = model.circuit(functional=True)
    pairs = make_pairs(model, samples=None, seed=METHOD_SEED)
    patching = activation_patching(model, pairs=pairs)
    attribution = edge_attribution_patching(model, pairs=pairs)
    heads = [layer.heads for layer in model.shape.layers]
    row = (f"| {name} | {model.depth} | {heads} | {len(functional.candidates)} | "
           f"{len(functional.structural_edges)} | {len(functional.edges)} | "
           f"{_pairs(functional)} | {functional.seconds:.2f} s | "
           f"{_aucs(patching, functional)} ({patching.seconds:.2f} s) | "
           f"{_aucs(attribution, functional)} ({attribution.seconds:.2f} s) |")
    return (model, functional), row


def measure_compressed(name: str, model, exact) -> str:
    d = model.shape.d_model // 2
    started = time.perf_counter()
    compressed = compress(model, d, seed=0, steps=COMPRESS_STEPS, **LINEAR_RECIPE)
    trained = time.perf_counter() - started
    functional = circuit(compressed, functional=True)
    pairs = make_pairs(model, samples=None, seed=METHOD_SEED)
    patching = activation_patching(compressed, pairs=pairs)
    attribution = edge_attribution_patching(compressed, pairs=pairs)
    return (f"| {name} | {model.shape.d_model} -> {d} | "
            f"{compressed.info.agreement:.1%} ({trained:.0f} s) | {len(functional.candidates)} | "
            f"{len(functional.structural_edges)} | {len(functional.edges)} | "
            f"{functional.seconds:.2f} s | "
            f"{_auc(patching, functional)} / {_auc(patching, exact)} | "
            f"{_auc(attribution, functional)} / {_auc(attribution, exact)} |")


def _pairs(functional) -> str:
    pairs = functional.pairs
    return f"all {len(pairs):,}" if pairs.how == "every pair" else f"{len(pairs):,} sampled"


def run(compressed: bool) -> str:
    started = time.perf_counter()
    lines = [
        "| program | layers | heads | candidate edges | structural | functional | pairs | "
        "functional in | activation patching AUC: all / structural (time) | "
        "EAP AUC: all / structural (time) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    exact = {}
    for name in program_names():
        (model, functional), row = measure(name)
        exact[name] = (model, functional)
        print(row, file=sys.stderr, flush=True)
        lines.append(row)
    if compressed:
        lines += [
            "",
            f"Compressed models (linear reads, seed 0, {COMPRESS_STEPS:,} steps; AUC against "
            f"the compressed model's own functional circuit / against the exact model's):",
            "",
            "| program | residual | agreement (training) | candidate edges | structural | "
            "functional | functional in | activation patching AUC | EAP AUC |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name in COMPRESSED:
            row = measure_compressed(name, *exact[name])
            print(row, file=sys.stderr, flush=True)
            lines.append(row)
    lines += ["", f"Total {time.perf_counter() - started:.0f} s."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the results into this markdown file")
    parser.add_argument("--no-compressed", action="store_true",
                        help="skip the compressed models")
    args = parser.parse_args()
    text = run(not args.no_compressed)
    print(text)
    if args.write:
        command = "python bench/bench_circuits.py --write " + str(args.write)
        if args.no_compressed:
            command += " --no-compressed"
        write_block(args.write, "bench:circuits", f"{measured(command)}\n\n{text}")


if __name__ == "__main__":
    main()
