"""Shared test settings: deterministic hypothesis runs, so CI never flakes on a new seed;
the case table compiled once per test process (`compiled_case`)."""

import os
import warnings

import pytest
from hypothesis import HealthCheck, settings

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
    """Each case of tests/cases.py compiled once per test process, shared by every test
    module that runs it at its own max_seq_len (compiling the table takes ~20 s).

    `compiled_case(case, causal=False, **options)` returns the CompiledModel; the program
    it was compiled from is `model.program`. Models are never modified by the tests.
    """
    from rasp_compiler.compiler import compile_program
    from rasp_compiler.errors import CompileWarning, RaspCompilerError

    cache = {}

    def get(case, causal=False, **options):
        key = (case.name, causal, tuple(sorted(options.items())))
        if key not in cache:
            n = case.max_seq_len
            try:
                with warnings.catch_warnings():  # a warning is part of the model (model.warnings)
                    warnings.simplefilter("ignore", CompileWarning)
                    cache[key] = compile_program(case.factory(n), case.vocab, n, causal=causal,
                                                 **{**case.options, **options})
            except RaspCompilerError as refusal:  # a refusal is a result too: raise it again
                cache[key] = refusal
        if isinstance(cache[key], RaspCompilerError):
            raise cache[key]
        return cache[key]

    return get
