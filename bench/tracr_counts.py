"""tracr's own parameter counts for its lib programs, for the comparison in bench_compile.py.

    python bench/tracr_counts.py          # needs tracr importable (not a dependency)

Compiles each of tracr's lib programs that rasp_compiler bundles with tracr's
`compile_rasp_to_model` at max_seq_len 10, with the bundled program's vocab, and
writes bench/tracr_counts.json: layers, parameters and non-zero parameters. It was
run with the `tracr-pypi` 1.0.0 package (plus `chex`) installed into a separate
folder on PYTHONPATH; bench_compile.py only reads the JSON.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

MAX_SEQ_LEN = 10
OUT = Path(__file__).with_name("tracr_counts.json")


def programs(lib, rasp):
    """Bundled name -> tracr's lib call that the bundled program makes (programs/*.py)."""
    return {
        "length": lambda: lib.make_length(),
        "reverse": lambda: lib.make_reverse(rasp.tokens),
        "histogram": lambda: lib.make_hist(),
        "sort_unique": lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
        "sort": lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=MAX_SEQ_LEN,
                                      min_key=1),
        "sort_freq": lambda: lib.make_sort_freq(max_seq_len=MAX_SEQ_LEN),
        "frac_prevs": lambda: lib.make_frac_prevs(rasp.tokens == "x"),
        "pair_balance": lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
        "shuffle_dyck1": lambda: lib.make_shuffle_dyck(pairs=["()"]),
        "shuffle_dyck2": lambda: lib.make_shuffle_dyck(pairs=["()", "{}"]),
        "shuffle_dyck3": lambda: lib.make_shuffle_dyck(pairs=["()", "{}", "[]"]),
        "shift_by": lambda: lib.shift_by(2, rasp.tokens),
        "detect_pattern": lambda: lib.detect_pattern(rasp.tokens, "abc"),
        "count": lambda: lib.make_count(rasp.tokens, "a"),
        "count_less_freq": lambda: lib.make_count_less_freq(2),
    }


def main() -> None:
    import jax
    import numpy as np
    from tracr.compiler import compiling, lib
    from tracr.rasp import rasp

    from rasp_compiler.program_files import load_program

    warnings.simplefilter("ignore")
    counts = {}
    for name, make in programs(lib, rasp).items():
        spec = load_program(name)
        model = compiling.compile_rasp_to_model(make(), vocab=set(spec.vocab),
                                                max_seq_len=MAX_SEQ_LEN, compiler_bos="BOS",
                                                compiler_pad="PAD")
        leaves = jax.tree_util.tree_leaves(model.params)
        counts[name] = {
            "layers": model.model_config.num_layers,
            "params": int(sum(x.size for x in leaves)),
            "nonzero": int(sum(np.count_nonzero(np.asarray(x)) for x in leaves)),
        }
        print(name, counts[name], file=sys.stderr)
    OUT.write_text(json.dumps({"tracr": "tracr-pypi 1.0.0", "max_seq_len": MAX_SEQ_LEN,
                               "programs": counts}, indent=1) + "\n")


if __name__ == "__main__":
    main()
