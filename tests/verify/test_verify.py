import itertools
import random

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.verify.checker import verify
from rasp_compiler.verify.report import values_match
from rasp_compiler.verify.inputs import all_inputs, input_ids, random_inputs


def test_exhaustive_and_random_inputs():
    assert len(list(all_inputs("ab", 3))) == 2 + 4 + 8
    samples = list(random_inputs("ab", 5, 20, seed=3))
    assert len(samples) == 20 and all(1 <= len(s) <= 5 for s in samples)
    assert samples == list(random_inputs("ab", 5, 20, seed=3))
    # The same draws as rng.randint and rng.choice make: the inputs of a seed never change.
    rng = random.Random(7)
    drawn = []
    for _ in range(50):
        n = rng.randint(1, 6)
        drawn.append(tuple(rng.choice("abc") for _ in range(n)))
    assert list(random_inputs("abc", 6, 50, seed=7)) == drawn


def test_random_ids_are_random_randint_and_choice_draws():
    # Drawn on arrays (verify._RandomIds): the same stream as random.Random's calls, for
    # small and large vocabs and lengths, few inputs (the last may not fit the words drawn
    # first) and many (several chunks).
    from rasp_compiler.verify.inputs import random_input_ids

    for vocab, max_seq_len, count in [(1, 1, 3), (2, 64, 8), (5, 100, 40), (20, 7, 300),
                                      (3, 10, 70_000)]:
        rng = random.Random(count)
        drawn = []
        for _ in range(count):
            n = rng.randint(1, max_seq_len)
            drawn.append([rng.randrange(vocab) for _ in range(n)])
        assert list(random_input_ids(vocab, max_seq_len, count, seed=count)) == drawn


def test_exhaustive_ids_are_the_product_order():
    assert input_ids(3, 4).tolist() == [list(xs) for xs in itertools.product(range(3), repeat=4)]
    assert input_ids(3, 4, 10, 13).tolist() == input_ids(3, 4)[10:13].tolist()


def test_values_match_uses_tolerance_only_for_numbers():
    assert values_match(1.00001, 1.0)
    assert not values_match(1.01, 1.0)
    assert values_match(None, None) and not values_match(0.0, None)
    assert values_match("a", "a") and not values_match("a", "b")


def test_categorical_outputs_must_be_the_same_value_not_merely_equal():
    assert values_match(True, 1) and values_match(1.00001, 1)  # numerical: numbers
    assert not values_match(True, 1, categorical=True)
    assert not values_match(1.0, 1, categorical=True)
    assert not values_match(-0.0, 0.0, categorical=True)
    assert values_match(1, 1, categorical=True) and values_match(None, None, categorical=True)


def test_verify_reports_a_broken_model():
    program = lib.make_hist()
    model = compile_program(program, ["a", "b"], 4)
    assert verify(program, model, exhaustive_up_to=3).ok
    params = dict(model.params)
    params["layer_0/mlp/linear_2"] = {"w": params["layer_0/mlp/linear_2"]["w"] * 0}
    model.params = params
    report = verify(program, model, exhaustive_up_to=2)
    assert not report.ok
    assert report.mismatch_count == report.positions_checked
    assert "MISMATCHED" in str(report) and "expected 1" in str(report)


def test_verify_needs_something_to_check():
    program = lib.make_hist()
    model = compile_program(program, ["a"], 2)
    with pytest.raises(InvalidProgramError, match="exhaustive_up_to"):
        verify(program, model)
    with pytest.raises(InvalidProgramError, match="exceeds"):
        verify(program, model, exhaustive_up_to=3)


@pytest.mark.parametrize("options, message", [
    ({"samples": 0}, "samples must be a positive int, got 0"),  # these checked nothing
    ({"samples": -5}, "samples must be a positive int, got -5"),
    ({"samples": 2.5}, "samples must be a positive int, got 2.5"),  # a raw TypeError
    ({"samples": True}, "samples must be a positive int, got True"),
    ({"exhaustive_up_to": 0}, "exhaustive_up_to must be a positive int, got 0"),
    ({"samples": 5, "seed": float("nan")}, r"seed must be a whole number >= 0, got nan \(float\)"),
    ({"samples": 5, "seed": "7"}, r"seed must be a whole number >= 0, got '7' \(str\)"),
    ({"samples": 5, "seed": -5}, "a negative seed would repeat the stream of 5"),
    ({"samples": 5, "rtol": float("nan")}, "rtol must be a finite number >= 0, got nan"),
    ({"samples": 5, "atol": -1}, "atol must be a finite number >= 0, got -1"),
])
def test_verify_refuses_option_values_that_would_check_nothing_or_crash(options, message):
    from rasp_compiler.errors import RaspCompilerError

    program = lib.make_hist()
    model = compile_program(program, ["a"], 2)
    with pytest.raises(RaspCompilerError, match=message):
        verify(program, model, **options)


