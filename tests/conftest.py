"""Shared test settings: deterministic hypothesis runs, so CI never flakes on a new seed;
the case table compiled once per test process."""

import os
import warnings

import pytest
from hypothesis import HealthCheck, settings

from rasp_compiler.compiler import compile_program
from rasp_compiler.errors import CompileWarning

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def compiled_case():
    """`get(case, causal=False)` -> (program, model): each case of cases.py compiled once
    per test process at its own max_seq_len, shared by every test file. Tests must not
    change the model they get (copy it first)."""
    cache = {}

    def get(case, causal=False):
        key = (case.name, causal)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CompileWarning)
                program = case.factory(case.max_seq_len)
                model = compile_program(program, case.vocab, case.max_seq_len, causal=causal,
                                        **case.options)
            cache[key] = (program, model)
        return cache[key]

    return get
