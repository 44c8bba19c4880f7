"""Benchmark: how compiled size and time grow with max_seq_len (issue 16).

    python bench/bench_scaling.py                 # print the table
    python bench/bench_scaling.py --write docs/performance.md

For reverse, histogram, sort_unique, sort_freq, frac_prevs and dyck1 (each with its
own vocab) at max_seq_len 16, 64, 256 and 1,024 (sort_freq also at 128, the issue's
target for it): compile time, layers, residual
width, widest MLP, parameters (dense and non-zero), the forward time of one jitted
batch of BATCH inputs of full length (median of 3 after a warm-up), and exactness
against the evaluator on sampled inputs (SAMPLES inputs: half of full length, the
rest of random lengths). Each compile runs in its own process under a time limit,
and with max_parameters=PARAMETER_LIMIT, so a program that is refused or too big
at a length is recorded as "refused: <reason>" or "skipped: ..." instead of
hanging. The fitted growth exponent is the slope of log(parameters) against
log(max_seq_len) over the lengths that compiled; --write also draws the log-log
plot as docs/images/scaling.svg.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from report import machine, write_block  # bench/report.py, beside this script

PROGRAMS = ["reverse", "histogram", "sort_unique", "sort_freq", "frac_prevs", "dyck1"]
LENGTHS = [16, 64, 256, 1024]
EXTRA_LENGTHS = {"sort_freq": [128]}  # issue 16's target: sort_freq compiled at 128
BATCH = 8
SAMPLES = 6
PARAMETER_LIMIT = 60_000_000
TIME_LIMIT_S = 300
MARKER = "bench:scaling"
PLOT = Path("docs/images/scaling.svg")

CHILD = r"""
import json, random, statistics, sys, time, warnings
warnings.simplefilter("ignore")
from bench_compile import forward_seconds
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import ModelTooLargeError, RaspCompilerError
from rasp_compiler.program_files import load_program
from rasp_compiler.verify.checker import verify


name, n, limit, batch, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
spec = load_program(name)
start = time.perf_counter()
try:
    model = compile_program(spec.make(n), spec.vocab, n, max_parameters=limit, **spec.options)
except ModelTooLargeError as error:
    print(json.dumps({"status": f"skipped: over {limit:,} parameters ({error.parameters:,})"}))
    sys.exit(0)
except RaspCompilerError as error:
    print(json.dumps({"status": "refused: " + str(error).split(";")[0][:160]}))
    sys.exit(0)