def test_any_whole_seed_from_zero_up_makes_its_own_inputs():
    # Python's random takes any int exactly: 2**70 is a seed of its own, not an error.
    assert list(random_inputs("abc", 4, 5, seed=2**70)) != list(random_inputs("abc", 4, 5, seed=0))
    assert list(random_inputs("abc", 4, 5, seed=np.int64(3))) == list(random_inputs("abc", 4, 5,
                                                                                   seed=3))


def test_a_long_run_says_how_long_it_will_take_once_the_rate_is_known():
    import io
    import unittest.mock

    from rasp_compiler.progress import ProgressBar, describe_seconds

    clock = iter([0.0, 30.0, 31.0, 32.0, 33.0])  # start; first chunk (30 s: XLA); then 1 s
    stream = io.StringIO()
    with unittest.mock.patch("rasp_compiler.progress.time.perf_counter", lambda: next(clock)):
        bar = ProgressBar(100_000_000, stream)
        bar.advance(8192)            # t=30: the first chunk's rate would count compilation
        bar.advance(24_000)          # t=31: 24,000/s since the first chunk
        bar.advance(24_000)          # t=32
        bar.advance(24_000)          # t=33
        bar.close()
    text = stream.getvalue()
    assert "\r" not in text  # not a terminal: lines a log can keep
    lines = text.splitlines()
    estimates = [line for line in lines if " take about " in line]
    assert estimates == ["verify: 100,000,000 inputs at about 24,000/s take about 70 minutes in "
                         "all; Ctrl-C stops it"]
    assert lines[-1].startswith("verify: 80,192/100,000,000 inputs (0%), 24,000/s, 0 mismatched")
    assert lines[-1].endswith("about 69 minutes left")
    assert [describe_seconds(s) for s in (45, 720, 3.5 * 3600, 2 * 86400)] == [
        "45 s", "12 minutes", "3.5 hours", "2.0 days"]


def test_progress_is_a_redrawn_bar_in_a_terminal_and_lines_in_a_log(monkeypatch):
    """tqdm draws the bar; `\\r` redraws go only to a terminal. A log (a file, a pipe, CI)
    gets whole lines, at most one per LOG_INTERVAL seconds and one at the end."""
    import io

    from rasp_compiler import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        bar = progress.StepProgress("train", 300, stream)
        for step in (100, 200, 300):
            bar.update(step, loss=0.5)
        bar.close()
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == ["train: 0/300 steps (0%)",
                                           "train: 300/300 steps (100%), loss 0.5"]
    assert terminal.getvalue().count("\r") >= 2 and "300/300 steps" in terminal.getvalue()
    assert "|" in terminal.getvalue()  # the bar itself


def test_progress_bar_reports_counts(capsys):
    program = lib.make_hist()
    model = compile_program(program, ["a", "b"], 4)
    report = verify(program, model, exhaustive_up_to=3, samples=10, progress=True, chunk=5)
    err = capsys.readouterr().err
    assert report.ok and report.inputs_checked == 24
    assert "verify: 24/24 inputs (100%)" in err and "0 mismatched" in err and "\r" not in err


def test_the_next_chunks_forward_is_queued_before_this_chunk_is_evaluated(monkeypatch):
    """verify keeps one chunk ahead: chunk k + 1's forward is queued before chunk k is
    evaluated and compared, so the forward thread does not wait for the evaluator; the
    report is the same as checking chunk by chunk, mismatches included."""
    import importlib

    verify_module = importlib.import_module("rasp_compiler.verify.checker")  # not the function
    program = lib.make_hist()
    model = compile_program(program, ["a", "b"], 4)
    params = dict(model.params)
    params["layer_0/mlp/linear_2"] = {"w": params["layer_0/mlp/linear_2"]["w"] * 0}
    model.params = params
    events = []
    start, finish = verify_module._Checker.start, verify_module._Checker.finish

    def logged_start(self, blocks):
        events.append(("start", sum(len(b.order) for b in blocks)))
        return start(self, blocks)

    def logged_finish(self, queued):
        events.append(("finish", sum(len(b.order) for b in queued[0])))
        return finish(self, queued)

    monkeypatch.setattr(verify_module._Checker, "start", logged_start)
    monkeypatch.setattr(verify_module._Checker, "finish", logged_finish)
    report = verify(program, model, exhaustive_up_to=3, chunk=5)
    assert [kind for kind, _ in events] == ["start"] + ["start", "finish"] * 2 + ["finish"]
    assert [n for kind, n in events if kind == "finish"] == [5, 5, 4]
    assert report.inputs_checked == 14 and report.mismatch_count == report.positions_checked


