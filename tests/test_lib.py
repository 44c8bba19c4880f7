"""tracr's lib programs: bad arguments are refused with the function and a fix named."""

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.errors import InvalidProgramError


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
