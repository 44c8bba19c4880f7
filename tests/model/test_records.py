"""The compilation record: only a model compiled in this session has one, and it is frozen."""

import dataclasses

import pytest

from rasp_compiler import rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.records import CompilationRecord

PROGRAM = rasp.Map(lambda x: x.upper(), rasp.tokens).named("upper")
MODEL = compile_program(PROGRAM, ["a", "b"], 3)


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
