"""Benchmark: size, compile time and forward time of the bundled programs.

    python bench/bench_compile.py                 # print the table
    python bench/bench_compile.py --write docs/performance.md

Per program, compiled at max_seq_len 10 with its own vocab: layers and the depth
lower bound, heads, residual width, MLP widths, parameters (all / non-zero),
tracr's layers and non-zero parameters for the programs of tracr's lib (from
bench/tracr_counts.json, written by bench/tracr_counts.py), cold compile (a new
Python process: imports plus compile), warm compile (median of 3 in one
process), and the forward time of one jitted batch of 1024 inputs of 10 tokens
(median of 5 after a warm-up run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.program_files import load_program

from report import measured, write_block  # bench/report.py, beside this script

PROGRAMS = [
    "length", "reverse", "histogram", "sort_unique", "sort", "sort_freq", "frac_prevs",
    "pair_balance", "shuffle_dyck1", "shuffle_dyck2", "shuffle_dyck3", "shift_by",
    "detect_pattern", "count", "count_less_freq", "sort_ties", "most_freq", "dyck1", "dyck2",
]
MAX_SEQ_LEN = 10
BATCH = 1024
TRACR_COUNTS = Path(__file__).with_name("tracr_counts.json")

COLD_SCRIPT = """
import time, warnings
start = time.perf_counter()
warnings.simplefilter("ignore")
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.program_files import load_program

spec = load_program({name!r})
compile_program(spec.make({n}), spec.vocab, {n}, **spec.options)
print(time.perf_counter() - start)
"""



def forward_seconds(model, batch: int, n_tokens: int, repeats: int) -> list[float]:
    """Seconds per jitted forward of `batch` random inputs of `n_tokens` tokens, warm
    (compiled by a first call), `repeats` times. Also used by bench_scaling.py."""
    ids = np.random.default_rng(0).integers(0, len(model.vocab), size=(batch, n_tokens))
    packed, mask = model.runtime.pack(model.encode_ids(ids),
                                      model.runtime.bucket_length(n_tokens), batch)
    forward = model.runtime.jit(f"slice:{model.output}", model.readouts[model.output])
    forward(model.params, packed, mask).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(model.params, packed, mask).block_until_ready()
        times.append(time.perf_counter() - start)
    return times

def measure(name: str) -> dict:
    spec = load_program(name)
    warm = []
    for _ in range(3):
        start = time.perf_counter()
        model = compile_program(spec.make(MAX_SEQ_LEN), spec.vocab, MAX_SEQ_LEN, **spec.options)
        warm.append(time.perf_counter() - start)
    cold = float(subprocess.run(
        [sys.executable, "-c", COLD_SCRIPT.format(name=name, n=MAX_SEQ_LEN)],
        check=True, capture_output=True, text=True,
    ).stdout.strip())
    times = forward_seconds(model, BATCH, MAX_SEQ_LEN, repeats=5)
    return {
        "program": name,
        "layers": model.depth,
        "lower_bound": model.lower_bound,
        "heads": [len(layer.heads) for layer in model.info.layers],
        "residual": model.layout.width,
        "mlp_widths": [layer.mlp_hidden for layer in model.info.layers],
        "params": model.parameter_count(),
        "nonzero": model.parameter_count(nonzero=True),
        "cold_s": cold,
        "warm_s": statistics.median(warm),
        "forward_ms": 1000 * statistics.median(times),
    }


def table(rows: list[dict]) -> str:
    tracr = json.loads(TRACR_COUNTS.read_text())["programs"] if TRACR_COUNTS.exists() else {}
    lines = [
        "| program | layers | bound | heads | residual | MLP widths | params | non-zero | "
        "tracr: layers, non-zero | cold compile | warm compile | forward (1024 x 10) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        theirs = tracr.get(r["program"])
        versus = f"{theirs['layers']}, {theirs['nonzero']:,}" if theirs else "-"
        lines.append(
            f"| {r['program']} | {r['layers']} | {r['lower_bound']} | {r['heads']} | "
            f"{r['residual']} | {r['mlp_widths']} | {r['params']:,} | {r['nonzero']:,} | "
            f"{versus} | {r['cold_s']:.2f} s | {1000 * r['warm_s']:.0f} ms | "
            f"{r['forward_ms']:.1f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the results into this markdown file")
    parser.add_argument("--json", type=Path, help="also dump the raw numbers as JSON")
    parser.add_argument("programs", nargs="*", default=PROGRAMS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = [measure(name) for name in args.programs]
    text = table(rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.write:
        command = f"python bench/bench_compile.py --write {args.write}"
        write_block(args.write, "bench:compile", f"{measured(command)}\n\n{text}")


if __name__ == "__main__":
    main()
