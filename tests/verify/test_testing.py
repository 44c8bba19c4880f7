"""The hypothesis helpers stay fast enough for hypothesis's default deadline.

(docs/verification.md's property test also runs in a clean project, with no
settings at all, in tests/test_docs.py.)
"""

import gc

import pytest

from rasp_compiler import lib
from rasp_compiler.verify import testing
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidInputError, ModelMismatchError, RaspCompilerError
from rasp_compiler.verify.testing import assert_matches, warm_up

from cases import causal_twin

PROGRAM = lib.make_hist()
MODEL = compile_program(PROGRAM, ["a", "b"], 4)


def _record_runs(monkeypatch, model, call_through=True):
    calls = []
    run = model.run

    def recording_run(batch, **kwargs):
        calls.append((batch, kwargs))
        return run(batch, **kwargs) if call_through else None

    monkeypatch.setattr(model, "run", recording_run)
    return calls


def test_assert_matches_runs_the_numpy_forward_by_default(monkeypatch):
    calls = _record_runs(monkeypatch, MODEL)
    assert_matches(PROGRAM, MODEL, ["a", "b", "a"])
    assert calls == [([["a", "b", "a"]], {"backend": "numpy"})]


def test_assert_matches_builds_the_graph_once_per_program(monkeypatch):
    program = lib.make_hist()
    built = []
    build_graph = testing.build_graph
    monkeypatch.setattr(testing, "build_graph", lambda p: built.append(p) or build_graph(p))
    for tokens in (["a"], ["a", "b"], ["b", "b", "a"]):
        assert_matches(program, MODEL, tokens)
    assert built == [program]


def test_graph_cache_is_bounded():
    programs = [lib.make_hist() for _ in range(testing.GRAPH_CACHE_SIZE + 4)]
    for program in programs:
        testing._graph_of(program)
    assert len(testing._graphs) <= testing.GRAPH_CACHE_SIZE
    assert testing._graph_of(programs[-1]) is testing._graph_of(programs[-1])


def test_warm_up_runs_one_input_per_length_bucket_once_per_model(monkeypatch):
    model = compile_program(PROGRAM, ["a", "b"], 16)
    calls = _record_runs(monkeypatch, model, call_through=False)  # no XLA compile here
    warm_up(model)
    warm_up(model)
    lengths = [len(batch[0]) for batch, _ in calls]
    buckets = [model.runtime.bucket_length(n) for n in lengths]
    assert sorted(set(buckets)) == buckets  # one run per bucket, every bucket of 1..16
    assert set(buckets) == {model.runtime.bucket_length(n) for n in range(1, 17)}


def test_jax_backend_warms_up_then_matches(monkeypatch):
    model = compile_program(PROGRAM, ["a", "b"], 2)
    assert_matches(PROGRAM, model, ["b", "a"], backend="jax")
    calls = _record_runs(monkeypatch, model)
    warm_up(model)  # already warm: nothing to compile
    assert_matches(PROGRAM, model, ["a"], backend="jax")
    assert calls == [([["a"]], {"backend": "jax"})]


def test_per_object_cache_forgets_collected_objects():
    class Thing:
        pass

    cache = testing._PerObject()
    thing = Thing()
    assert cache.get(thing, lambda t: 1) == 1
    assert cache.get(thing, lambda t: 2) == 1
    del thing
    gc.collect()
    assert cache._entries == {}


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="backend must be one of") as error:
        assert_matches(PROGRAM, MODEL, ["a"], backend="torch")
    assert isinstance(error.value, (RaspCompilerError, ValueError))


def test_assert_matches_checks_a_causal_model_against_the_causal_meaning():
    length = lib.make_length()
    plain = compile_program(length, ["a", "b"], 4)
    causal = causal_twin(plain)  # the same weights behind the mask: length is i + 1
    assert_matches(length, causal, ["a", "b", "a"])
    assert_matches(length, plain, ["a", "b", "a"])
    # A model claiming to be causal is held to the causal meaning, not the plain one.
    claims_causal = causal_twin(plain)
    claims_causal.runtime = plain.runtime  # runs unmasked: every position says 3
    with pytest.raises(ModelMismatchError, match=r"at position 0 the evaluator says 1, the model 3"):
        assert_matches(length, claims_causal, ["a", "b", "a"])


def test_assert_matches_tells_0_from_0_0_in_a_categorical_output(monkeypatch):
    from rasp_compiler import rasp

    program = rasp.Map(lambda x: 0 if x == 0 else 0.0, rasp.tokens).named("zeros")
    model = compile_program(program, [0, 1], 2)
    assert_matches(program, model, [0, 1])
    monkeypatch.setattr(model, "run", lambda batch, **kwargs: [[0.0, 0.0]])  # a wrong type
    with pytest.raises(ModelMismatchError, match=r"zeros: on input \[0, 1\] at position 0 the "
                                                 r"evaluator says 0, the model 0.0"):
        assert_matches(program, model, [0, 1])
