"""Saved models: the round trip, the codec, and every corruption refused with a LoadError."""

import json
import shutil
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pytest

from rasp_compiler import rasp
from rasp_compiler.model import json_codec, persistence
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import LoadError, SaveError
from rasp_compiler.program_files import load_program
from rasp_compiler.model.compiled import CompiledModel

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
    from rasp_compiler.model.json_codec import from_json, to_json

    with pytest.raises(InternalError, match=r"no JSON encoding for the type <class 'complex'>.*"
                                            r"extend json_codec.to_json"):
        to_json(1j, complex)
    with pytest.raises(InternalError, match=r"extend json_codec.from_json"):
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
    (5, r"saved by a newer rasp_compiler \(format 5; this one reads format 4\)"),
    ("4", "format: '4' is not a format version"),
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
    data = json.loads(json.dumps(json_codec.to_json(value)))
    assert data["anything"] == {"tuple": ["t", {"tuple": [1, None]}]}
    assert json_codec.from_json(data, Outer) == value
    flagged = Outer(2, True, (), (), {}, None)
    assert json_codec.from_json(json_codec.to_json(flagged), Outer) == flagged
    # A field added later with a default: files written before it load with the default.
    older = json_codec.to_json(Outer(1, None, (Inner("x", 2.0),), (), {}, None))
    del older["inners"][0]["weight"], older["values"]
    assert json_codec.from_json(older, Outer) == Outer(1, None, (Inner("x"),), (), {}, None)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["inners"][1].pop("name"), r"inners\[1\].name: missing"),
    (lambda d: d["pairs"][0].append(3), r"pairs\[0\]: expected 2 items, got 3"),
    (lambda d: d["groups"].update(g=[1]), r"groups\['g'\]\[0\]: expected a string, got the number 1"),
    (lambda d: d.update(anything=[1]), r"anything: expected a value .* got a list"),
    (lambda d: d.update(count=True), "count: expected a whole number, got true"),
    (lambda d: d.update(maybe=1), "maybe: expected true or false, got the number 1"),
])
def test_the_codec_names_the_path_of_what_is_wrong(change, message):
    data = json_codec.to_json(Outer(1, None, (Inner("x"), Inner("y")), (("a", 1),), {"g": ()}, None))
    change(data)
    with pytest.raises(LoadError, match=message):
        json_codec.from_json(data, Outer)


def test_values_a_saved_model_cannot_hold_are_refused_on_save():
    with pytest.raises(SaveError, match=r"cannot save the value frozenset\(\{1\}\)"):
        json_codec.to_json(Outer(1, None, (), (), {}, frozenset({1})))


# ------------------------------------------------- params.npz held to model.json before reading


def arrays_of(folder):
    with np.load(folder / "params.npz") as archive:
        return {key: archive[key] for key in archive.files}


def npy_bytes(array=None, header=None, data=b""):
    """An .npy entry: `array` as numpy writes it, or a version 1.0 `header` dict and raw data."""
    import io

    buffer = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(data)
    return buffer.getvalue()


