"""The superposition experiment: compress bundled programs to shrinking widths and measure
how accuracy and SAE recovery of the true features fall.

    python scripts/superposition_sweep.py --write docs/superposition.md

For each program (its own vocab and max_seq_len) and each width d (the full width from the
identity, then shrinking shares of it): compress (linear reads, seed 0, STEPS steps of
batch 64), measure accuracy against the evaluator on every input, sample the compressed
residual at the last hook on every input, train a ReLU SAE with as many latents as live
features there (SAE_STEPS steps, L1 SAE_L1) and score it against the true directions. Writes the
table between <!-- sweep --> and <!-- /sweep --> and the pictures to docs/images/.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import jax

from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.superposition.compression import LINEAR_RECIPE, compress
from rasp_compiler.program_files import load_program
from rasp_compiler.superposition.sweep import interference_picture, sweep, sweep_picture

PROGRAMS = ("histogram", "sort", "sort_freq", "dyck1")
SHARES = (1.0, 0.75, 0.5, 0.25)
STEPS, BATCH, SAE_STEPS, SAE_L1 = 1500, 64, 1500, 0.03
IMAGES = Path("docs/images")


def run(programs, shares, steps: int, sae_steps: int) -> tuple[str, dict]:
    rows, sweeps = [], {}
    for name in programs:
        spec = load_program(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = compile_program(spec.make(spec.max_seq_len), spec.vocab, spec.max_seq_len,
                                    **spec.options)
        width = model.shape.d_model
        dims = sorted({max(1, round(share * width)) for share in shares}, reverse=True)
        points = []
        for d in dims:
            options = {"init": "identity"} if d == width else {"steps": steps,
                                                                "batch_size": BATCH,
                                                                **LINEAR_RECIPE}
            started = time.perf_counter()
            (point,) = sweep(model, [d], sae_options={"steps": sae_steps, "l1": SAE_L1},
                             **options)
            print(f"{name} d={d}/{width}: {point.position_accuracy:.1%} positions, recovered "
                  f"{point.recovered:.0%} ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
            points.append(point)
            rows.append(
                f"| {name} | {d} / {width} | {point.position_accuracy:.1%} | "
                f"{point.sequence_accuracy:.1%} | {point.steps:,} | {point.features} | "
                f"{point.mean_max_cosine:.3f} ({point.chance:.3f}) | {point.recovered:.0%} | "
                f"{point.recovered_by_firing:.0%} | {point.reconstruction_error:.1%} | "
                f"{point.l0:.1f} |")
        sweeps[name] = points
    header = [
        "| program | d / d_model | positions right | inputs right | steps | live features "
        "| SAE mean max cosine (random) | recovered (cos >= 0.9) | recovered by firing "
        "(F1 >= 0.9) | SAE error | SAE L0 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows), sweeps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the table into this markdown file")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--sae-steps", type=int, default=SAE_STEPS)
    parser.add_argument("programs", nargs="*", default=PROGRAMS)
    args = parser.parse_args()
    started = time.perf_counter()
    table, sweeps = run(args.programs, SHARES, args.steps, args.sae_steps)
    print(table)
    if not args.write:
        return
    IMAGES.mkdir(parents=True, exist_ok=True)
    sweep_picture(sweeps, IMAGES / "superposition_sweep.png")
    spec = load_program("sort_freq")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = compile_program(spec.make(spec.max_seq_len), spec.vocab, spec.max_seq_len)
    half = compress(model, model.shape.d_model // 2, steps=args.steps, batch_size=BATCH,
                    **LINEAR_RECIPE)
    interference_picture(half, IMAGES / "superposition_interference.png")
    device = jax.devices()[0]
    command = f"python scripts/superposition_sweep.py --write {args.write}"
    if (args.steps, args.sae_steps) != (STEPS, SAE_STEPS):
        command += f" --steps {args.steps} --sae-steps {args.sae_steps}"
    block = (f"Machine: {platform.platform()}, Python {platform.python_version()}, jax "
             f"{jax.__version__} on {device.platform}. Command: `{command}` "
             f"({time.perf_counter() - started:.0f} s).\n\n{table}")
    start, end = "<!-- sweep -->", "<!-- /sweep -->"
    document = args.write.read_text()
    before, _, rest = document.partition(start)
    _, _, after = rest.partition(end)
    args.write.write_text(f"{before}{start}\n{block}\n{end}{after}")


if __name__ == "__main__":
    main()
