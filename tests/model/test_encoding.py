"""The token encoder's and the readout decoder's rules, each on its own (the decoder is
also probed on every case's readouts in test_exactness.py)."""

import numpy as np
import pytest

from rasp_compiler import rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.model.encoding import EMPTY, decode_indices, decode_readout, lookup_ids
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.model.residual import Readout
from rasp_compiler.verify.checker import verify


def test_lookup_ids_takes_a_token_only_as_itself():
    ids = {1: 0, 2: 1, "a": 2}
    assert lookup_ids(ids, [2, 1, "a"], "input 0, ", "the map") == [1, 0, 2]
    for equal in (True, 1.0):  # equal to the token 1, but a different value (identity.py)
        with pytest.raises(InvalidInputError, match=rf"input 0, position 1: token {equal!r} "
                                                    rf"\({type(equal).__name__}\) is not in the map"
                                                    rf".*it equals 1 \(int\) but is a different"):
            lookup_ids(ids, [2, equal], "input 0, ", "the map")
    with pytest.raises(InvalidInputError, match="position 0: token 'z' is not in the map"):
        lookup_ids(ids, ["z"], "input 0, ", "the map")


def test_the_tracr_encoder_refuses_true_for_the_token_1():
    model = compile_program(rasp.Map(lambda x: x + 1, rasp.tokens), [1, 2], 3)
    assert model.input_encoder.encode(["BOS", 1, 2]) == [2, 0, 1]
    with pytest.raises(InvalidInputError, match=r"True \(bool\) .*different value"):
        model.input_encoder.encode(["BOS", True])


def test_a_readout_with_no_columns_decodes_none():
    """An SOp whose only value is None owns no dimension: every position reads None."""
    empty = Readout("nothing", False, (), (), ())
    assert (decode_indices(empty, np.zeros((2, 3, 0))) == EMPTY).all()
    assert decode_readout(empty, np.zeros((3, 0))) == [None, None, None]
    program = rasp.Map(lambda x: None, rasp.tokens).named("nothing")
    model = compile_program(program, [1, 2], 3)
    assert model.readouts["nothing"].indices == ()
    assert model.run([[1, 2, 1]], backend="numpy") == [[None, None, None]]
    assert verify(program, model, exhaustive_up_to=3, backend="numpy", strict=True).ok


def test_token_ids_are_indices_into_the_vocab_and_nothing_else():
    """Ids 0..len(vocab)-1; len(vocab) is BOS's id in the embedding and is refused, as are
    negative ids, bools and floats."""
    model = compile_program(rasp.Map(lambda x: x + 1, rasp.tokens), [1, 2], 3)
    assert model.encode_ids([[0, 1], [1]]) == [[0, 1], [1]]
    assert model.run(np.array([[1, 0]]), ids=True, backend="numpy") == [[3, 2]]
    for bad in (2, -1, True, 1.0):
        with pytest.raises(InvalidInputError, match=rf"input 0, position 1: token ids must be "
                                                    rf"ints in 0..1 .*got {bad!r}"):
            model.encode_ids([[0, bad]])