def write_npz(folder, entries, *, extra=None):
    """params.npz holding `entries` (name -> .npy bytes), stored as np.savez does; `extra`
    (name, shape of zeros) is appended deflated, streamed, never held in memory."""
    import zipfile

    with zipfile.ZipFile(folder / "params.npz", "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    if extra is not None:
        name, shape = extra
        with zipfile.ZipFile(folder / "params.npz", "a", zipfile.ZIP_DEFLATED,
                             compresslevel=1) as archive:
            with archive.open(name, "w", force_zip64=True) as entry:
                entry.write(npy_bytes(header={"descr": "<f4", "fortran_order": False,
                                              "shape": shape})[:128])
                left, chunk = 4 * int(np.prod(shape)), bytes(1 << 24)
                while left > 0:
                    entry.write(chunk[:left])
                    left -= len(chunk)


def refused_quickly(folder, message, seconds=2.0, megabytes=50, **load):
    """Refused, in under `seconds` and with Python's allocations (numpy's included) peaking
    under `megabytes`: nothing of the oversized array was read."""
    import time
    import tracemalloc

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(LoadError, match=message) as info:
            CompiledModel.load(folder, **load)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < seconds and peak < megabytes * 1e6, (elapsed, peak)
    assert str(folder) in str(info.value)
    return str(info.value)


def test_a_header_declaring_a_huge_shape_is_refused_before_any_data_is_read(copy):
    # It used to raise numpy's raw _ArrayMemoryError (36.4 TiB), a CLI traceback.
    entries = {f"{key}.npy": npy_bytes(value) for key, value in arrays_of(copy).items()}
    entries["token_embed::embeddings.npy"] = npy_bytes(
        header={"descr": "<f4", "fortran_order": False, "shape": (10**13,)}, data=bytes(456))
    write_npz(copy, entries)
    refused_quickly(copy, r"params.npz: token_embed::embeddings has shape \[10000000000000\], "
                          r"expected \[6, 19\] = \[vocab_size, d_model\] from model.json")


def test_an_extra_compressed_array_is_refused_from_the_zip_directory(copy):
    # The case: 1e9 zeros took 4.1 GB and 29 s before "unexpected parameters";
    # 1e8 here (400 MB uncompressed, 1.8 MB on disk) keeps the test fast.
    entries = {f"{key}.npy": npy_bytes(value) for key, value in arrays_of(copy).items()}
    write_npz(copy, entries, extra=("zzz.npy", (10**8,)))
    refused_quickly(copy, r"params.npz: unexpected parameters zzz \(model.json declares 14 "
                          r"arrays\)")


def test_an_expected_array_that_holds_more_than_its_shape_is_refused_unread(copy):
    entries = {f"{key}.npy": npy_bytes(value) for key, value in arrays_of(copy).items()}
    del entries["layer_0/mlp/linear_1::w.npy"]
    write_npz(copy, entries, extra=("layer_0/mlp/linear_1::w.npy", (10**8,)))
    refused_quickly(copy, r"params.npz: layer_0/mlp/linear_1::w holds 400.0 MB once "
                          r"uncompressed, more than its expected shape \[19, 9\] needs")


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update({"notes.txt": b"hi"}),
     "params.npz holds 'notes.txt', which is not an array"),
    (lambda e: e.update({"pos_embed::embeddings.npy": e["pos_embed::embeddings.npy"] + b"\0"}),
     r"pos_embed::embeddings holds 509 bytes, but its header and shape make 508"),
    (lambda e: e.update({"pos_embed::embeddings.npy": e["pos_embed::embeddings.npy"][:-4]}),
     "pos_embed::embeddings holds 504 bytes, but its header and shape make 508"),
    (lambda e: e.update({"pos_embed::embeddings.npy": b"\x93NUMPY\x01\x00\xff\xff" + bytes(600)}),
     r"pos_embed::embeddings has a 65.5 kB .npy header; numpy writes about 128 bytes"),
    (lambda e: e.update({"pos_embed::embeddings.npy": b"\x93NUMPY\x03\x00" + bytes(600)}),
     r"pos_embed::embeddings has .npy format version 3.0"),
    (lambda e: e.update({"pos_embed::embeddings.npy": npy_bytes(np.zeros((5, 19), ">f4"))}),
     "pos_embed::embeddings has dtype >f4, expected float32"),
])
def test_each_entry_is_checked_from_its_sizes_and_header(copy, change, message):
    entries = {f"{key}.npy": npy_bytes(value) for key, value in arrays_of(copy).items()}
    change(entries)
    write_npz(copy, entries)
    refused_quickly(copy, message)


def test_a_repeated_entry_is_refused(copy):
    import warnings

    entries = {f"{key}.npy": npy_bytes(value) for key, value in arrays_of(copy).items()}
    write_npz(copy, entries)
    import zipfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(copy / "params.npz", "a") as archive:
            archive.writestr("pos_embed::embeddings.npy", entries["pos_embed::embeddings.npy"])
    refused_quickly(copy, "params.npz holds two entries named 'pos_embed::embeddings.npy'")


def test_a_model_json_declaring_a_huge_model_is_refused_before_params_npz_is_opened(copy):
    def huge(data):
        data["max_seq_len"] = 10**12
        data["shape"]["max_positions"] = 10**12 + 1

    edit_json(copy, huge)
    (copy / "params.npz").write_bytes(b"never opened")
    message = refused_quickly(copy, r"the shape in model.json declares 19,000,000,000,\d+ "
                                    r"parameters \(76.0 TB of float32\), more than "
                                    r"max_parameters=200,000,000 allows")
    assert "CompiledModel.load(path, max_parameters=N)" in message


def test_max_parameters_bounds_what_a_load_may_declare(saved, model):
    count = model.parameter_count()
    refused_quickly(saved, f"declares {count:,} parameters", max_parameters=count - 1)
    assert CompiledModel.load(saved, max_parameters=count).parameter_count() == count
    with pytest.raises(LoadError, match="max_parameters must be a positive int, got 0"):
        CompiledModel.load(saved, max_parameters=0)


def test_an_oversized_model_json_is_refused_unread(copy):
    with open(copy / "model.json", "ab") as handle:
        handle.truncate(persistence.config_byte_limit(persistence.DEFAULT_MAX_PARAMETERS) + 1)
    message = refused_quickly(copy, r"model.json is 67.1 MB, more than a saved model of at "
                                    r"most 200,000,000 parameters writes")
    assert "not valid JSON" not in message


