"""Benchmark: how fast a compiled model is compressed, and how fast an SAE trains on it.

    python bench/bench_compress.py                 # print the results
    python bench/bench_compress.py --write docs/performance.md

sort_freq compiled at max_seq_len 10 (residual width 141) is compressed to half its width
(d = 70, seed 0, LINEAR_RECIPE: the former defaults, linear reads and uniform weights, but
for the step budget), with linear reads and with nonlinear ones: the time to reach each stated agreement with the exact model (per position,
on 1024 fixed random inputs), training steps per second after compilation, the final
accuracy against the evaluator (1000 random inputs), then a ReLU SAE (one latent per live
feature, 2000 steps) on the compressed residual at the last hook: its training time and
steps per second.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path


from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.superposition.compression import LINEAR_RECIPE, compress
from rasp_compiler.program_files import load_program
from rasp_compiler.superposition.sae import train_sae
from rasp_compiler.superposition.scoring import residual_sample, score_dictionary

from report import measured, write_block  # bench/report.py, beside this script

PROGRAM, MAX_SEQ_LEN, STEPS = "sort_freq", 10, 3000
TARGETS = (0.5, 0.8, 0.9)
SAE_STEPS = 2000


def measure(steps: int) -> str:
    spec = load_program(PROGRAM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = compile_program(spec.make(MAX_SEQ_LEN), spec.vocab, MAX_SEQ_LEN, **spec.options)
    d = model.shape.d_model // 2
    compressed = compress(model, d, seed=0, steps=steps, progress=sys.stderr.isatty(),
                          **LINEAR_RECIPE)
    info = compressed.info
    first, last = info.history[1], info.history[-1]  # the first chunk includes compiling
    rate = (last[0] - first[0]) / max(last[1] - first[1], 1e-9)
    lines = [
        f"Compressing {PROGRAM} (max_seq_len {MAX_SEQ_LEN}, residual {model.shape.d_model}) "
        f"to d = {d}: {info.steps:,} steps of batch {info.batch_size} in {info.seconds:.1f} s "
        f"(stopped: {info.stopped}), {rate:,.1f} steps/s after compiling "
        f"(first {first[0]} steps, compilation included: {first[1]:.1f} s).",
        "",
        "| agreement with the exact model | reached at step | after |",
        "|---|---|---|",
    ]
    for target in TARGETS:
        reached = info.reached(target)
        lines.append(f"| {target:.0%} | {reached[0]:,} | {reached[1]:.1f} s |" if reached
                     else f"| {target:.0%} | not reached in {info.steps:,} steps | |")
    accuracy = compressed.accuracy(samples=1000, seed=0)
    lines += ["", f"Best agreement {info.agreement:.1%}; against the evaluator: "
              f"{accuracy.position_accuracy:.1%} of positions, {accuracy.sequence_accuracy:.1%}"
              f" of whole inputs (1000 random inputs)."]
    nonlinear = compress(model, d, seed=0, steps=steps, **{**LINEAR_RECIPE, "nonlinear": True})
    first, last = nonlinear.info.history[1], nonlinear.info.history[-1]
    reached = [nonlinear.info.reached(target) for target in TARGETS]
    lines += ["", f"The same with nonlinear reads (a ReLU decoder of width {nonlinear.info.hidden} "
              f"per read): {nonlinear.info.steps:,} steps in {nonlinear.info.seconds:.1f} s, "
              f"{(last[0] - first[0]) / max(last[1] - first[1], 1e-9):,.1f} steps/s after "
              f"compiling, best agreement {nonlinear.info.agreement:.1%}; "
              + "; ".join(f"{target:.0%} at step {r[0]:,} ({r[1]:.1f} s)" if r else
                          f"{target:.0%} not reached" for target, r in zip(TARGETS, reached))
              + "."]
    hook = compressed.residual_hooks[-1]
    sample = residual_sample(compressed, hook, samples=1000, seed=0)
    scored = len(score_dictionary(compressed.W, compressed.feature_directions(), sample).features)
    started = time.perf_counter()
    sae = train_sae(sample, scored, steps=SAE_STEPS, seed=0)
    seconds = time.perf_counter() - started
    score = score_dictionary(sae, compressed.feature_directions(), sample, signed=True)
    lines += ["", f"SAE (ReLU, {scored} latents, {SAE_STEPS} steps, batch "
              f"{sae.info.batch_size}) on {len(sample):,} residual vectors at {hook}: "
              f"{seconds:.1f} s including compilation ({sae.info.seconds:.1f} s in train_sae), "
              f"{SAE_STEPS / seconds:,.0f} steps/s; of {len(score.features)} live features, a latent "
              f"fires for {score.recovered_by_firing:.0%} (F1 >= 0.9), mean max cosine "
              f"{score.mean_max_cosine:.3f} (random directions {score.chance:.3f})."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the results into this markdown file")
    parser.add_argument("--steps", type=int, default=STEPS, help="compression step budget")
    args = parser.parse_args()
    text = measure(args.steps)
    print(text)
    if args.write:
        command = "python bench/bench_compress.py --write " + str(args.write)
        if args.steps != STEPS:
            command += f" --steps {args.steps}"
        write_block(args.write, "bench:compress", f"{measured(command)}\n\n{text}")


if __name__ == "__main__":
    main()
