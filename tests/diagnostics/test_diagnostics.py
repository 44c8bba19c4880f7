"""Diagnostics: layout, residual map, pattern check, read-back, pictures, HTML."""

import json
from html.parser import HTMLParser

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import InvalidInputError, UnknownNameError
from rasp_compiler.model.compiled import CompiledModel

from cases import CASES
from picture_checks import assert_picture

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")


def sample_inputs(case, count=6):
    import random

    rng = random.Random(7)
    return [[rng.choice(case.vocab) for _ in range(rng.randint(1, case.max_seq_len))]
            for _ in range(count)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_layout_places_every_node_once_and_checks_pass(case, compiled_case):
    model = compiled_case(case)
    layout = model.layer_plan_report()
    labels = [node.label for node in layout.nodes]
    assert sorted(labels) == sorted(model.ops.graph.order)  # every node, exactly once
    assert all(node.place != "unused" for node in layout.nodes if node.label == model.output)
    inputs = sample_inputs(case)
    # The numpy forward records the same hooks (tests/model/test_model.py checks it against
    # the jitted one) without an XLA compilation per model.
    patterns = model.check_patterns(inputs, backend="numpy")
    assert patterns.passed, str(patterns)
    readback = model.read_back(inputs, backend="numpy")
    assert readback.agrees, str(readback)
    assert readback.first_divergence is None


@pytest.fixture(scope="module")
def reverse():
    return compile_program(lib.make_reverse(rasp.tokens), ["a", "b", "c"], 5)


def test_layout_text_json_and_repr(reverse):
    layout = reverse.layer_plan_report()
    text = str(layout)
    assert "L1H0 aggregate reverse" in text and "query opp_index; key indices; value tokens" in text
    assert "layer 1" in text and "mlp: (empty)" in text
    data = json.loads(layout.to_json())
    assert data["depth"] == 2 and data["layers"][0]["mlp"][0]["units"] == ["length", "opp_index"]
    assert repr(layout) == "LayerPlanReport(depth=2, lower_bound=2, heads=[1, 1])"
    assert layout.node("opp_index_minus_1").place == "folded"
    assert layout.node("length").place == "head+mlp"


def test_unknown_names_are_refused_with_the_names_there_are(reverse):
    with pytest.raises(UnknownNameError, match=r"no node 'nothing' in .* have \['indices'"):
        reverse.layer_plan_report().node("nothing")
    with pytest.raises(KeyError, match=r"no selector 'nothing' in this model; have \['all_true', 'flip'\]"):
        reverse.selector_report().entry("nothing")


def test_residual_map_names_writers_and_readers(reverse):
    entries = {e.owner: e for e in reverse.residual_map().entries}
    assert entries["one"].start == 0 and entries["bos"].start == 1
    assert entries["opp_index"].written_by.startswith("layer 0 MLP")
    assert "L1H0 query" in entries["opp_index"].read_by
    assert entries["reverse"].read_by == ("decoder",)
    assert entries["tokens"].values == ("a", "b", "c")
    assert json.loads(reverse.residual_map().to_json())["width"] == reverse.layout.width


def test_layers_are_numbered_from_zero_everywhere_users_see_them(reverse):
    from rasp_compiler.model.hooks import Slot

    layout, residual = str(reverse.layer_plan_report()), str(reverse.residual_map())
    _, cache = reverse.run_with_cache([["a", "b"]])
    for position, layer in enumerate(reverse.info.layers):
        assert layer.index == position and f"layer {position}:" in reverse.summary()
        for head in layer.heads:  # L{l}H{i} is head i of blocks.{l}, in layer l's attention
            assert head.name == f"L{position}H{head.index}"
            assert f"{head.name} (layer {position} attention)" in layout
            assert cache[f"blocks.{position}.attn.hook_pattern"].shape[1] == len(layer.heads)
    assert "written by L1H0 (layer 1 attention)" in residual  # reverse, the last head
    assert Slot.attention(0).name == "layer 0 attention"
    assert Slot.mlp(1).name == "layer 1 MLP"
    assert Slot.mlp(reverse.depth - 1).residual_after == f"blocks.{reverse.depth - 1}.hook_resid_post"


def test_head_and_selector_maps(reverse):
    assert reverse.head_to_selector() == {"L0H0": "all_true", "L1H0": "flip"}
    assert reverse.selector_to_heads() == {"all_true": ["L0H0"], "flip": ["L1H0"]}


def _corrupted(model, layer, factor):
    """A copy of `model` (sharing its program and compiled forward) whose layer's key
    weights are scaled by `factor`; the shared model is left as it was."""
    import copy

    broken = copy.copy(model)
    broken.params = {k: dict(v) for k, v in model.params.items()}
    broken.params[f"layer_{layer}/attn/key"]["w"] = model.params[f"layer_{layer}/attn/key"]["w"] * factor
    return broken


def test_a_corrupted_head_fails_the_pattern_check_and_read_back_finds_it(compiled_case):
    (case,) = [case for case in CASES if case.name == "program:sort_freq"]  # vocab abc, length 5
    good = compiled_case(case)
    inputs = [["a", "b", "b"], ["c", "a", "c", "b"]]
    assert good.check_patterns(inputs).passed
    model = _corrupted(good, 1, 0.05)  # layer 1's head (smaller -> target_pos) loses its coldness
    patterns = model.check_patterns(inputs)
    failed = patterns.failed()[0]  # later heads read its wrong output and fail too
    assert [h.head for h in patterns.heads if h.passed][0] == "L0H0"
    assert failed.head == "L1H0"
    assert model.layer_plan_report().node("target_pos").where.startswith("counted by L1H0")
    assert failed.worst_input in {tuple(x) for x in inputs} and failed.worst_query is not None
    assert "FAIL at input" in str(patterns)
    readback = model.read_back(inputs)
    first = readback.first_divergence
    assert first.label == "target_pos" and first.written_after == "layer 1 MLP"
    assert "first divergence: target_pos after layer 1 MLP" in str(readback)


def _dark_cells(pixels):
    """Pixels of the heatmap's darkest blue (weight 1) in the left (ideal) and right
    (compiled) halves of the picture."""
    dark = (pixels[..., 0] < 60) & (pixels[..., 2] > 80)
    half = pixels.shape[1] // 2
    return int(dark[:, :half].sum()), int(dark[:, half:].sum())


def test_pictures_are_produced(reverse, tmp_path):
    heat = reverse.attention_heatmaps(["a", "b", "c"], tmp_path / "heads.png")
    pixels = assert_picture(heat, 400, 400)
    ideal, compiled = _dark_cells(pixels)  # an exact model: the compiled cells are the ideal's
    assert ideal == compiled > 1_000
    broken = _corrupted(reverse, 1, 0.05).attention_heatmaps(["a", "b", "c"], tmp_path / "b.png")
    ideal, compiled = _dark_cells(assert_picture(broken, 400, 400))
    assert compiled < ideal / 2  # the cold head's weight-1 cells are spread thin
    with pytest.raises(InvalidInputError, match="has the suffix .gif"):
        reverse.graph_picture(tmp_path / "graph.gif")  # refused before Graphviz is looked for


def test_the_graph_picture_is_drawn_by_graphviz(reverse, tmp_path):
    from conftest import system_tool

    system_tool("dot")
    graph = reverse.graph_picture(tmp_path / "graph.png")
    svg = reverse.graph_picture(tmp_path / "graph.svg")
    pixels = assert_picture(graph, 400, 150)
    assert pixels.shape[1] > 2 * pixels.shape[0]  # laid out left to right
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_without_graphviz_the_graph_picture_says_how_to_install_it(reverse, tmp_path,
                                                                   monkeypatch):
    from rasp_compiler.errors import MissingDependencyError

    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    with pytest.raises(MissingDependencyError, match="apt-get install graphviz"):
        reverse.graph_picture(tmp_path / "graph.png")


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]  # the IHDR chunk: width, height (big-endian)
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_heatmaps_are_sized_to_their_content(reverse, tmp_path):
    short = _png_size(reverse.attention_heatmaps(["a"], tmp_path / "short.png"))
    long = _png_size(reverse.attention_heatmaps(list("abcab"), tmp_path / "long.png"))
    assert long[0] > short[0] and long[1] > short[1]  # more positions, bigger cells area
    assert long[1] < 1500  # two heads of 6 positions: no wasted canvas


