"""Benchmark: superposed models that still compute their program (issue 26).

    python bench/bench_superposition.py                       # print the table
    python bench/bench_superposition.py --write docs/superposition.md

For each of the six programs below (compiled with its bundled vocab, max_seq_len and
options, as `rasp-compiler` does), with `compress`'s defaults and seed 0:

- at d = d_model // 2 (rounded down): the accuracy against the evaluator (every input when
  there are at most EXHAUSTIVE_LIMIT, else 2,000 random inputs drawn with seed 0), the
  training time and steps;
- the frontier: the smallest d whose model gets at least 99% of positions and 95% of whole
  inputs right, found by bisection (each probe one seed-0 run; bisection assumes that a
  width that meets the targets has every larger width meet them too, which a single run
  per width need not, so the number is the frontier of these runs, not a proof);
- the accuracy at d = d_model // 4 (rounded down, at least 1);
- at d_model // 2, a ReLU SAE (L1 0.03) and a TopK SAE (k = the mean number of active
  features per position, rounded up) at the last residual hook, with as many latents as
  live features there, each SAE_STEPS steps: how many of the live features each recovers
  by direction (a latent within cosine 0.9) and by firing (a latent firing where the
  feature is active with F1 >= 0.9).

Writes the table between <!-- bench:superposition --> and <!-- /bench:superposition -->
and the picture of accuracy against d to docs/images/superposition_frontier.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rasp_compiler.compiler import compile_program
from rasp_compiler.superposition.compression import compress
from rasp_compiler.superposition.objective import EXHAUSTIVE_LIMIT, input_count
from rasp_compiler.program_files import load_program
from rasp_compiler.superposition.sae import train_sae
from rasp_compiler.superposition.scoring import ACTIVE, residual_sample, score_dictionary

from report import machine, write_block  # bench/report.py, beside this script

PROGRAMS = ("sort_unique", "sort_freq", "histogram", "reverse", "dyck1", "frac_prevs")
POSITIONS, INPUTS = 0.99, 0.95  # the targets
SAMPLES = 2000  # random inputs to check when the input space is larger than EXHAUSTIVE_LIMIT
SAE_STEPS, SAE_L1 = 1500, 0.03
PICTURE = Path("docs/images/superposition_frontier.png")
MARKER = "bench:superposition"


@dataclass
class Probe:
    d: int
    positions: float
    inputs: float
    seconds: float
    steps: int
    stopped: str

    @property
    def meets(self) -> bool:
        return self.positions >= POSITIONS and self.inputs >= INPUTS


def compiled(name: str):
    spec = load_program(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile_program(spec.make(spec.max_seq_len), spec.vocab, spec.max_seq_len,
                               **spec.options)


def accuracy(compressed):
    """Against the evaluator: every input when the space is small, else SAMPLES seeded."""
    if input_count(len(compressed.vocab), compressed.max_seq_len) <= EXHAUSTIVE_LIMIT:
        return compressed.accuracy(exhaustive_up_to=compressed.max_seq_len)
    return compressed.accuracy(samples=SAMPLES, seed=0)


def probe(model, d: int, cache: dict, name: str):
    """One compression (defaults, seed 0) at width d and its accuracy; cached per d."""
    if d not in cache:
        started = time.perf_counter()
        compressed = compress(model, d, seed=0)
        seconds = time.perf_counter() - started
        measured = accuracy(compressed)
        cache[d] = (Probe(d, measured.position_accuracy, measured.sequence_accuracy, seconds,
                          compressed.info.steps, compressed.info.stopped), compressed)
        p = cache[d][0]
        print(f"{name} d={d}/{model.shape.d_model}: {p.positions:.2%} positions, "
              f"{p.inputs:.2%} inputs, {p.seconds:.0f} s ({p.steps} steps, {p.stopped})",
              file=sys.stderr, flush=True)
    return cache[d]


def frontier(model, cache: dict, name: str) -> int | None:
    """The smallest d meeting the targets, by bisection from d_model // 2 (downwards when
    it meets them, upwards to d_model when not); None when not even d_model does."""
    width = model.shape.d_model
    half = width // 2
    if probe(model, half, cache, name)[0].meets:
        low, high = 0, half  # low fails (d = 0 is no model), high meets
    else:
        low, high = half, width
        if not probe(model, width, cache, name)[0].meets:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        if probe(model, middle, cache, name)[0].meets:
            high = middle
        else:
            low = middle
    return high


def sae_counts(compressed) -> dict:
    """Live features at the last residual hook and how many a ReLU and a TopK SAE recover."""
    hook = compressed.residual_hooks[-1]
    sample = residual_sample(compressed, hook)  # every input when few, else 1,000 (seed 0)
    truth = compressed.feature_directions()
    live = score_dictionary(compressed.W, truth, sample).features
    labels = list(sample.labels)
    columns = [labels.index(f.label) for f in live]
    k = max(1, math.ceil(float(np.mean(np.sum(np.abs(sample.true[:, columns]) > ACTIVE,
                                               axis=1)))))
    out = {"hook": hook, "live": len(live), "k": k, "rows": len(sample)}
    for kind, options in (("relu", {"l1": SAE_L1}), ("topk", {"k": k})):
        sae = train_sae(sample, len(live), kind=kind, steps=SAE_STEPS, seed=0, **options)
        score = score_dictionary(sae, truth, sample, signed=True)
        out[kind] = (sum(f.recovered for f in score.features),
                     sum((f.firing_f1 or 0.0) >= score.threshold for f in score.features))
    return out


def measure(programs) -> tuple[str, dict]:
    rows, curves = [], {}
    for name in programs:
        model = compiled(name)
        width = model.shape.d_model
        cache: dict = {}
        smallest = frontier(model, cache, name)
        half, quarter = width // 2, max(1, width // 4)
        at_half, compressed = probe(model, half, cache, name)
        at_quarter = probe(model, quarter, cache, name)[0]
        counts = sae_counts(compressed)
        print(f"{name}: SAEs {counts}", file=sys.stderr, flush=True)
        curves[name] = sorted((p.d / width, p.positions, p.inputs) for p, _ in cache.values())
        live = counts["live"]
        rows.append(
            f"| {name} | {width} | {half} | {at_half.positions:.2%} | {at_half.inputs:.2%} | "
            f"{at_half.seconds:.0f} s ({at_half.steps:,} steps) | "
            f"{smallest if smallest is not None else 'none'} | "
            f"{quarter}: {at_quarter.positions:.2%} / {at_quarter.inputs:.2%} | "
            f"{counts['relu'][0]} / {counts['relu'][1]} of {live} | "
            f"{counts['topk'][0]} / {counts['topk'][1]} of {live} (k={counts['k']}) |")
    header = [
        "| program | d_model | d = d_model // 2 | positions right | inputs right | time "
        "| smallest d at 99% / 95% | d_model // 4: positions / inputs | ReLU SAE: by "
        "direction / by firing | TopK SAE: by direction / by firing |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows), curves


def picture(curves: dict, path: Path) -> Path:
    """Accuracy against d / d_model, one colour per program (solid: positions, dotted:
    whole inputs), the targets as grey lines."""
    from rasp_compiler.diagnostics.pictures import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, points in curves.items():
        ratio = [p[0] for p in points]
        line = ax.plot(ratio, [p[1] for p in points], marker="o", label=name)[0]
        ax.plot(ratio, [p[2] for p in points], marker=".", linestyle=":",
                color=line.get_color())
    for level in (POSITIONS, INPUTS):
        ax.axhline(level, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("d / d_model (every width the bisection tried)")
    ax.set_ylabel("right against the evaluator")
    ax.set_title("compress defaults, seed 0 (solid: positions, dotted: whole inputs)",
                 fontsize=9)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the table into this markdown file "
                        "(between the bench:superposition markers) and draw the picture")
    parser.add_argument("programs", nargs="*", default=PROGRAMS,
                        help=f"bundled programs (default: {' '.join(PROGRAMS)})")
    args = parser.parse_args()
    if args.write and not args.write.is_file():
        parser.error(f"--write {args.write}: no such file; name the markdown page to update")
    started = time.perf_counter()
    table, curves = measure(args.programs)
    print(table)
    if not args.write:
        return
    picture(curves, PICTURE)
    command = "python bench/bench_superposition.py --write " + str(args.write)
    if tuple(args.programs) != PROGRAMS:
        command += " " + " ".join(args.programs)
    block = (f"Machine: {machine()}. Command: `{command}` "
             f"({time.perf_counter() - started:.0f} s in all).\n\n{table}")
    write_block(args.write, MARKER, block)


if __name__ == "__main__":
    main()
