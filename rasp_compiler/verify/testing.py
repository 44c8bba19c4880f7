"""Property tests of compiled models in a few lines (needs hypothesis: the test extra).

    from hypothesis import given
    from rasp_compiler.verify.testing import rasp_inputs, assert_matches

    model = compile_program(program, vocab, 8)

    @given(rasp_inputs(vocab, 8))
    def test_model(tokens):
        assert_matches(program, model, tokens)

No hypothesis settings are needed: hypothesis times every example against a
200 ms deadline, and `assert_matches` keeps each call to a few milliseconds by
running the model's numpy forward (no XLA compilation inside an example) and
building the program's graph once per program.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Sequence

from hypothesis import strategies as st

from rasp_compiler.errors import EvaluationError, InvalidInputError, ModelMismatchError
from rasp_compiler.lang.evaluator import evaluate
from rasp_compiler.lang.graph import ProgramGraph, build_graph
from rasp_compiler.verify.report import values_match

BACKENDS = ("numpy", "jax")
GRAPH_CACHE_SIZE = 16  # programs whose graphs are kept; a property test uses one


class _PerObject:
    """Values computed once per object, keyed by identity, forgotten when it is collected.

    Identity, not hashing: SOps overload `==`, and a model's equality is not ours to assume.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, obj, make: Callable[[Any], Any]):
        key = id(obj)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]
        value = make(obj)
        self._entries[key] = (weakref.ref(obj, lambda _, key=key: self._entries.pop(key, None)), value)
        return value


_warm_models = _PerObject()
# A graph holds its program, so a weak cache would keep both forever: keep a few, strongly
# (which also means an id here is never reused while its entry exists).
_graphs: OrderedDict[int, tuple[Any, ProgramGraph]] = OrderedDict()


def _graph_of(program) -> ProgramGraph:
    """The program's graph, built once per program object rather than once per example."""
    if isinstance(program, ProgramGraph):
        return program
    key = id(program)
    if key in _graphs:
        _graphs.move_to_end(key)
        return _graphs[key][1]
    graph = build_graph(program)
    _graphs[key] = (program, graph)
    if len(_graphs) > GRAPH_CACHE_SIZE:
        _graphs.popitem(last=False)
    return graph


def rasp_inputs(vocab: Sequence, max_seq_len: int, min_len: int = 1) -> st.SearchStrategy[list]:
    """Token lists of min_len..max_seq_len tokens drawn from `vocab` (shrinks toward short)."""
    return st.lists(st.sampled_from(sorted(vocab, key=repr)), min_size=min_len,
                    max_size=max_seq_len)


def warm_up(model) -> None:
    """Compile the model's jitted forward for every input length now, once per model.

    Only for `assert_matches(..., backend="jax")`: XLA compiles one shape per length
    bucket (about a second each on a CPU), and a compile inside a hypothesis example
    exceeds its deadline. Call this outside the test (at module level or in a fixture).
    """
    def compile_every_bucket(model):
        # A one-input batch, as in a test; its shape depends only on the length's bucket.
        lengths_by_bucket = {model.runtime.bucket_length(n): n for n in range(1, model.max_seq_len + 1)}
        token = model.vocab[0]
        for length in sorted(lengths_by_bucket.values()):
            model.run([[token] * length])
        return True

    _warm_models.get(model, compile_every_bucket)


def assert_matches(program, model, tokens: Sequence, *, backend: str = "numpy") -> None:
    """The model's output on `tokens` equals the evaluator's at every position.

    Inputs on which the program itself is undefined (a categorical Aggregate mixing
    values) have no reference answer and pass. backend "numpy" (default) runs the
    model's numpy forward: no compilation, a few ms per call, so hypothesis's default
    deadline holds. backend "jax" runs the jitted model, warmed up (`warm_up`) on the
    first call; call `warm_up(model)` outside the test so no example pays for it.
    """
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "jax":
        warm_up(model)
    tokens = list(tokens)
    (got,) = model.run([tokens], backend=backend)
    try:
        expected = evaluate(_graph_of(program), tokens, causal=getattr(model, "causal", False))
    except EvaluationError:
        return
    readouts = getattr(model, "readouts", None)
    # a categorical output must be the same value (0 is not 0.0: identity.py)
    categorical = readouts is not None and not readouts[model.output].numerical
    for position, (g, e) in enumerate(zip(got, expected)):
        if not values_match(g, e, categorical=categorical):
            raise ModelMismatchError(
                f"{getattr(model, 'output', 'the model')}: on input {tokens} at position "
                f"{position} the evaluator says {e!r}, the model {g!r}; see the read-back "
                f"(model.read_back([tokens])) for the first SOp that goes wrong")