def test_the_graph_is_laid_out_by_layer_with_readable_labels(reverse, tmp_path):
    from rasp_compiler.diagnostics.pictures import graph_dot

    dot = graph_dot(reverse)
    assert "rankdir=LR" in dot
    assert 'subgraph cluster_embeddings { label="embeddings"' in dot
    assert 'label="layer 0"' in dot and 'label="layer 1"' in dot and 'label="layer 2"' not in dot
    assert dot.count(" -> ") == reverse.ops.graph.graph.number_of_edges()
    from conftest import system_tool

    system_tool("dot")
    svg = reverse.graph_picture(tmp_path / "graph.svg").read_text()
    for label in reverse.ops.graph.order:  # every node's label is drawn as text, whole
        assert f">{label}</text>" in svg


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls, self.data = [], [], {}
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.urls += [attrs[name] for name in ("src", "href") if name in attrs]
        self._in_data = attrs.get("id") == "explorer-data"

    def handle_data(self, data):
        if self._in_data:
            self.data = json.loads(data)
            self._in_data = False


def test_html_report_is_the_explorer_page_self_contained_with_every_head(tmp_path):
    program = lib.make_shuffle_dyck(["()"])
    model = compile_program(program, ["(", ")"], 6)
    path = model.html_report(list("(())"), tmp_path / "report.html")
    parser = _Collector()
    parser.feed(path.read_text())
    assert parser.urls == ["data:,"]  # the favicon: nothing to fetch
    assert "Content-Security-Policy" in path.read_text()
    view = parser.data["inputs"][0]
    heads = [h.name for layer in model.info.layers for h in layer.heads]
    assert sorted(view["heads"]) == sorted(heads)
    assert view["output"] == [str(v) for v in model.run([list("(())")])[0]]
    assert not view["problems"]
    assert [s["label"] for s in view["sops"]][:2] == ["indices", "tokens"]


def test_checks_need_the_program(tmp_path, reverse):
    reverse.save(tmp_path / "m")
    loaded = CompiledModel.load(tmp_path / "m")
    assert str(loaded.layer_plan_report())  # the layout needs no program
    with pytest.raises(InvalidInputError, match="loaded from disk without it"):
        loaded.check_patterns([["a"]])
