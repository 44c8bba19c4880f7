"""Value identity: equal values of different type or sign of zero are different values."""

import numpy as np
import pytest

from rasp_compiler.identity import as_number, find_clash, identity_key, same_value


@pytest.mark.parametrize("a, b", [
    (True, 1), (1, 1.0), (False, 0.0), (0.0, -0.0), (1, 1 + 0j),
    ((1, "a"), (True, "a")), ((0.0,), (-0.0,)), (frozenset({1}), frozenset({True})),
])
def test_equal_values_of_another_type_or_sign_are_not_the_same(a, b):
    assert a == b
    assert not same_value(a, b)
    assert find_clash([a, "x", b]) == (0, 2)


@pytest.mark.parametrize("a, b", [
    (1, 1), ("a", "a"), (0.0, 0.0), (-0.0, -0.0), ((1, "b"), (1, "b")),
    (np.int64(3), 3), (np.float64(0.5), 0.5), (np.bool_(True), True), (np.str_("a"), "a"),
])
def test_the_same_value_and_numpy_scalars_of_it_are_the_same(a, b):
    assert same_value(a, b)
    assert find_clash([a, b, a]) is None


def test_find_clash_passes_clean_collections_and_finds_the_first_clash():
    assert find_clash(list(range(1000)) + ["a", 0.5, None]) is None
    assert find_clash([0.0, 1.0, 2.0, 0.0]) is None
    assert find_clash([None, 0, 5, 0.0]) == (1, 3)
    assert find_clash([3, 2.5, -0.0, "z", 0.0]) == (2, 4)
    assert find_clash([1]) is None and find_clash([]) is None
    assert identity_key(float("nan")) != identity_key(1.0)


def test_numerical_values_become_floats_and_the_rest_is_kept():
    assert [as_number(v) for v in (True, 1, np.int64(2), 0.5, None, "a")] == [1.0, 1.0, 2.0, 0.5,
                                                                                None, "a"]
    assert type(as_number(True)) is float and type(as_number(np.float32(0.5))) is float
    assert str(as_number(-0.0)) == "0.0" and str(as_number(np.float64(-0.0))) == "0.0"


def test_tuples_of_one_type_are_checked_column_by_column():
    # A SequenceMap's pairs: no clash unless some column has one (as fast as a flat list).
    pairs = [(x, i) for x in range(100) for i in range(100)] + [None]
    assert find_clash(pairs) is None
    assert find_clash(pairs + [(True, 0)]) == (100, len(pairs))  # (1, 0) and (True, 0)
    # Equal elements in a column that never meet in equal tuples: no clash.
    assert find_clash([(1, "a"), (True, "b")]) is None
    assert find_clash([((0.0, 1), "x"), (2,), ((-0.0, 1), "x")]) == (0, 2)
    assert find_clash([(1, 2), (1, 2, 3), (1.0, 2, 3)]) == (1, 2)