@pytest.mark.slow
def test_batches_are_sharded_over_several_devices():
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import numpy as np
        from rasp_compiler import lib, rasp, compile_program, verify
        program = lib.make_reverse(rasp.tokens)
        model = compile_program(program, ["a", "b", "c"], 6)
        ids, mask = model.runtime.sharded(np.zeros((8, 4), np.int32), np.ones((8, 4), bool))
        print(len(ids.sharding.device_set))
        report = verify(program, model, exhaustive_up_to=4, samples=50)
        print(report.devices, report.ok, report.inputs_checked)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, check=True)
    assert result.stdout.split() == ["4", "4", "True", "170"]


def _scalar_verify(program, model, inputs):
    """What verify reports, the slow way: model.run and the scalar evaluator, input by
    input (the definition the array path must keep)."""
    from rasp_compiler import rasp as rasp_module
    from rasp_compiler.errors import EvaluationError
    from rasp_compiler.lang.evaluator import causal_invariance, evaluate

    categorical = rasp_module.is_categorical(program)
    checked = undefined = 0
    wrong, invariance, max_error = [], None, 0.0
    for xs, got_row in zip(inputs, model.run([list(xs) for xs in inputs], backend="numpy")):
        try:
            expected_row = evaluate(program, list(xs), causal=model.causal)
        except EvaluationError:
            undefined += 1
            continue
        if model.causal and invariance is None:
            invariance = causal_invariance(program, [list(xs)])
        checked += 1
        for position, (got, expected) in enumerate(zip(got_row, expected_row)):
            if not categorical:
                max_error = max(max_error, abs(got - expected))
            if not values_match(got, expected, categorical=categorical):
                wrong.append((tuple(xs), position, expected, got))
    return checked, undefined, wrong, invariance, max_error


def _corrupted(model, key, scale):
    params = {k: dict(v) for k, v in model.params.items()}
    w = np.array(params[key]["w"])
    w[:, : max(1, w.shape[1] // 2)] *= scale
    params[key]["w"] = w
    model.params = params
    return model


@pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")
@pytest.mark.parametrize("make, vocab, key, causal", [
    (lambda: lib.make_hist(), ["a", "b", "c"], "layer_0/mlp/linear_1", False),
    (lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), [1, 2, 3], "layer_1/attn/value",
     False),
    (lambda: lib.make_frac_prevs(rasp.tokens == "x"), ["a", "x"], "layer_0/attn/value", False),
    (lambda: lib.make_reverse(rasp.tokens), ["a", "b"], "layer_1/attn/value", True),
    (lambda: rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ),
                            rasp.tokens), [1, 2, 3], "layer_0/attn/value", False),
])
def test_verify_finds_the_same_mismatches_as_the_scalar_definition(make, vocab, key, causal):
    """On deliberately corrupted models: the same counts, undefined inputs, first
    mismatches (in input order), largest numerical error and invariance verdict."""
    program = make()
    model = compile_program(program, vocab, 5, causal=causal, allow_unsafe_aggregates=True)
    _corrupted(model, key, 0.4)
    inputs = list(all_inputs(vocab, 4)) + list(random_inputs(vocab, 5, 60, seed=1))
    checked, undefined, wrong, invariance, max_error = _scalar_verify(program, model, inputs)
    for backend in ("numpy", "jax"):
        report = verify(program, model, exhaustive_up_to=4, samples=60, seed=1, chunk=37,
                        backend=backend)
        assert (report.inputs_checked, report.undefined) == (checked, undefined)
        assert report.mismatch_count == len(wrong) > 0
        assert [(m.tokens, m.position, m.expected) for m in report.mismatches] == [
            w[:3] for w in wrong[:10]]
        assert [repr(m.got) for m in report.mismatches] == [repr(w[3]) for w in wrong[:10]]
        assert report.invariance_counterexample == invariance
        assert report.max_numerical_error == pytest.approx(max_error, rel=1e-6, abs=1e-7)


def test_a_model_without_a_runtime_is_checked_through_its_run():
    """Any object with `run`, `vocab` and `max_seq_len` (a wrapped or converted model):
    its decoded outputs against the batched evaluator, with the same report."""
    program = lib.make_hist()
    model = compile_program(program, ["a", "b"], 4)
    _corrupted(model, "layer_0/mlp/linear_1", 0.4)

    class Wrapped:
        vocab, max_seq_len, causal = model.vocab, model.max_seq_len, False

        def run(self, batch, backend="jax"):
            return model.run(batch, backend=backend)

    ours = verify(program, Wrapped(), exhaustive_up_to=3, inputs=[["b", "a"]], backend="numpy")
    reference = verify(program, model, exhaustive_up_to=3, inputs=[["b", "a"]], backend="numpy")
    assert ours.mismatch_count == reference.mismatch_count > 0
    assert ours.mismatches == reference.mismatches
    assert (ours.inputs_checked, ours.positions_checked) == (
        reference.inputs_checked, reference.positions_checked)
