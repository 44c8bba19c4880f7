"""The size budget: exact parameter counts, and refusals before any weight is built."""

import time

import pytest

from rasp_compiler import ModelTooLargeError, rasp
from rasp_compiler.compiler import pipeline as compiler
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.size import DEFAULT_MAX_PARAMETERS, check_size, estimate_size
from rasp_compiler.compiler.values import infer_values


def _scheduled(program, vocab, max_seq_len):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, max_seq_len))
    return ops, schedule(ops)


@pytest.fixture
def no_lowering(monkeypatch):
    """Fail loudly if compilation reaches the stage that allocates the weights."""

    def lower_model(*args, **kwargs):
        raise AssertionError("lower_model() was called: the size check came too late")

    monkeypatch.setattr(compiler, "lower_model", lower_model)


@pytest.mark.parametrize("vocab_size, max_seq_len", [(1_000, 400), (5_000, 128)])
def test_a_huge_sequence_map_is_refused_fast_before_allocating(no_lowering, vocab_size,
                                                               max_seq_len):
    # Issue: (1,000, 400) compiled for 36 s to 1.9 billion parameters; (5,000, 128) died
    # in numpy's MemoryError asking for 24 GiB.
    # (x * y) % 7 is no function of one linear form x + r y (linear_forms.py; mlp_linear.py
    # compiles (x + y) % 7 with 2 neurons per value of x + y), so it needs a lookup over pairs.
    pairs = rasp.SequenceMap(lambda x, y: (x * y) % 7, rasp.tokens, rasp.indices).named("pairs")
    start = time.perf_counter()
    with pytest.raises(ModelTooLargeError) as caught:
        compile_program(pairs, range(vocab_size), max_seq_len)
    assert time.perf_counter() - start < 30  # about a second unloaded; a safety net only
    text = str(caught.value)
    assert text.startswith("pairs: this SequenceMap needs at least")
    assert (f"tokens ({vocab_size:,} values) x indices ({max_seq_len:,} values) = "
            f"{vocab_size * max_seq_len:,} combinations") in text
    assert f"max_parameters={DEFAULT_MAX_PARAMETERS:,}" in text
    assert "split the SequenceMap" in text and "LinearSequenceMap" in text
    assert "lower max_seq_len" in text and "raise max_parameters" in text
    error = caught.value
    assert error.label == "pairs" and error.limit == DEFAULT_MAX_PARAMETERS
    assert error.parameters > DEFAULT_MAX_PARAMETERS


def test_a_lookup_whose_bound_is_over_the_limit_but_count_is_not_compiles():
    # A numerical SequenceMap that is non-zero on the diagonal only: 40 neurons, not 1,600.
    diagonal = rasp.numerical(
        rasp.SequenceMap(lambda t, i: 1 if t == i else 0, rasp.tokens, rasp.indices)
    ).named("diagonal")
    ops, scheduled = _scheduled(diagonal, range(40), 40)
    bound = estimate_size(ops, scheduled)
    exact = estimate_size(ops, scheduled, count=True)
    assert exact.exact and not bound.exact
    assert bound.low < exact.high < bound.high
    model = compile_program(diagonal, range(40), 40, max_parameters=exact.high)
    assert model.parameter_count() == exact.high
    assert model.run([[0, 5, 2]], backend="numpy") == [[1.0, 0.0, 1.0]]
    with pytest.raises(ModelTooLargeError, match=rf"over max_parameters={exact.high - 1:,}"):
        compile_program(diagonal, range(40), 40, max_parameters=exact.high - 1)


def test_the_estimate_bounds_and_then_equals_the_built_model():
    program = rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.tokens, rasp.indices, rasp.Comparison.LEQ),
        rasp.numerical(rasp.Map(lambda x: x / 2, rasp.tokens)), default=0)).named("mean")
    step = rasp.Map(lambda x: int(x > 0.6), program).named("step")
    model = compile_program(step, range(5), 6)
    bound = estimate_size(model.ops, model.schedule)
    exact = estimate_size(model.ops, model.schedule, count=True)
    assert bound.low <= model.parameter_count() <= bound.high
    assert exact.exact and exact.high == model.parameter_count()
    assert exact.bytes == 4 * model.parameter_count()
    assert exact.d_model == model.layout.width


def test_a_steps_mlp_refusal_says_to_round_its_input():
    spread = rasp.numerical(rasp.Map(lambda x: x * 0.37 + x * x / 7, rasp.tokens))
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    mean = rasp.numerical(rasp.Aggregate(prefix, spread, default=0)).named("mean")
    bucket = rasp.Map(lambda x: round(x * 10), mean).named("bucket")
    with pytest.raises(ModelTooLargeError,
                       match=r"bucket: this Map needs at least .* two at each value of mean .*"
                             r"round mean to fewer values with a Map"):
        compile_program(bucket, range(6), 5, max_parameters=10_000)


def test_an_attention_refusal_names_the_aggregate_and_its_comparison():
    before = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT),
                            rasp.tokens).named("before")
    with pytest.raises(ModelTooLargeError,
                       match=r"before: layer 0.s attention \(1 head of key size 100 .* "
                             r"comparing tokens \(100 values\)"
                             r" with tokens \(100 values\).*select on SOps with fewer values"):
        compile_program(before, range(100), 2, max_parameters=50_000,
                        allow_unsafe_aggregates=True)


def test_an_embedding_refusal_names_the_widest_sop():
    copy = rasp.Map(lambda x: x, rasp.tokens).named("copy")
    ops, scheduled = _scheduled(copy, range(300), 2)
    embeddings = estimate_size(ops, scheduled).parts[0]
    assert embeddings.kind == "embeddings"
    with pytest.raises(ModelTooLargeError, match=r"tokens: the embedding tables alone need"):
        check_size(ops, scheduled, embeddings.low - 1)
