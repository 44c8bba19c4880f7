"""Causal (decoder-only) compilation: exact against the evaluator's causal meaning."""

import itertools

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.compiling import compile_rasp_to_model
from rasp_compiler.errors import EvaluationError, UnsafeAggregateError
from rasp_compiler.lang.evaluator import causal_invariance, evaluate, evaluate_all
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.verify.checker import verify
from rasp_compiler.verify.report import values_match

from cases import CASES, causal_twin

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")

INVARIANT = {"program:frac_prevs", "program:shift_by", "program:running_sum"}
NOT_INVARIANT = {"program:length", "program:reverse", "program:histogram", "program:sort"}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_causal_model_equals_the_causal_evaluator(case, compiled_case):
    try:
        model = compiled_case(case, causal=True)
    except UnsafeAggregateError as error:
        # Masking can make a categorical Aggregate mix values (argmax of a prefix may
        # tie): the refusal must show an input where the causal meaning really mixes.
        xs = eval(str(error).split("on the input ")[1].split(" (query")[0])
        with pytest.raises(EvaluationError):
            evaluate(case.factory(case.max_seq_len), xs, causal=True)
        model = compiled_case(case, causal=True, allow_unsafe_aggregates=True)
    program = model.program
    assert model.causal and model.info.causal
    report = verify(program, model, exhaustive_up_to=min(case.exhaustive_up_to, 4),
                    samples=20, backend="numpy", strict=True)
    assert report.ok, str(report)
    assert report.causal
    if case.name in INVARIANT:
        assert model.info.causally_invariant and report.causally_invariant, str(report)
        # an invariant program's causal model also computes the ordinary meaning
        inputs = [list(xs) for xs in [case.vocab[:1], case.vocab[:3], case.vocab[::-1]]]
        for xs, got in zip(inputs, model.run(inputs, backend="numpy")):
            expected = evaluate(program, xs)
            assert all(values_match(g, e) for g, e in zip(got, expected)), (xs, got, expected)
    if case.name in NOT_INVARIANT:
        assert model.info.causally_invariant is False
        assert "not causally invariant" in model.info.causal_invariance
        assert report.causally_invariant is False and report.invariance_counterexample


@pytest.mark.parametrize("case", [c for c in CASES if c.name in
                                  {"program:sort", "program:dyck1", "program:reverse"}], ids=str)
def test_causal_weights_are_the_bidirectional_weights(case, compiled_case):
    causal, plain = compiled_case(case, True), compiled_case(case, False)
    assert causal.depth == plain.depth and causal.layout == plain.layout
    for module, inner in plain.params.items():
        for name, value in inner.items():
            np.testing.assert_array_equal(np.asarray(causal.params[module][name]), np.asarray(value))
    # so the causal twin the longer-length tests use (test_compiler) is this model
    twin = causal_twin(plain)
    assert twin.shape == causal.shape and twin.causal
    batch = [list(case.vocab[:3]), list(case.vocab[::-1][:4])]
    assert twin.run(batch, backend="numpy") == causal.run(batch, backend="numpy")


def test_the_mask_is_applied_in_the_jitted_forward_and_the_cache():
    model = compile_program(lib.make_length(), ["a", "b"], 6, causal=True)
    assert model.run([["a", "b", "a"]]) == [[1, 2, 3]]
    _, cache = model.run_with_cache([["a", "b", "a"]])
    pattern = cache["blocks.0.attn.hook_pattern"][0, 0, :4, :4]
    assert np.allclose(np.triu(pattern, 1), 0.0)  # no weight on any later key
    assert model.apply(["BOS", "a", "b"]).decoded == ["BOS", 1, 2]


def test_causal_meaning_masks_every_selector_and_length():
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE)
    evaluation = evaluate_all(rasp.SelectorWidth(select), [5, 6, 7], causal=True)
    assert evaluation[select.label] == [[True, False, False], [True, True, False],
                                        [True, True, True]]
    assert evaluate(rasp.length, [5, 6, 7], causal=True) == [1, 2, 3]
    # NOT of a selector is masked too: it never selects a later key
    negated = ~rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    assert evaluate(rasp.SelectorWidth(negated), [1, 1, 1], causal=True) == [0, 1, 2]


def test_causal_meaning_is_not_the_prefix_meaning_for_deeper_programs():
    """Keys keep the values computed from their own prefix, so the masked model is not
    'the program on each prefix': here each position only finds itself."""
    numbers = rasp.numerical(rasp.Map(float, rasp.tokens))
    same_length = rasp.Select(rasp.length, rasp.length, rasp.Comparison.EQ)
    mean = rasp.numerical(rasp.Aggregate(same_length, numbers, default=0))
    xs = [1, 3, 5]
    on_prefixes = [evaluate(mean, xs[: i + 1])[i] for i in range(len(xs))]
    assert on_prefixes == [1.0, 2.0, 3.0]
    assert evaluate(mean, xs, causal=True) == [1.0, 3.0, 5.0]
    model = compile_program(mean, [1, 3, 5], 4, causal=True)
    assert model.run([xs])[0] == pytest.approx([1.0, 3.0, 5.0], abs=1e-4)


def test_invariance_counterexample_names_input_and_position():
    found = causal_invariance(lib.make_length(), [["a"], ["a", "b"]])
    assert found == (("a", "b"), 0, 2, 1)
    assert causal_invariance(lib.make_frac_prevs(rasp.tokens == "a"), [["a", "b", "a"]]) is None