compile_s = time.perf_counter() - start
times = forward_seconds(model, batch, n, repeats=3)
draw = random.Random(1)
inputs = [[draw.choice(spec.vocab) for _ in range(n)] for _ in range(samples // 2)]
inputs += [[draw.choice(spec.vocab) for _ in range(draw.randint(1, n))]
           for _ in range(samples - samples // 2)]
report = verify(spec.make(n), model, inputs=inputs)
print(json.dumps({
    "status": "ok", "compile_s": compile_s, "layers": model.depth,
    "residual": model.layout.width,
    "widest_mlp": max((layer.mlp_hidden for layer in model.info.layers), default=0),
    "params": model.parameter_count(), "nonzero": model.parameter_count(nonzero=True),
    "forward_ms": 1000 * statistics.median(times),
    "exact": report.ok, "checked": report.inputs_checked,
}))
"""


def measure(name: str, n: int) -> dict:
    command = [sys.executable, "-c", CHILD, name, str(n), str(PARAMETER_LIMIT), str(BATCH),
               str(SAMPLES)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIME_LIMIT_S,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(Path(__file__).parents[1]), str(Path(__file__).parent)])})
    except subprocess.TimeoutExpired:
        return {"program": name, "n": n, "status": f"skipped: over {TIME_LIMIT_S} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"program": name, "n": n, "status": f"failed: {tail[:160]}"}
    return {"program": name, "n": n, **json.loads(lines[-1])}


def exponent(rows: list[dict], key: str) -> float | None:
    """Least-squares slope of log(key) against log(max_seq_len)."""
    points = [(math.log(r["n"]), math.log(r[key])) for r in rows if r["status"] == "ok"]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return (sum((x - mx) * (y - my) for x, y in points)
            / sum((x - mx) ** 2 for x, _ in points))


def table(rows: list[dict]) -> str:
    lines = [
        "| program | max_seq_len | compile | layers | residual | widest MLP | parameters | "
        "non-zero | forward (8 x N) | exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['program']} | {r['n']:,} | {r['status']} | | | | | | | |")
            continue
        lines.append(
            f"| {r['program']} | {r['n']:,} | {r['compile_s']:.2f} s | {r['layers']} | "
            f"{r['residual']:,} | {r['widest_mlp']:,} | {r['params']:,} | {r['nonzero']:,} | "
            f"{r['forward_ms']:.1f} ms | {'yes' if r['exact'] else 'NO'} ({r['checked']}) |")
    lines += ["", "| program | growth exponent: parameters | non-zero | lengths fitted |",
              "|---|---|---|---|"]
    for name in PROGRAMS:
        mine = [r for r in rows if r["program"] == name]
        dense, sparse = exponent(mine, "params"), exponent(mine, "nonzero")
        fitted = [f"{r['n']:,}" for r in mine if r["status"] == "ok"]
        lines.append(f"| {name} | {'-' if dense is None else f'{dense:.2f}'} | "
                     f"{'-' if sparse is None else f'{sparse:.2f}'} | {', '.join(fitted)} |")
    return "\n".join(lines)


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def svg(rows: list[dict]) -> str:
    """A log-log plot of parameters against max_seq_len, one line per program."""
    ok = [r for r in rows if r["status"] == "ok"]
    width, height, left, bottom, top, right = 640, 420, 70, 50, 20, 150
    lo_n, hi_n = math.log10(min(LENGTHS)), math.log10(max(LENGTHS))
    lo_p = math.floor(math.log10(min(r["params"] for r in ok)))
    hi_p = math.ceil(math.log10(max(r["params"] for r in ok)))

    def x(n: float) -> float:
        return left + (math.log10(n) - lo_n) / (hi_n - lo_n) * (width - left - right)

    def y(p: float) -> float:
        return height - bottom - (math.log10(p) - lo_p) / (hi_p - lo_p) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for n in LENGTHS:
        out.append(f'<line x1="{x(n):.1f}" y1="{top}" x2="{x(n):.1f}" y2="{height - bottom}" '
                   f'stroke="#ddd"/><text x="{x(n):.1f}" y="{height - bottom + 16}" '
                   f'text-anchor="middle">{n}</text>')
    for e in range(lo_p, hi_p + 1):
        out.append(f'<line x1="{left}" y1="{y(10 ** e):.1f}" x2="{width - right}" '
                   f'y2="{y(10 ** e):.1f}" stroke="#ddd"/><text x="{left - 6}" '
                   f'y="{y(10 ** e) + 4:.1f}" text-anchor="end">1e{e}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" '
               f'text-anchor="middle">max_seq_len</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + height - bottom) / 2})">parameters</text>')
    for i, name in enumerate(PROGRAMS):
        points = [(x(r["n"]), y(r["params"])) for r in ok if r["program"] == name]
        colour = COLOURS[i % len(COLOURS)]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="2"/>')
            out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>'
                    for px, py in points]
        out.append(f'<text x="{width - right + 12}" y="{top + 16 + 18 * i}" '
                   f'fill="{colour}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="replace the scaling block of this file")
    parser.add_argument("--programs", nargs="*", default=PROGRAMS)
    args = parser.parse_args()
    rows = []
    for name in args.programs:
        for n in sorted(LENGTHS + EXTRA_LENGTHS.get(name, [])):
            row = measure(name, n)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    body = table(rows)
    print(body)
    if args.write:
        PLOT.write_text(svg(rows))
        block = (f"Machine: {machine(with_jax=False)}.\n\nCommand: `python bench/bench_scaling.py --write "
                 f"{args.write}`\n\n{body}\n\n![parameters against max_seq_len, log-log]"
                 f"(images/{PLOT.name})")
        write_block(args.write, MARKER, block)


if __name__ == "__main__":
    main()
