"""Exactness on raw activations: every SOp's residual dims, not decoded, against the exact
one-hot or number, for every case of the table (both meanings), and the decoder never
accepting columns farther from what it returns than its own tolerance.

The decoder reads a one-hot within 0.1 (encoding.DECODE_TOLERANCE), so checks that decode
(verify, read_back) pass a model whose heads write 0.92 instead of 1. Here the bound is
verify.RAW_TOLERANCE (1e-3); docs/verification.md ("Exactness on raw activations")
derives it from what the compiler guarantees. Each model is run on a dozen inputs with
the numpy forward (no XLA compilation), reusing the session's compiled models.
"""

import random

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.diagnostics.read_back import exact_encoding, raw_deviation, raw_read_back
from rasp_compiler.model.encoding import DECODE_TOLERANCE, EMPTY, UNCLEAN, decode_indices
from rasp_compiler.errors import EvaluationError, InvalidProgramError
from rasp_compiler.lang.evaluator import evaluate_all
from rasp_compiler.compiler.precision import analyse_precision
from rasp_compiler.model.constants import RAW_TOLERANCE
from rasp_compiler.verify.checker import verify
from rasp_compiler.model.hooks import Slot

from cases import CASES, causal_twin

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")


def inputs_of(case, count=8):
    """Every one-token input, `count` random ones and one of max_seq_len tokens."""
    rng = random.Random(case.name)
    inputs = [[token] for token in case.vocab]
    inputs += [[rng.choice(case.vocab) for _ in range(rng.randint(2, case.max_seq_len))]
               for _ in range(count)]
    inputs.append([rng.choice(case.vocab) for _ in range(case.max_seq_len)])
    return inputs


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_sops_raw_dims_are_within_the_bound(case, causal, compiled_case):
    model = compiled_case(case)
    if causal:
        model = causal_twin(model)  # the causal model's weights (test_causal pins it)
    inputs = inputs_of(case)
    report = raw_read_back(model, inputs, backend="numpy")
    assert report.passed, str(report)
    assert report.sops and all(s.positions > 0 for s in report.sops if s.label == model.output)
    assert report.max_deviation <= RAW_TOLERANCE
    if not causal:
        _within_the_precision_bound(model, inputs)


def _within_the_precision_bound(model, inputs):
    """precision.py's bound for every numerical SOp it tracks holds on the raw activations
    (its bound on the output is what makes compile refuse past verification's tolerance)."""
    record = model.compilation
    bounds = analyse_precision(record.ops, record.schedule, record.lowered).errors
    labels = [label for label, readout in model.readouts.items()
              if readout.numerical and label in bounds and label in record.schedule.time
              and label in record.graph.graph]
    if not labels:
        return
    _, cache = model.run_with_cache(inputs, backend="numpy")
    cache = {**cache, "hook_embed+pos": cache["hook_embed"] + cache["hook_pos_embed"]}
    for b, xs in enumerate(inputs):
        try:
            values = evaluate_all(record.graph, xs)
        except EvaluationError:  # no reference answer (an Aggregate mixing values)
            continue
        for label in labels:
            readout = model.readouts[label]
            residual = cache[Slot.at(record.schedule.time[label]).residual_after][b, 1: len(xs) + 1]
            expected = values[label]
            deviation = raw_deviation(readout, residual[:, list(readout.indices)], expected)
            allowed = [bounds[label].at(0.0 if v is None else float(v)) for v in expected]
            assert (deviation <= np.asarray(allowed) + 1e-12).all(), (
                label, xs, deviation, allowed, bounds[label])


def _decoder_probes(readout):
    """Columns [m, k] around the readout's exact encodings, and what each must decode
    to: each value's one-hot and None's zeros, nudged by up to the raw bound (the value);
    a value at 0.3, 0.5 or 0.89 of full strength, a lone 0.11, 0.3 or 0.5 where None is
    meant, two values blended, a one-hot with a second value at 0.2 (UNCLEAN: neither a
    clean value nor a clean None)."""
    k = len(readout.values)
    rng = np.random.default_rng(k)
    rows, wanted = [], []
    for i in range(k):
        exact = exact_encoding(readout, [readout.values[i]])[0]
        rows.append(exact + rng.uniform(-RAW_TOLERANCE, RAW_TOLERANCE, k))
        wanted.append(i)
        for strength in (0.5, 0.3, 0.89):  # neither the value nor None
            rows.append(exact * strength)
            wanted.append(UNCLEAN)
        if k > 1:
            other = (i + 1) % k
            rows.append(exact * 0.5 + np.eye(k)[other] * 0.5)
            wanted.append(UNCLEAN)
            rows.append(exact + np.eye(k)[other] * 0.2)
            wanted.append(UNCLEAN)
    rows.append(rng.uniform(-RAW_TOLERANCE, RAW_TOLERANCE, k))
    wanted.append(EMPTY)
    for strength in (0.5, 0.3, 0.11) if k else ():  # neither the first value nor None
        rows.append(np.eye(k)[0] * strength)
        wanted.append(UNCLEAN)
    return np.array(rows).reshape(len(rows), k), np.array(wanted)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_decoder_never_accepts_columns_far_from_what_it_returns(case, compiled_case):
    """For every categorical SOp of the case: what decodes to a value (or None) is within
    DECODE_TOLERANCE of that value's exact encoding, and a column at half strength is
    UNCLEAN, not None: the raw check and the decoder agree on what is clean."""
    model = compiled_case(case)
    for label, readout in model.readouts.items():
        if readout.numerical:
            continue
        columns, wanted = _decoder_probes(readout)
        got = decode_indices(readout, columns)
        assert (got == wanted).all(), (label, columns[got != wanted], got[got != wanted])
        decoded = [None if i == EMPTY else readout.values[i] for i in got if i != UNCLEAN]
        accepted = columns[got != UNCLEAN]
        assert (raw_deviation(readout, accepted, decoded) <= DECODE_TOLERANCE).all(), label