def test_causal_models_keep_equal_but_different_values_apart():
    """A causal model decodes the causal meaning's own value, type and sign: here -0.0
    where the whole input is seen, 0.0 before (the masked length is shorter), and 0 and
    0.0 from one SequenceMap. Invariance tells -0.0 from 0.0 as values (identity.py)."""
    signed = rasp.Map(lambda n: -0.0 if n == 3 else 0.0, rasp.length).named("signed")
    assert causal_invariance(signed, [[1, 2, 3]]) == ((1, 2, 3), 0, -0.0, 0.0)
    model = compile_program(signed, [1, 2, 3], 3, causal=True)
    (row,) = model.run([[1, 2, 3]], backend="numpy")
    assert [str(v) for v in row] == ["0.0", "0.0", "-0.0"]
    assert model.info.causally_invariant is False
    assert verify(signed, model, exhaustive_up_to=3, backend="numpy").ok
    mixed = rasp.SequenceMap(lambda a, b: 0 if a == b else (0.0 if a < b else 1), rasp.tokens,
                             rasp.length).named("mixed")
    model = compile_program(mixed, [1, 2, 3], 3, causal=True)
    assert verify(mixed, model, exhaustive_up_to=3, backend="numpy").ok
    for xs in ([1, 2, 3], [3, 3, 1], [2, 1]):
        (row,) = model.run([xs], backend="numpy")
        want = evaluate(mixed, xs, causal=True)
        assert [(type(v), v) for v in row] == [(type(v), v) for v in want], (xs, row, want)


def test_tracr_entry_point_compiles_causal_models():
    model = compile_rasp_to_model(lib.make_frac_prevs(rasp.tokens == "x"), {"x", "y"}, 5,
                                  causal=True, compiler_bos="BOS")
    assert model.causal
    decoded = model.apply(["BOS", "x", "y", "x"]).decoded
    assert decoded[0] == "BOS"
    assert decoded[1:] == pytest.approx([1.0, 0.5, 2 / 3], abs=1e-4)


def test_save_and_load_round_trip_a_causal_model(tmp_path):
    model = compile_program(lib.make_length(), ["a", "b"], 5, causal=True)
    loaded = CompiledModel.load(model.save(tmp_path / "m"))
    assert loaded.causal and loaded.info.causally_invariant is False
    assert loaded.run([["a", "a", "b"]]) == [[1, 2, 3]]


def test_diagnostics_use_the_masked_ideal_pattern():
    model = compile_program(lib.make_hist(), ["a", "b"], 5, causal=True)
    inputs = [["a", "b", "a"], ["b", "b"]]
    assert model.check_patterns(inputs).passed
    assert model.read_back(inputs).agrees
    # the heatmaps' ideal pattern is the masked one, and the compiled pattern matches it
    # within what the compiler guarantees: each head moves at most its leak_bound
    # ((N + 1) exp(-c / 2), 1e-7 here) of weight off the intended keys, and the float32
    # softmax over N + 1 keys rounds each weight by at most gamma(N + 5) (precision.py)
    from rasp_compiler.diagnostics.pictures import head_patterns
    from rasp_compiler.compiler.precision import gamma

    leak = {head.name: head.leak_bound for layer in model.info.layers for head in layer.heads}
    for head in head_patterns(model, inputs[0]):
        assert not np.triu(head["ideal"], 1).any(), head["name"]
        assert leak[head["name"]] <= 1e-7 * 1.0001
        np.testing.assert_allclose(head["compiled"], head["ideal"], rtol=0,
                                   atol=leak[head["name"]] + gamma(model.max_seq_len + 5))


@pytest.mark.slow
def test_causal_fuzz_campaign_is_clean():
    from rasp_compiler.verify.fuzz_campaign import campaign

    report = campaign(40, seed=500, causal=True, samples=10)
    assert not report.problems, report.summary()
    assert report.count("matched") > 20


def test_cli_causal_flag(capsys):
    from rasp_compiler.cli import main

    assert main(["run", "length", "--causal", "a", "b", "c"]) == 0
    assert capsys.readouterr().out.strip() == "[1, 2, 3]"
    assert main(["eval", "length", "--causal", "-q", "a", "b"]) == 0
    assert "output: [1, 2]" in capsys.readouterr().out


def test_the_invariance_search_draws_no_input_it_would_drop():
    """At max_seq_len 10^7 the first random input was a tuple of millions of tokens, built
    (5 s) only to pass the search's cost limit and end the search; a length past the limit
    now ends it before its tokens are drawn, with the same inputs as before otherwise."""
    import time

    from rasp_compiler.lang.causal import short_then_random
    from rasp_compiler.compiler.safety import SEARCH_COST_LIMIT  # safety searches the same way

    started = time.perf_counter()
    huge = list(short_then_random(("a", "b"), 10**7, 400, 0, 150_000))
    searched = list(short_then_random(("a", "b"), 10**7, 400, 0, SEARCH_COST_LIMIT))
    assert time.perf_counter() - started < 1
    assert huge == searched == [xs for n in range(1, 7) for xs in itertools.product("ab", repeat=n)]
    small = list(short_then_random(("a", "b"), 12, 400, 0, 150_000))
    assert len(small) == 400 and max(map(len, small)) == 12  # short lengths: as before
