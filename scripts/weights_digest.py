"""A digest of every case-table model's weights, to show a refactor changed none of them.

    python scripts/weights_digest.py before.json     # on the old commit
    python scripts/weights_digest.py after.json      # on the new one
    cmp before.json after.json                       # silent: byte-identical weights

Compiles every case of tests/cases.py (constructs, selectors, bundled programs), causal and
not, and writes the sha256 of all its parameters (names, shapes, dtypes and bytes), or the
refusal's class for a program the compiler refuses. Run from the repository's root.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings

import numpy as np

sys.path[:0] = [".", "tests"]  # this checkout's package, and the case table

import cases  # noqa: E402

from rasp_compiler import compile_program  # noqa: E402
from rasp_compiler.errors import RaspCompilerError  # noqa: E402


def digests() -> dict[str, str]:
    out = {}
    for case in cases.CASES:
        for causal in (False, True):
            key = f"{case.name}/{causal}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    model = compile_program(case.factory(case.max_seq_len), case.vocab,
                                            case.max_seq_len, causal=causal, **case.options)
                except RaspCompilerError as exc:
                    out[key] = f"refused {type(exc).__name__}"
                    continue
            digest = hashlib.sha256()
            for scope in sorted(model.params):
                for name in sorted(model.params[scope]):
                    array = np.asarray(model.params[scope][name])
                    digest.update(f"{scope}/{name}{array.shape}{array.dtype}".encode())
                    digest.update(array.tobytes())
            out[key] = digest.hexdigest()
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    result = digests()
    with open(sys.argv[1], "w") as handle:
        json.dump(result, handle, indent=0, sort_keys=True)
    print(f"{len(result)} models digested into {sys.argv[1]}")
