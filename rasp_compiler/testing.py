"""Property tests of compiled models in a few lines (needs hypothesis: the test extra).

    from hypothesis import given
    from rasp_compiler.testing import rasp_inputs, assert_matches

    model = compile_program(program, vocab, 8)

    @given(rasp_inputs(vocab, 8))
    def test_model(tokens):
        assert_matches(program, model, tokens)
"""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st

from rasp_compiler.errors import EvaluationError
from rasp_compiler.evaluator import evaluate
from rasp_compiler.verify import values_match


def rasp_inputs(vocab: Sequence, max_seq_len: int, min_len: int = 1) -> st.SearchStrategy[list]:
    """Token lists of min_len..max_seq_len tokens drawn from `vocab` (shrinks toward short)."""
    return st.lists(st.sampled_from(sorted(vocab, key=repr)), min_size=min_len,
                    max_size=max_seq_len)


def assert_matches(program, model, tokens: Sequence) -> None:
    """The model's output on `tokens` equals the evaluator's at every position.

    Inputs on which the program itself is undefined (a categorical Aggregate mixing
    values) have no reference answer and pass.
    """
    tokens = list(tokens)
    (got,) = model.run([tokens])
    try:
        expected = evaluate(program, tokens, causal=getattr(model, "causal", False))
    except EvaluationError:
        return
    for position, (g, e) in enumerate(zip(got, expected)):
        assert values_match(g, e), (
            f"input {tokens} position {position}: the evaluator says {e!r}, the model {g!r}"
        )