def test_the_checksum_catches_damage_but_is_no_signature(copy, model):
    """What docs/compiler.md promises: any change without a matching checksum is refused;
    a deliberate edit that writes a new checksum loads (the checksum has no key)."""
    def double_a_weight(arrays):
        arrays["layer_1/attn/value::w"] *= 2

    edit_arrays(copy, double_a_weight)
    refused(copy, "checksum mismatch")
    data = json.loads((copy / "model.json").read_text())
    data.pop("checksum")
    data["checksum"] = persistence._checksum(data, arrays_of(copy))
    (copy / "model.json").write_text(json.dumps(data))
    np.testing.assert_array_equal(CompiledModel.load(copy).params["layer_1/attn/value"]["w"],
                                  2 * model.params["layer_1/attn/value"]["w"])


def test_a_repeated_key_is_named_not_called_invalid_json(copy):
    text = (copy / "model.json").read_text()
    (copy / "model.json").write_text(text.replace('"format": 4,', '"format": 4, "format": 4,', 1))
    message = refused(copy, "model.json: the key 'format' appears twice in one object")
    assert "not valid JSON" not in message


def resealed(folder, change):
    """Edit model.json and write a matching checksum: what an older save, or a save with
    another source, holds."""
    data = json.loads((folder / "model.json").read_text())
    change(data)
    data.pop("checksum")
    with np.load(folder / "params.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    data["checksum"] = persistence._checksum(data, arrays)
    (folder / "model.json").write_text(json.dumps(data))


def test_a_model_keeps_the_name_and_reference_of_its_program(tmp_path):
    from rasp_compiler.program_files import ProgramSource

    spec = load_program("reverse")
    model = spec.compile(max_seq_len=4)
    assert model.source == ProgramSource("reverse", "reverse") and model.name == "reverse"
    loaded = CompiledModel.load(model.save(tmp_path / "m"))
    assert loaded.source == model.source and loaded.compilation is None
    data = json.loads((tmp_path / "m" / "model.json").read_text())
    assert data["format"] == 4 and data["source"] == {"name": "reverse", "reference": "reverse"}


def test_format_3_saves_still_load_without_a_source(copy):
    resealed(copy, lambda d: (d.update(format=3), d.pop("source")))
    loaded = CompiledModel.load(copy)
    assert loaded.source is None and loaded.run(BATCH, backend="numpy")[0] == ["c", "b", "a"]
    resealed(copy, lambda d: d.update(source={"name": "reverse", "reference": "reverse"}))
    refused(copy, "source: unknown key in format 3")


@pytest.mark.parametrize("source, message", [
    ({"name": "", "reference": "reverse"}, "source.name: '' is not a program's name"),
    ({"name": "reverse", "reference": "a\nb"}, "source.reference: .* is not a program's reference"),
    ({"name": "reverse"}, "source.reference: missing"),
    ({"name": "reverse", "reference": 3}, "source.reference: expected a string"),
])
def test_a_bad_source_is_refused(copy, source, message):
    resealed(copy, lambda d: d.update(source=source))
    refused(copy, message)


def test_a_loaded_model_finds_its_program_again_only_if_it_compiles_to_the_same_weights(
        tmp_path):
    from rasp_compiler.program_files import reload_program

    path = tmp_path / "mine.py"
    path.write_text('VOCAB = ("a", "b")\nMAX_SEQ_LEN = 3\nfrom rasp_compiler import lib\n'
                    'def make():\n    return lib.make_hist()\n')
    spec = load_program(f"{path}:make")
    assert spec.source.reference == f"{path.resolve()}:make" and spec.source.name == "mine"
    saved = spec.compile().save(tmp_path / "saved")
    again, note = reload_program(CompiledModel.load(saved))
    assert note == "" and again.compilation is not None and again.source == spec.source
    assert again.run([["a", "b", "a"]]) == [[2, 1, 2]]
    path.write_text('VOCAB = ("a", "b")\nMAX_SEQ_LEN = 3\nfrom rasp_compiler import lib\n'
                    'def make():\n    return lib.make_length()\n')
    same, note = reload_program(CompiledModel.load(saved))
    assert same.compilation is None and "no longer compiles to these weights" in note
    path.unlink()
    same, note = reload_program(CompiledModel.load(saved))
    assert same.compilation is None and "could not be loaded and compiled again" in note
    assert "does not exist" in note
    unnamed = compile_program(spec.make(), spec.vocab, 3)  # from Python: no source
    same, note = reload_program(CompiledModel.load(unnamed.save(tmp_path / "unnamed")))
    assert same.compilation is None and "saved without the name of its program" in note
