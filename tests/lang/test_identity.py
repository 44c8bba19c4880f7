"""Value identity: equal values of different type or sign of zero are different values."""

import numpy as np
import pytest

from rasp_compiler.lang.identity import (ValueMap, as_number, distinct_values, find_clash, identity_key,
                                    same_value, value_dict)


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


def test_same_value_tells_equal_values_apart_element_by_element():
    assert same_value((0, "a"), (0, "a")) and not same_value((0, "a"), (0.0, "a"))
    assert same_value(-0.0, -0.0) and not same_value(-0.0, 0.0) and not same_value(0, False)
    assert same_value(np.float64(-0.0), -0.0) and not same_value(np.float64(0.0), -0.0)
    assert not same_value((1, 2), (1, 2, 3)) and not same_value("1", 1)


def test_distinct_values_keeps_equal_but_different_values():
    merged = distinct_values([1, 2, 1])
    assert isinstance(merged, set) and merged == {1, 2}  # no clash: the set itself
    kept = distinct_values([0, 0.0, 1, 0, -0.0, np.int64(1), (1,), (True,)])
    assert [identity_key(v) for v in kept] == [identity_key(v)
                                               for v in (0, 0.0, 1, -0.0, (1,), (True,))]


def test_a_value_map_has_a_key_for_each_value():
    ids = ValueMap([(1, "int"), (True, "bool"), (1.0, "float"), (0.0, "zero"), (-0.0, "minus")])
    assert len(ids) == 5 and list(ids) == [1, True, 1.0, 0.0, -0.0]
    assert ids[True] == "bool" and ids[np.int64(1)] == "int" and ids[-0.0] == "minus"
    assert 2 not in ids and [1] not in ids and ids.get(2) is None
    with pytest.raises(KeyError, match="no key 2 "):
        ids[2]
    with pytest.raises(TypeError):  # Mappings are read-only
        ids[2] = "two"
    assert dict(ids.items())[1] == "float"  # what a dict does to it: keys merge
    # value_dict: a plain dict unless two keys would merge
    assert type(value_dict([("a", 0), (1, 1)])) is dict
    assert isinstance(value_dict([(1, 0), (True, 1)]), ValueMap)


def test_residual_dims_of_equal_but_different_values_are_different_dims():
    from rasp_compiler.model.residual import Dim, build_layout

    dims = [Dim("m", 0), Dim("m", 0.0), Dim("m", -0.0), Dim("m", False), Dim("m", (0,)),
            Dim("m", (0.0,))]
    assert len(set(dims)) == 6 and Dim("m", 0) != Dim("m", 0.0)
    assert Dim("m", 1) == Dim("m", np.int64(1)) and Dim("m", "a") == Dim("m", "a")
    assert [str(d) for d in dims] == ["m:0", "m:0.0", "m:-0.0", "m:False", "m:(0,)", "m:(0.0,)"]
    assert Dim("x").is_numerical and Dim("x").sop == "x" and Dim("m", 0.0).value == 0.0
    assert repr(Dim("m", 0.0)) == "Dim(sop='m', value=0.0)"
    layout = build_layout([("m", False, (0, -0.0, 0.0, True, 1, None))])
    assert [layout.index[Dim("m", v)] for v in (0, -0.0, 0.0, True, 1)] == [2, 3, 4, 5, 6]
    import copy
    import pickle
    assert pickle.loads(pickle.dumps(Dim("m", -0.0))) == Dim("m", -0.0)
    assert copy.deepcopy(Dim("m", True)) == Dim("m", True)
