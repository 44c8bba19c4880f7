"""Saved models: the round trip, the codec, and every corruption refused with a LoadError."""

import json
import shutil
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pytest

from rasp_compiler import persistence, rasp
from rasp_compiler.compiler import compile_program
from rasp_compiler.errors import LoadError, SaveError
from rasp_compiler.program_files import load_program
from rasp_compiler.model import CompiledModel

BATCH = [["a", "b", "c"], ["d"], ["b", "a", "d", "c"]]


@pytest.fixture(scope="module")
def model():
    spec = load_program("reverse")
    return compile_program(spec.make(4), spec.vocab, 4)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("saved") / "reverse")


@pytest.fixture
def copy(saved, tmp_path):
    """A fresh copy of the saved model to damage."""
    return shutil.copytree(saved, tmp_path / "model")


def edit_json(folder, change):
    data = json.loads((folder / "model.json").read_text())
    change(data)
    (folder / "model.json").write_text(json.dumps(data))


def edit_arrays(folder, change):
    with np.load(folder / "params.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    np.savez(folder / "params.npz", **arrays)


def refused(folder, message):
    with pytest.raises(LoadError, match=message) as info:
        CompiledModel.load(folder)
    assert str(folder) in str(info.value)
    return str(info.value)


def test_round_trip_keeps_outputs_and_everything_the_model_knows(model, saved):
    loaded = CompiledModel.load(saved)
    assert loaded.run(BATCH, backend="numpy") == model.run(BATCH, backend="numpy")
    assert loaded.info == model.info and loaded.shape == model.shape
    assert loaded.layout == model.layout and loaded.readouts == model.readouts
    assert (loaded.vocab, loaded.max_seq_len, loaded.bos, loaded.pad) == (
        model.vocab, model.max_seq_len, model.bos, model.pad)
    for module, inner in model.params.items():
        for name, value in inner.items():
            assert np.array_equal(loaded.params[module][name], value)


def test_a_causal_model_round_trips_with_its_mask_and_invariance_verdict(tmp_path):
    spec = load_program("reverse")
    model = compile_program(spec.make(4), spec.vocab, 4, causal=True)
    loaded = CompiledModel.load(model.save(tmp_path / "causal"))
    assert loaded.causal and loaded.shape.causal and loaded.info == model.info
    assert loaded.info.causally_invariant is False and "position" in loaded.info.causal_invariance
    assert loaded.run(BATCH, backend="numpy") == model.run(BATCH, backend="numpy")


def test_equal_but_different_values_and_tokens_round_trip(tmp_path):
    # JSON keeps 1, true, 1.0 and -0.0 apart, and the layout's dims m:0 and m:0.0 are two.
    program = rasp.SequenceMap(lambda x, i: (0 if x == i else 0.0, x), rasp.tokens, rasp.indices)
    model = compile_program(program, [1, True, -0.0, 0.0], 3)
    loaded = CompiledModel.load(model.save(tmp_path / "mixed"))
    assert loaded.layout == model.layout and loaded.readouts == model.readouts
    assert [(type(t), str(t)) for t in loaded.vocab] == [(type(t), str(t)) for t in model.vocab]
    batch = [[1, True, -0.0], [0.0, 1]]
    assert [[repr(v) for v in row] for row in loaded.run(batch, backend="numpy")] == [
        [repr(v) for v in row] for row in model.run(batch, backend="numpy")]


def test_load_builds_the_class_it_is_called_on(saved):
    class Traced(CompiledModel):
        pass

    assert type(Traced.load(saved)) is Traced


def test_saving_again_over_an_earlier_save_is_allowed(model, copy):
    model.save(copy)
    assert CompiledModel.load(copy).vocab == model.vocab
    assert sorted(p.name for p in copy.iterdir()) == ["model.json", "params.npz"]


def test_saving_onto_a_file_or_into_a_folder_of_other_things_is_refused(model, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SaveError, match="it is a file"):
        model.save(tmp_path / "file")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_text("x")
    with pytest.raises(SaveError, match=r"holds other files \(cat.png\) and no saved model"):
        model.save(tmp_path / "photos")
    with pytest.raises(SaveError, match="cannot save the model to"):
        model.save(tmp_path / "file" / "below")  # an OS error, reported as one SaveError


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "params.npz").write_bytes((f / "params.npz").read_bytes()[:500]),
     "params.npz is not an npz"),
    (lambda f: (f / "params.npz").write_bytes(b""), "params.npz is not an npz"),
    (lambda f: (f / "model.json").write_text((f / "model.json").read_text()[:300]),
     "model.json is not valid JSON"),
    (lambda f: (f / "model.json").write_text("[1, 2]"), "model.json holds a list"),
    (lambda f: (f / "params.npz").unlink(), "params.npz missing"),
    (lambda f: (f / "model.json").unlink(), "model.json missing"),
    (lambda f: shutil.rmtree(f), "no such folder"),
])
def test_damaged_or_missing_files_are_refused(copy, damage, message):
    damage(copy)
    refused(copy, message)


