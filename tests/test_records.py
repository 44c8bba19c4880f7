"""The compilation record: only a model compiled in this session has one, and it is frozen."""

import dataclasses

import pytest

from rasp_compiler import rasp
from rasp_compiler.compiler import compile_program
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.model import CompiledModel
from rasp_compiler.records import CompilationRecord

PROGRAM = rasp.Map(lambda x: x.upper(), rasp.tokens).named("upper")
MODEL = compile_program(PROGRAM, ["a", "b"], 3)


def _rebuilt(model, **record):
    """The model built again from its parts, with `record` as the compilation arguments."""
    return CompiledModel(params=model.params, shape=model.shape, vocab=model.vocab,
                         max_seq_len=model.max_seq_len, bos=model.bos, pad=model.pad,
                         layout=model.layout, readouts=model.readouts, info=model.info, **record)


def test_a_compiled_model_holds_its_record_behind_read_only_properties():
    record = MODEL.compilation
    assert isinstance(record, CompilationRecord)
    assert record.program is PROGRAM and record.graph is record.ops.graph
    assert (MODEL.program, MODEL.ops, MODEL.schedule, MODEL.lowered) == (
        record.program, record.ops, record.schedule, record.lowered)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.program = rasp.tokens
    with pytest.raises(AttributeError):
        MODEL.ops = None


def test_a_loaded_model_has_no_record_and_checks_that_need_it_say_so(tmp_path):
    MODEL.save(tmp_path / "m")
    loaded = CompiledModel.load(tmp_path / "m")
    assert loaded.compilation is None
    assert (loaded.program, loaded.ops, loaded.schedule, loaded.lowered) == (None,) * 4
    assert loaded.run([["a", "b"]]) == [["A", "B"]]
    for check in (loaded.check_patterns, loaded.read_back):
        with pytest.raises(InvalidInputError, match="loaded from disk without it; compile the "
                                                    "program in this session to use"):
            check([["a"]])
    with pytest.raises(InvalidInputError, match="graph_picture draws the RASP program's graph"):
        loaded.graph_picture(tmp_path / "graph.png")


def test_the_record_may_be_given_as_its_four_parts_but_only_whole():
    record = MODEL.compilation
    parts = {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}
    assert _rebuilt(MODEL, **parts).compilation.ops is record.ops
    assert _rebuilt(MODEL, compilation=record).compilation is record
    with pytest.raises(InvalidInputError, match="got program=, ops= without schedule=, lowered="):
        _rebuilt(MODEL, program=record.program, ops=record.ops)
    with pytest.raises(InvalidInputError, match="got both compilation= and program="):
        _rebuilt(MODEL, compilation=record, program=record.program)
