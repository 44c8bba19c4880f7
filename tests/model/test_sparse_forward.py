"""The sparse verification forward equals the dense one, and sees the weights it is given."""

import copy

import numpy as np
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.model.forward import forward_numpy
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.model.sparse_forward import LOOPED_LOGITS, build_sparse_forward, sparse_forward_fn
from rasp_compiler.verify.checker import verify
from rasp_compiler.verify.inputs import input_ids, random_input_ids

from cases import CASES, causal_twin

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")


def _inputs(model, exhaustive: int) -> list[np.ndarray]:
    """Every input of up to `exhaustive` tokens, and 24 random ones, as blocks by length."""
    vocab = len(model.vocab)
    blocks = [input_ids(vocab, n) for n in range(1, exhaustive + 1)]
    rows = list(random_input_ids(vocab, model.max_seq_len, 24, seed=5))
    for n in sorted({len(row) for row in rows}):
        blocks.append(np.array([row for row in rows if len(row) == n]))
    return blocks


def _both(model, params=None):
    """(sparse, dense) readout columns of the output on `_inputs`, numpy forwards."""
    params = model.params if params is None else params
    readout = model.readouts[model.output]
    sparse = build_sparse_forward(params, model.shape, readout.indices)
    sparse = sparse_forward_fn(sparse, np)
    pairs = []
    for block in _inputs(model, 2):
        ids, mask = model.runtime.pack_array([block], block.shape[1] + 1)
        dense = forward_numpy(params, model.shape, ids, mask)[..., list(readout.indices)]
        pairs.append((sparse(ids, mask), dense))
    return pairs


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sparse_forward_equals_the_dense_forward(case, compiled_case):
    model = compiled_case(case)
    for twin in (model, causal_twin(model)):
        for sparse, dense in _both(twin):
            np.testing.assert_allclose(sparse, dense, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_jitted_sparse_forward_equals_the_dense_forward():
    # 20 values compared: a head with more logit dims than LOOPED_LOGITS (the looped sum)
    program = lib.make_sort_unique(rasp.tokens, rasp.tokens)
    model = compile_program(program, list(range(20)), 4)
    readout = model.readouts[model.output]
    sparse = build_sparse_forward(model.params, model.shape, readout.indices)
    assert max(len(head.query) for layer in sparse.layers for head in layer.heads) > LOOPED_LOGITS
    blocks = [input_ids(20, 1), input_ids(20, 2)] + [
        np.array([row for row in random_input_ids(20, 4, 400, seed=3) if len(row) == n])
        for n in (3, 4)]
    dense = model.runtime.readout_columns(model.params, blocks, readout, backend="numpy")
    sparse = model.runtime.readout_columns(
        model.params, blocks, readout, sparse_forward=model.runtime.sparse_jit(model.params, readout))
    for got, want in zip(sparse, dense):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_the_plan_skips_zero_weights():
    model = compile_program(lib.make_reverse(rasp.tokens), ["a", "b", "c"], 6)
    sparse = build_sparse_forward(model.params, model.shape, model.readouts[model.output].indices)
    nonzero = sum(int(np.count_nonzero(w)) for module in model.params.values()
                  for w in module.values())
    dense = sum(int(np.size(w)) for module in model.params.values() for w in module.values())
    assert sparse.terms < nonzero < dense / 10


def _corrupted(model, module: str, row: int, column: int, value: float):
    """A copy of the model with one weight changed (the original is left alone)."""
    broken = copy.copy(model)
    broken.params = {name: {k: np.array(w) for k, w in inner.items()}
                     for name, inner in model.params.items()}
    weights = broken.params[module]["w"]
    assert weights[row, column] == 0.0
    weights[row, column] = value
    return broken


def test_a_weight_put_where_the_compiler_left_a_zero_is_seen():
    program = lib.make_reverse(rasp.tokens)
    model = compile_program(program, ["a", "b", "c"], 5)
    last = len(model.shape.layers) - 1
    readout = model.readouts[model.output]
    # One of the last head's value dims also written into another output dim (a zero
    # of W_O the sparse from the compiler would skip).
    w_o = np.asarray(model.params[f"layer_{last}/attn/linear"]["w"])
    row, column = next((r, d) for r in range(w_o.shape[0]) for d in readout.indices
                       if w_o[r].any() and w_o[r, d] == 0)
    broken = _corrupted(model, f"layer_{last}/attn/linear", row, column, 5.0)
    assert verify(program, model, exhaustive_up_to=3, forward="sparse").ok
    sparse = verify(program, broken, exhaustive_up_to=3, forward="sparse")
    dense = verify(program, broken, exhaustive_up_to=3, forward="dense")
    assert not sparse.ok and sparse.mismatch_count == dense.mismatch_count > 0
    assert sparse.mismatches == dense.mismatches
    for got, want in _both(broken):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_weights_that_could_overflow_get_the_dense_forward():
    program = lib.make_reverse(rasp.tokens)
    model = compile_program(program, ["a", "b", "c"], 5)
    readout = model.readouts[model.output]
    w = np.asarray(model.params["layer_0/mlp/linear_1"]["w"])
    row, column = map(int, np.argwhere(w == 0)[0])
    for value in (np.nan, np.inf, 1e35):
        broken = _corrupted(model, "layer_0/mlp/linear_1", row, column, value)
        assert build_sparse_forward(broken.params, broken.shape, readout.indices) is None
        # verify runs the dense forward instead, and finds what it finds
        sparse = verify(program, broken, exhaustive_up_to=2, forward="sparse")
        dense = verify(program, broken, exhaustive_up_to=2, forward="dense")
        assert sparse.mismatches == dense.mismatches


def test_forward_must_be_one_of_three():
    program = lib.make_length()
    model = compile_program(program, ["a"], 3)
    with pytest.raises(InvalidProgramError, match="forward must be"):
        verify(program, model, exhaustive_up_to=1, forward="fast")