def test_a_missing_key_is_named_by_its_path(copy):
    edit_json(copy, lambda d: d["info"]["layers"][0]["heads"][0].pop("coldness"))
    refused(copy, r"model.json: info.layers\[0\].heads\[0\].coldness: missing")


def test_an_unknown_key_is_named(copy):
    edit_json(copy, lambda d: d["shape"]["layers"][1].update(bias=True))
    refused(copy, r"shape.layers\[1\].bias: unknown key \(a LayerShape has heads, key_size")
    edit_json(copy, lambda d: d["shape"]["layers"][1].pop("bias") and d.update(comment="hi"))
    refused(copy, "comment: unknown key")


def test_a_wrongly_typed_field_is_named(copy):
    edit_json(copy, lambda d: d.update(max_seq_len="4"))
    refused(copy, "max_seq_len: expected a whole number, got the string '4'")


def test_a_parameter_of_the_wrong_shape_is_refused(model, copy):
    d, keys = model.params["layer_1/attn/query"]["w"].shape
    edit_arrays(copy, lambda a: a.update({"layer_1/attn/query::w": np.zeros((d, keys - 1),
                                                                           np.float32)}))
    refused(copy, rf"layer_1/attn/query::w has shape \[{d}, {keys - 1}\], expected "
                  rf"\[{d}, {keys}\] = \[d_model, heads \* key_size\]")


def test_missing_extra_and_non_float32_parameters_are_refused(model, copy):
    shape = model.params["layer_0/mlp/linear_2"]["w"].shape
    edit_arrays(copy, lambda a: a.pop("layer_0/mlp/linear_2::w"))
    refused(copy, "missing the parameters layer_0/mlp/linear_2::w")
    edit_arrays(copy, lambda a: a.update({"layer_0/mlp/linear_2::w": np.zeros(shape),
                                          "layer_2/mlp/linear_1::w": np.zeros((23, 1))}))
    refused(copy, "unexpected parameters layer_2/mlp/linear_1::w")
    edit_arrays(copy, lambda a: a.pop("layer_2/mlp/linear_1::w"))
    refused(copy, "layer_0/mlp/linear_2::w has dtype float64, expected float32")


def test_a_non_finite_weight_is_refused(copy):
    def poison(arrays):
        arrays["pos_embed::embeddings"][2, 3] = np.nan

    edit_arrays(copy, poison)
    refused(copy, r"pos_embed::embeddings holds 1 non-finite values .* first at \[2, 3\]")


def test_an_edited_weight_fails_the_checksum(copy):
    def nudge(arrays):
        arrays["layer_0/mlp/linear_1::w"][0, 0] += 0.5

    edit_arrays(copy, nudge)
    refused(copy, r"model.json or params.npz was edited or corrupted \(checksum mismatch\)")


def test_an_edited_config_value_fails_the_checksum(copy):
    edit_json(copy, lambda d: d["info"].update(lower_bound=1))
    refused(copy, "checksum mismatch")


def test_a_reversed_vocab_is_refused_before_the_checksum(copy):
    edit_json(copy, lambda d: d["vocab"].reverse())
    refused(copy, r"vocab token 'd' \(token_embed row 0\) is embedded as tokens:a; "
                  r"was the vocab edited\?")


def test_a_vocab_of_the_wrong_size_is_refused(copy):
    edit_json(copy, lambda d: d["vocab"].append("e"))
    refused(copy, r"shape.vocab_size is 6, expected 7 \(5 vocab tokens \+ BOS \+ PAD\)")
    edit_json(copy, lambda d: d.update(vocab=["a", "b", "c", "BOS"]))
    refused(copy, "bos: the token 'BOS' is also in the vocab")


def test_a_readout_out_of_range_or_on_the_wrong_dims_is_refused(copy, model):
    def out_of_range(data):
        data["readouts"][-1]["indices"][0] = 99

    edit_json(copy, out_of_range)
    last = model.layout.width - 1
    refused(copy, rf"readouts\[4\] \('reverse'\): index 99 is outside the residual \(dims 0..{last}\)")

    def wrong_dim(data):
        data["readouts"][-1]["indices"][0] = 6  # tokens:a, not reverse:a

    edit_json(copy, wrong_dim)
    refused(copy, "index 6 is the dim tokens:a, not reverse:a")


