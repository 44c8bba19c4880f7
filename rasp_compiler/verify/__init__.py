"""Checking a compiled model against the evaluator: `verify` (exhaustive or sampled),
the inputs it draws, the property-test helpers (`testing`) and the program fuzzer."""

from rasp_compiler.verify.checker import VerificationReport, verify

__all__ = ["VerificationReport", "verify"]
