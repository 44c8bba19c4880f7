"""Shared test settings: deterministic hypothesis runs, so CI never flakes on a new seed;
the case table compiled once per test process (`compiled_case`); the system tools some
tests need (`system_tool`).

System tools: the explorer's browser tests drive Debian's `chromium` through its
`chromedriver`, and the graph picture needs Graphviz's `dot`. Where one is missing, those
tests are skipped with a reason that says how to install it (the only skips this project
allows), so the README's test command passes on a machine with only Python. `.ci/run`
installs the tools and sets RASP_COMPILER_REQUIRE_SYSTEM_TOOLS=1, which turns a missing
tool into a failure: CI always runs every test.
"""

import os
import shutil
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

REQUIRE_SYSTEM_TOOLS = "RASP_COMPILER_REQUIRE_SYSTEM_TOOLS"
BROWSER = ("the explorer's browser tests need chromium and its chromedriver",
           "apt-get install chromium chromium-driver")
SYSTEM_TOOLS = {  # a command -> (what needs it, how to install it on Debian / Ubuntu)
    "chromium": BROWSER,
    "chromedriver": BROWSER,
    "dot": ("the graph picture needs Graphviz's dot", "apt-get install graphviz"),
}


def system_tool(*commands: str) -> list[str]:
    """The paths of `commands` on PATH; if one is missing, skip the calling test (or
    fixture) saying what needs it and how to install it, or fail where
    RASP_COMPILER_REQUIRE_SYSTEM_TOOLS=1 (CI)."""
    paths = [shutil.which(command) for command in commands]
    missing = [command for command, path in zip(commands, paths) if path is None]
    if not missing:
        return paths
    need, install = SYSTEM_TOOLS[missing[0]]
    message = f"{need}; {' and '.join(missing)} not on PATH: {install} (as .ci/run does)"
    if os.environ.get(REQUIRE_SYSTEM_TOOLS) == "1":
        pytest.fail(f"{message}; {REQUIRE_SYSTEM_TOOLS}=1 requires every system tool",
                    pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def compiled_case():
    """Each case of tests/cases.py compiled once per test process, shared by every test
    module that runs it at its own max_seq_len (compiling the table takes ~20 s).

    `compiled_case(case, causal=False, **options)` returns the CompiledModel; the program
    it was compiled from is `model.program`. Models are never modified by the tests.
    """
    from rasp_compiler.compiler.pipeline import compile_program
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


# The fast subset (`pytest -m "not slow"`, README) leaves out the tests marked slow: those
# of the xdist groups below (each group runs on one worker: torch and TransformerLens, the
# compression training runs, tracr's own suite) and single tests of several seconds, marked
# `@pytest.mark.slow` where they are defined.
SLOW_GROUPS = {"export", "compression", "tracr_suite"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(mark.args and mark.args[0] in SLOW_GROUPS
               for mark in item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.slow)