def test_a_readout_for_a_missing_output_is_refused(copy):
    edit_json(copy, lambda d: d["info"].update(output="nothing"))
    refused(copy, "info.output 'nothing' has no readout")


def test_a_record_field_of_a_type_the_codec_lacks_is_a_bug_named_where_to_fix():
    from rasp_compiler.errors import InternalError
    from rasp_compiler.persistence import from_json, to_json

    with pytest.raises(InternalError, match=r"no JSON encoding for the type <class 'complex'>.*"
                                            r"extend persistence.to_json"):
        to_json(1j, complex)
    with pytest.raises(InternalError, match=r"extend persistence.from_json"):
        from_json([1, 0], complex)


def test_layers_numbered_from_one_are_refused(copy):
    def from_one(data):
        for layer in data["info"]["layers"]:
            layer["index"] += 1
    edit_json(copy, from_one)
    refused(copy, r"info.layers\[0\] is numbered 1 \(heads \[0\]\), not 0")


@pytest.mark.parametrize("version, message", [
    (1, r"saved by an older rasp_compiler \(format 1\); recompile and save again"),
    (2, r"saved by an older rasp_compiler \(format 2\); recompile and save again"),
    (4, r"saved by a newer rasp_compiler \(format 4; this one reads format 3\)"),
    ("3", "format: '3' is not a format version"),
])
def test_other_format_versions_are_refused(copy, version, message):
    edit_json(copy, lambda d: d.update(format=version))
    refused(copy, message)


def test_a_missing_checksum_is_refused(copy):
    edit_json(copy, lambda d: d.pop("checksum"))
    refused(copy, "checksum: missing")


def test_loading_never_unpickles(copy):
    np.save(copy / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    shutil.move(copy / "object.npy", copy / "params.npz")
    refused(copy, "params.npz is not an npz")


@dataclass(frozen=True)
class Inner:
    name: str
    weight: float = 0.0


@dataclass(frozen=True)
class Outer:
    count: int
    maybe: bool | None
    inners: tuple[Inner, ...]
    pairs: tuple[tuple[str, int], ...]
    groups: Mapping[str, tuple[str, ...]]
    anything: Any
    values: tuple = ()


def test_the_codec_round_trips_nested_dataclasses_from_their_type_hints():
    value = Outer(2, None, (Inner("x", 1.5), Inner("y")), (("a", 1),), {"g": ("p", "q")},
                  ("t", (1, None)), (1, "b", (2.0,)))
    data = json.loads(json.dumps(persistence.to_json(value)))
    assert data["anything"] == {"tuple": ["t", {"tuple": [1, None]}]}
    assert persistence.from_json(data, Outer) == value
    flagged = Outer(2, True, (), (), {}, None)
    assert persistence.from_json(persistence.to_json(flagged), Outer) == flagged
    # A field added later with a default: files written before it load with the default.
    older = persistence.to_json(Outer(1, None, (Inner("x", 2.0),), (), {}, None))
    del older["inners"][0]["weight"], older["values"]
    assert persistence.from_json(older, Outer) == Outer(1, None, (Inner("x"),), (), {}, None)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["inners"][1].pop("name"), r"inners\[1\].name: missing"),
    (lambda d: d["pairs"][0].append(3), r"pairs\[0\]: expected 2 items, got 3"),
    (lambda d: d["groups"].update(g=[1]), r"groups\['g'\]\[0\]: expected a string, got the number 1"),
    (lambda d: d.update(anything=[1]), r"anything: expected a value .* got a list"),
    (lambda d: d.update(count=True), "count: expected a whole number, got true"),
    (lambda d: d.update(maybe=1), "maybe: expected true or false, got the number 1"),
])
def test_the_codec_names_the_path_of_what_is_wrong(change, message):
    data = persistence.to_json(Outer(1, None, (Inner("x"), Inner("y")), (("a", 1),), {"g": ()}, None))
    change(data)
    with pytest.raises(LoadError, match=message):
        persistence.from_json(data, Outer)


def test_values_a_saved_model_cannot_hold_are_refused_on_save():
    with pytest.raises(SaveError, match=r"cannot save the value frozenset\(\{1\}\)"):
        persistence.to_json(Outer(1, None, (), (), {}, frozenset({1})))
