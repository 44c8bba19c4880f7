"""Differential fuzzing campaign: thousands of random programs against the evaluator.

    python scripts/fuzz_campaign.py --count 5000 --seed 0 --out fuzz_report.json

Each program must either match the evaluator on every checked input or be
refused with a clear compile error (a few, at a huge max_seq_len, within seconds).
Mismatches, crashes and slow huge-length compiles are written to the report (with
the seed that regenerates the program) and the script exits 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from rasp_compiler.verify.fuzz_campaign import campaign


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seq-len", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=100, help="programs per progress line")
    parser.add_argument("--causal", action="store_true",
                        help="decoder-only models, checked against the causal meaning")
    parser.add_argument("--out", type=Path, help="write every outcome as JSON here")
    parser.add_argument("--write", type=Path, help="put the summary into this markdown file")
    args = parser.parse_args()
    started = time.perf_counter()
    outcomes = []
    for start in range(args.seed, args.seed + args.count, args.chunk):
        size = min(args.chunk, args.seed + args.count - start)
        report = campaign(size, start, max_seq_len=args.max_seq_len, causal=args.causal)
        outcomes += report.outcomes
        print(f"seeds {start}..{start + size - 1}: {len(report.problems)} problems "
              f"({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    from rasp_compiler.verify.fuzz_campaign import FuzzReport

    full = FuzzReport(outcomes)
    print(full.summary())
    if args.out:
        args.out.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    if args.write:
        seconds = time.perf_counter() - started
        block = (
            f"Machine: {platform.platform()}, Python {platform.python_version()}.\n\n"
            f"Command: `python scripts/fuzz_campaign.py --count {args.count} --seed {args.seed} "
            f"--max-seq-len {args.max_seq_len}{' --causal' * args.causal} --write {args.write}` "
            f"({seconds:.0f} s)\n\n"
            f"```\n{full.summary()}\n```"
        )
        replace_block(args.write, "fuzz-causal" if args.causal else "fuzz", block)
    return 1 if full.problems else 0


def replace_block(path: Path, name: str, body: str) -> None:
    """Replace the text between <!-- name --> and <!-- /name --> in `path`."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    document = path.read_text() if path.exists() else f"{start}\n{end}\n"
    before, _, rest = document.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(f"{before}{start}\n{body}\n{end}{after}")


if __name__ == "__main__":
    sys.exit(main())
