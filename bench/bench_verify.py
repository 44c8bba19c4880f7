"""Benchmark: how fast `verify` checks a compiled model against the evaluator.

    python bench/bench_verify.py                 # print the tables
    python bench/bench_verify.py --write docs/performance.md

Three measurements, each a `verify` call on the jitted model (backend "jax"):
1. reverse, vocab {a, b, c}, compiled at max_seq_len 10, exhaustively up to 9
   tokens (29,523 inputs): the first call (XLA compiles the forward's shapes)
   and the median of 3 more.
2. Every program of tracr's lib at max_seq_len 10 with its own vocab: 100,000
   random inputs of 1..10 tokens, after one unmeasured call on as many other
   inputs (so nothing compiles in the measured one): inputs per second, and the
   time the forward alone takes on the same inputs and batches: the sparse
   forward verify runs (sparse_forward.py) and the model's dense one.
3. A million-input exhaustive check: reverse over {a, b, c, d}, every input of up
   to 10 tokens (1,398,100 inputs), one call, XLA compilation included.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.program_files import load_program
from rasp_compiler.model.sparse_forward import build_sparse_forward
from rasp_compiler.verify.checker import _forward_batch, verify
from rasp_compiler.verify.inputs import random_chunks
from rasp_compiler.verify.inputs import DEFAULT_CHUNK

from report import measured, write_block  # bench/report.py, beside this script

TRACR_LIB = [
    "length", "reverse", "histogram", "sort_unique", "sort", "sort_freq", "frac_prevs",
    "pair_balance", "shuffle_dyck1", "shuffle_dyck2", "shuffle_dyck3", "shift_by",
    "detect_pattern", "count", "count_less_freq",
]
MAX_SEQ_LEN = 10
SAMPLES = 100_000


def timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def reverse_exhaustive() -> dict:
    program = lib.make_reverse(rasp.tokens)
    model = compile_program(program, ["a", "b", "c"], MAX_SEQ_LEN)
    report, first = timed(lambda: verify(program, model, exhaustive_up_to=9))
    assert report.ok and report.inputs_checked == 29_523, report
    warm = [timed(lambda: verify(program, model, exhaustive_up_to=9))[1] for _ in range(3)]
    return {"inputs": report.inputs_checked, "first_s": first, "warm_s": statistics.median(warm)}


def throughput(name: str) -> dict:
    spec = load_program(name)
    program = spec.make(MAX_SEQ_LEN)
    model = compile_program(program, spec.vocab, MAX_SEQ_LEN, **spec.options)
    verify(program, model, samples=SAMPLES, seed=1)  # compiles every shape the next call uses
    report, seconds = timed(lambda: verify(program, model, samples=SAMPLES, seed=2))
    assert report.mismatch_count == 0, report
    # The forwards alone on the same inputs and batches (each compiled first).
    readout = model.readouts[model.output]
    batch = _forward_batch(SAMPLES, DEFAULT_CHUNK, MAX_SEQ_LEN)
    chunks = list(random_chunks(len(spec.vocab), MAX_SEQ_LEN, SAMPLES, 2, DEFAULT_CHUNK, 0))

    def forward(sparse: bool) -> float:
        planned = model.runtime.sparse_jit(model.params, readout) if sparse else None
        run = lambda: [model.runtime.readout_columns(
            model.params, [block.ids for block in blocks], readout, batch=batch,
            sparse_forward=planned) for blocks in chunks]
        run()
        return timed(run)[1]

    plan = build_sparse_forward(model.params, model.shape, readout.indices)
    return {"program": name, "inputs": SAMPLES, "undefined": report.undefined,
            "seconds": seconds, "rate": SAMPLES / seconds, "sparse_s": forward(True),
            "dense_s": forward(False), "terms": plan.terms,
            "weights": sum(int(np.size(w)) for name, module in model.params.items()
                           if not name.endswith("_embed") for w in module.values())}


def million() -> dict:
    program = lib.make_reverse(rasp.tokens)
    model = compile_program(program, ["a", "b", "c", "d"], MAX_SEQ_LEN)
    report, seconds = timed(lambda: verify(program, model, exhaustive_up_to=10))
    assert report.ok, report
    return {"inputs": report.inputs_checked, "positions": report.positions_checked,
            "seconds": seconds}


def text(reverse: dict, rates: list[dict], big: dict) -> str:
    lines = [
        f"Exhaustive verify of reverse (vocab 3, lengths 1..9, {reverse['inputs']:,} inputs): "
        f"{reverse['first_s']:.2f} s on the first call (XLA compilation included), "
        f"{reverse['warm_s']:.2f} s warm ({reverse['inputs'] / reverse['warm_s']:,.0f} inputs/s).",
        "",
        f"A million-input exhaustive check (reverse, vocab 4, lengths 1..10): "
        f"{big['inputs']:,} inputs ({big['positions']:,} positions) in {big['seconds']:.1f} s "
        f"({big['inputs'] / big['seconds']:,.0f} inputs/s), XLA compilation included.",
        "",
        f"Throughput on {SAMPLES:,} random inputs of 1..{MAX_SEQ_LEN} tokens (warm):",
        "",
        "| program | inputs/s | seconds | sparse forward alone | dense forward alone | "
        "multiply-adds per position, sparse / dense | undefined |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rates:
        lines.append(f"| {r['program']} | {r['rate']:,.0f} | {r['seconds']:.2f} | "
                     f"{r['sparse_s']:.2f} s | {r['dense_s']:.2f} s | "
                     f"{r['terms']:,} / {r['weights']:,} | {r['undefined']:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the results into this markdown file")
    parser.add_argument("programs", nargs="*", default=TRACR_LIB)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    reverse = reverse_exhaustive()
    rates = [throughput(name) for name in args.programs]
    big = million()
    body = text(reverse, rates, big)
    print(body)
    if args.write:
        command = f"python bench/bench_verify.py --write {args.write}"
        write_block(args.write, "bench:verify", f"{measured(command)}\n\n{body}")


if __name__ == "__main__":
    main()