def _scaled(model, module, factor, columns=None):
    """A copy of `model` whose `module`'s weights (only `columns` of them, if given) are
    scaled by `factor`; the shared model is left as it was."""
    import copy

    broken = copy.copy(model)
    broken.params = {k: dict(v) for k, v in model.params.items()}
    w = np.array(model.params[module]["w"])
    if columns is None:
        w = w * factor
    else:
        w[:, columns] = w[:, columns] * factor
    broken.params[module]["w"] = w
    return broken


@pytest.fixture(scope="module")
def reverse():
    return lib.make_reverse(rasp.tokens), compile_program(
        lib.make_reverse(rasp.tokens), ["a", "b", "c"], 5)


def test_a_head_writing_092_decodes_right_and_fails_only_the_raw_checks(reverse):
    """The mutation the issue's audit made: a categorical Aggregate writing 0.92."""
    program, model = reverse
    broken = _scaled(model, f"layer_{model.depth - 1}/attn/linear", 0.92)
    inputs = [["a", "b", "c"], ["c", "a"]]
    assert verify(program, broken, exhaustive_up_to=3, backend="numpy").ok
    assert broken.read_back(inputs, backend="numpy").agrees
    report = verify(program, broken, exhaustive_up_to=3, backend="numpy", strict=True)
    assert not report.ok and report.mismatch_count == 0
    assert report.raw_excess_count == report.positions_checked
    assert report.max_raw_deviation == pytest.approx(0.08, abs=1e-6)
    assert "PAST THE RAW BOUND 1e-03" in str(report) and "max raw deviation 8.00e-02" in str(report)
    raw = broken.raw_read_back(inputs, backend="numpy")
    assert not raw.passed and [s.label for s in raw.failed()] == ["reverse"]
    assert "reverse" in str(raw) and "off by 0.08" in str(raw)
    good = verify(program, model, exhaustive_up_to=3, backend="numpy", strict=True)
    assert good.ok and good.max_raw_deviation < 1e-6 and "strict: max raw deviation" in str(good)


def test_a_later_write_into_an_earlier_sops_dims_is_found_where_it_happens():
    """The dims of an SOp are checked from where it is written to the end: here the last
    MLP adds 0.05 to a dim of `tokens` (the embedding), which nothing reads afterwards."""
    program = lib.make_hist()
    model = compile_program(program, ["a", "b"], 4)
    broken = _scaled(model, "layer_0/mlp/linear_2", 1.0)
    layout = model.layout
    w = np.array(broken.params["layer_0/mlp/linear_2"]["w"])
    w[:, layout.index[layout.dims_of("tokens")[0]]] += 0.05 * (w != 0).any(axis=1)
    broken.params["layer_0/mlp/linear_2"]["w"] = w
    report = broken.raw_read_back([["a", "b", "b"]], backend="numpy")
    (failed,) = report.failed()
    assert failed.label == "tokens" and failed.written_after == "embeddings"
    assert "after layer 0 MLP" in failed.first
    assert broken.read_back([["a", "b", "b"]], backend="numpy").agrees  # decoding sees nothing


def test_strict_verification_of_numerical_outputs_reports_their_raw_error():
    program = lib.make_frac_prevs(rasp.tokens == "a")
    model = compile_program(program, ["a", "b"], 5)
    report = verify(program, model, exhaustive_up_to=4, backend="numpy", strict=True)
    assert report.ok and report.max_raw_deviation == report.max_numerical_error
    assert "a numerical output is read raw" in str(report)


def test_strict_arguments_are_checked():
    program = lib.make_hist()
    model = compile_program(program, ["a"], 2)
    for bad in (0, 1.5, "x", True, float("nan")):
        with pytest.raises(InvalidProgramError, match="raw_tolerance must be a number"):
            verify(program, model, exhaustive_up_to=1, strict=True, raw_tolerance=bad)
    with pytest.raises(InvalidProgramError, match="strict must be True or False"):
        verify(program, model, exhaustive_up_to=1, strict="yes")

    class Wrapped:
        vocab, max_seq_len = model.vocab, model.max_seq_len

        def run(self, batch, backend="jax"):
            return model.run(batch, backend=backend)

    with pytest.raises(InvalidProgramError, match="raw readout columns of a CompiledModel"):
        verify(program, Wrapped(), exhaustive_up_to=1, strict=True)
    assert verify(program, model, exhaustive_up_to=2, strict=True, raw_tolerance=1e-6,
                  backend="numpy").ok
