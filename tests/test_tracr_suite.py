"""tracr's own tests, run against rasp_compiler: one pytest item per tracr test.

tracr's test modules are imported from the installed tracr wheel (nothing is copied
here) with three of tracr's modules replaced by ours in `sys.modules`:
`tracr.rasp.rasp` -> `rasp_compiler.lang.rasp`, `tracr.compiler.lib` -> `rasp_compiler.lang.lib`,
`tracr.compiler.compiling` -> `rasp_compiler.compiling`; every other tracr module is
tracr's. The alias lives only while tracr's test modules are imported (their own
`from tracr.rasp import rasp` binds ours then): afterwards every `tracr*` entry of
`sys.modules` is put back as it was, so another test module that imports tracr in
this process gets tracr itself.

Each tracr module's suite runs once (a module-scoped fixture); each item checks its
recorded outcome. A test listed in EXPECTED_DIFFERENCES must fail (it is reported as
xfail; if it starts passing, remove it from the list); any other must pass, and a
failure shows tracr's traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import unittest

import pytest

import absl  # noqa: F401  (tracr's tests are written with absltest; both are in the test extra)
import tracr  # noqa: F401

pytestmark = pytest.mark.xdist_group("tracr_suite")

ALIASES = {
    "tracr.rasp.rasp": "rasp_compiler.lang.rasp",
    "tracr.compiler.lib": "rasp_compiler.lang.lib",
    "tracr.compiler.compiling": "rasp_compiler.compiling",
}

MODULES = (
    "tracr.rasp.rasp_test",
    "tracr.rasp.causal_eval_test",
    "tracr.compiler.lib_test",
    "tracr.compiler.rasp_to_transformer_integration_test",
)

_MIXED = ("our evaluator refuses a categorical Aggregate that selects different values "
          "(tracr averages them; no head can output a mixture of categories)")
_COMPILES = ("tracr refuses this program with NotImplementedError; we compile it, and the "
             "model is verified against the evaluator (test_what_tracr_refuses_we_compile_exactly)")
COMPILED_HERE = ("categorical_numerical_aggregate", "numerical_numerical_aggregate",
                 "aggregate_with_not_None_default", "numerical_selector", "numerical_SequenceMap",
                 "categorical_LinearSequenceMap", "numerical_tokens", "numerical_indices")

# tracr test id -> why we differ on purpose.
EXPECTED_DIFFERENCES = {
    "tracr.rasp.rasp_test.AggregateTest.test_aggregate_on_size_2_inputs3": _MIXED,
    "tracr.rasp.rasp_test.AggregateTest.test_aggregate_on_size_2_inputs4": _MIXED,
    "tracr.rasp.rasp_test.AggregateTest.test_aggregate_on_size_2_inputs5": _MIXED,
    **{
        "tracr.compiler.rasp_to_transformer_integration_test.CompilerIntegrationTest."
        f"test_unsupported_programs_raise_exception_{name}": _COMPILES
        for name in COMPILED_HERE
    },
    "tracr.compiler.rasp_to_transformer_integration_test.CompilerIntegrationTest."
    "test_unsupported_programs_raise_exception_numerical_categorical_aggregate": (
        "tracr refuses this program with NotImplementedError; we refuse it with "
        "UnsafeAggregateError (a CompilationError: a categorical Aggregate that mixes "
        "values on a known input), which names that input"),
}


def _is_tracr(name: str) -> bool:
    return name == "tracr" or name.startswith("tracr.")


@contextlib.contextmanager
def _aliased():
    """tracr's packages imported afresh with our three modules in place of tracr's;
    sys.modules' tracr entries are restored on exit."""
    saved = {name: module for name, module in sys.modules.items() if _is_tracr(name)}
    for name in saved:
        del sys.modules[name]
    try:
        for name, target in ALIASES.items():
            parent, _, attribute = name.rpartition(".")
            importlib.import_module(parent)
            ours = importlib.import_module(target)
            sys.modules[name] = ours
            setattr(sys.modules[parent], attribute, ours)
        yield
    finally:
        for name in [name for name in sys.modules if _is_tracr(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


def tracr_id(test: unittest.TestCase) -> str:
    """A tracr test's id: module.Class.method (absl's own id() appends the parameters'
    reprs, which change once expressions get ids)."""
    return f"{type(test).__module__}.{type(test).__qualname__}.{test._testMethodName}"


def _flatten(suite: unittest.TestSuite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def _load() -> dict[str, unittest.TestSuite]:
    import jax

    precision = jax.config.jax_default_matmul_precision
    with _aliased():
        try:
            suites = {name: unittest.defaultTestLoader.loadTestsFromName(name)
                      for name in MODULES}
            # tracr's programs that tracr refuses, built with our language
            unsupported = importlib.import_module("tracr.compiler.test_cases").UNSUPPORTED_TEST_CASES
        finally:  # the integration test sets it on import; it is set again for its run
            jax.config.update("jax_default_matmul_precision", precision)
    return suites, unsupported


SUITES, UNSUPPORTED = _load()
IDS = {name: [tracr_id(test) for test in _flatten(suite)] for name, suite in SUITES.items()}


class _Recorder(unittest.TestResult):
    """Each test's outcome and, for a failure, its traceback (subtests included)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, tuple[str, str]] = {}

    def _bad(self, test, outcome: str, err) -> None:
        key = tracr_id(test)
        text = self._exc_info_to_string(err, test)
        previous = self.outcomes.get(key)
        if previous is not None and previous[0] != "passed":
            text = previous[1] + "\n" + text
        self.outcomes[key] = (outcome, text)

    def addSuccess(self, test) -> None:
        self.outcomes.setdefault(tracr_id(test), ("passed", ""))

    def addFailure(self, test, err) -> None:
        self._bad(test, "failed", err)

    def addError(self, test, err) -> None:
        self._bad(test, "raised", err)

    def addSubTest(self, test, subtest, err) -> None:
        if err is not None:
            self._bad(test, f"failed in {subtest._subDescription()}", err)

    def addSkip(self, test, reason) -> None:
        self.outcomes[tracr_id(test)] = ("skipped", reason)

    def addExpectedFailure(self, test, err) -> None:
        self.outcomes[tracr_id(test)] = ("passed", "")

    def addUnexpectedSuccess(self, test) -> None:
        self.outcomes[tracr_id(test)] = ("failed", "unexpected success")


@pytest.fixture(scope="module")
def outcomes():
    import jax

    recorder = _Recorder()
    precision = jax.config.jax_default_matmul_precision
    jax.config.update("jax_default_matmul_precision", "float32")  # as tracr's module does
    try:
        for suite in SUITES.values():
            suite.run(recorder)
    finally:
        jax.config.update("jax_default_matmul_precision", precision)
    return recorder.outcomes


PARAMS = [pytest.param(module, key, id=key.removeprefix("tracr."))
          for module, keys in IDS.items() for key in keys]


@pytest.mark.parametrize("module, key", PARAMS)
def test_tracr(outcomes, module, key):
    outcome, detail = outcomes.get(key, ("not run", ""))
    reason = EXPECTED_DIFFERENCES.get(key)
    if reason is not None:
        if outcome == "passed":
            pytest.fail(f"tracr's {key} now passes: remove it from EXPECTED_DIFFERENCES "
                        f"(listed because: {reason})", pytrace=False)
        pytest.xfail(reason)
    if outcome != "passed":
        pytest.fail(f"tracr's {key} {outcome}:\n{detail}", pytrace=False)


def test_every_expected_difference_is_a_tracr_test():
    known = {key for keys in IDS.values() for key in keys}
    assert not set(EXPECTED_DIFFERENCES) - known, sorted(set(EXPECTED_DIFFERENCES) - known)
    assert len(known) == sum(len(keys) for keys in IDS.values())  # ids are unique


def test_the_alias_does_not_outlive_the_import():
    from rasp_compiler import compiling, lib, rasp

    from tracr.rasp import rasp as tracr_rasp

    assert tracr_rasp is not rasp and sys.modules["tracr.rasp.rasp"] is tracr_rasp
    for name, ours in (("tracr.compiler.lib", lib), ("tracr.compiler.compiling", compiling)):
        assert importlib.import_module(name) is not ours


@pytest.mark.parametrize("name", COMPILED_HERE)
def test_what_tracr_refuses_we_compile_exactly(name):
    """The programs of tracr's unsupported list that we compile match the evaluator on every
    input up to length 3."""
    from rasp_compiler import compile_program, verify

    (case,) = [case for case in UNSUPPORTED if case["testcase_name"] == name]
    model = compile_program(case["program"], case["vocab"], case["max_seq_len"])
    report = verify(case["program"], model, exhaustive_up_to=3, backend="numpy")
    assert report.ok, report
