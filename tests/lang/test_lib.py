"""tracr's lib programs: bad arguments are refused with the function and a fix named."""

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.verify.checker import verify


@pytest.mark.parametrize("make", [lib.make_dyck, lib.make_shuffle_dyck], ids=lambda f: f.__name__)
@pytest.mark.parametrize("pairs", [[], "()", ["()", "["], ["()", ("(", ")")]], ids=repr)
def test_bracket_programs_refuse_pairs_that_are_not_two_character_strings(make, pairs):
    with pytest.raises(InvalidProgramError, match=rf"{make.__name__}: pairs must be a list of "
                                                  r"two-character strings.*such as \['\(\)', '\{\}'\]"):
        make(pairs)
    with pytest.raises(ValueError):  # as tracr's lib raises
        make(pairs)


def test_detect_pattern_refuses_an_empty_pattern():
    with pytest.raises(InvalidProgramError, match=r"detect_pattern: the pattern must have at "
                                                  r"least one element, got \[\]; pass the tokens"):
        lib.detect_pattern(rasp.tokens, [])


# --------------------------------------------------------------------------- tracr's names


def _compiled_and_verified(program, vocab, max_seq_len, exhaustive_up_to):
    model = compile_program(program, vocab, max_seq_len)
    report = verify(program, model, exhaustive_up_to=exhaustive_up_to)
    assert report.ok, report
    return model


def test_module_level_length_is_tracrs():
    assert isinstance(lib.length, rasp.SelectorWidth) and lib.length.label == "length"
    assert lib.length("abcdefg") == [7] * 7
    assert lib.make_length() is not lib.length and lib.make_length()("ab") == [2, 2]
    model = _compiled_and_verified(lib.length, ["a", "b"], 4, 4)
    assert model.run([["a", "b", "b"]]) == [[3, 3, 3]]
    reverse = lib.make_reverse(rasp.tokens)  # reads lib.length, as tracr's does
    assert any(expr is lib.length for expr in build_graph(reverse).exprs())


@pytest.mark.slow
def test_make_shuffle_dyck2_is_shuffle_dyck_over_two_pairs():
    program = lib.make_shuffle_dyck2()
    assert program.label == "shuffle_dyck2"
    assert program(list("({)}")) == [True] * 4
    assert program(list("(){)}")) == [False] * 5
    assert program(list("{}(")) == [False] * 3
    model = _compiled_and_verified(program, ["(", ")", "{", "}"], 4, 4)
    assert model.run([list("({)}")]) == [[True] * 4]


def test_make_nary_sequencemap_applies_f_to_every_sop():
    three = lib.make_nary_sequencemap(lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens,
                                      rasp.indices)
    assert three([1, 2, 3]) == [2, 3, 4]
    assert isinstance(three, rasp.Map) and isinstance(three.inner, rasp.SequenceMap)
    model = _compiled_and_verified(three, [1, 2, 3], 3, 3)
    assert model.run([[1, 2, 3]]) == [[2, 3, 4]]
    ratio = lib.make_nary_sequencemap(lambda x, y, z: x * y / z, rasp.indices, rasp.indices,
                                      rasp.tokens)
    assert ratio([1, 2, 3]) == [0, 1 / 2, 4 / 3]
    one = lib.make_nary_sequencemap(lambda x: x * 10, rasp.tokens)
    assert one([1, 2]) == [10, 20]
    pairs = rasp.SequenceMap(lambda x, i: (x, i), rasp.tokens, rasp.indices)
    nested = lib.make_nary_sequencemap(lambda p, y: p[0] + y, pairs, rasp.tokens)
    assert nested([1, 2]) == [2, 4]  # a tuple-valued first SOp stays one argument
    with pytest.raises(InvalidProgramError, match="make_nary_sequencemap: pass the function and "
                                                  "at least one SOp"):
        lib.make_nary_sequencemap(lambda: 0)


def test_lib_has_every_name_tracrs_lib_has():
    from tracr.compiler import lib as tracr_lib

    assert tracr_lib is not lib
    public = {name for name in vars(tracr_lib) if not name.startswith("_")
              and name not in {"List", "Sequence", "rasp"}}
    assert public <= set(vars(lib)), sorted(public - set(vars(lib)))
