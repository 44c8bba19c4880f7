"""Ground-truth circuits (rasp_compiler.circuits): structural and functional circuits of
every case, replayed with the model's own hooks; the alignment; name maps and exports;
the scorer's known cases; the two reference methods; bad input."""

import json
import math

import numpy as np
import pytest

from rasp_compiler import compile_program, load_program, rasp
from rasp_compiler.circuits import (
    Edge,
    activation_patching,
    edge_attribution_patching,
    make_pairs,
    parse_edge,
    score_circuit,
)
from rasp_compiler.circuits.scoring import score_labels
from rasp_compiler.errors import InvalidInputError, RaspCompilerError, UnknownNameError
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.model.tracr_model import MODEL_BLOCK, program_graph
from rasp_compiler.verify.report import values_match

from cases import CASES, causal_twin

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")

SAMPLES = 12  # pairs per case: every case, causal and not, stays within a few seconds
_FUNCTIONAL = {}


def _model(case, causal, compiled_case):
    model = compiled_case(case)
    return causal_twin(model) if causal else model


def _functional(case, causal, compiled_case):
    """The case's functional circuit (head granularity, resample), once per test process."""
    key = (case.name, causal)
    if key not in _FUNCTIONAL:
        model = _model(case, causal, compiled_case)
        _FUNCTIONAL[key] = (model, model.circuit(functional=True, samples=SAMPLES, seed=3))
    return _FUNCTIONAL[key]


# ---------------------------------------------------------------------------- every case


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_structural_contains_functional_and_every_recorded_pair_replays(case, causal,
                                                                        compiled_case):
    model, functional = _functional(case, causal, compiled_case)
    structural = set(functional.structural_edges)
    assert set(functional.edges) <= structural <= set(functional.candidates)
    assert structural == set(model.circuit().edges)
    assert len(functional.pairs) == SAMPLES
    assert set(functional.effects) == structural
    for edge in functional.structural_edges:
        effect = functional.effects[edge]
        assert (effect.changed > 0) == (edge in functional) == (effect.example is not None)
        assert effect.tried == SAMPLES and 0 <= effect.share <= 1
    for edge in functional.edges:  # the model's own hooks agree: the pair really changes
        example = functional.effects[edge].example
        clean = model.run([list(example.clean)], backend="numpy")[0]
        patched = _patched_run(model, edge, example.clean, example.corrupt)
        assert tuple(clean) == example.clean_output
        assert not _same(model, patched, clean), (edge, example, patched)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_resample_ablating_nodes_outside_the_structural_circuit_changes_nothing(
        case, causal, compiled_case):
    model, functional = _functional(case, causal, compiled_case)
    circuit_nodes = set(model.circuit().nodes)
    outside = [n for n in functional.model_nodes
               if n.name not in circuit_nodes and n.kind != "output"]
    pairs = functional.pairs
    clean, corrupt = [list(x) for x in pairs.clean], [list(x) for x in pairs.corrupt]
    expected = model.run(clean, backend="numpy")
    _, corrupted = model.run_with_cache(corrupt, backend="numpy")
    zeros = {name: np.zeros_like(value) for name, value in corrupted.items()}
    for group in [[node] for node in outside] + ([outside] if len(outside) > 1 else []):
        for replacement in (corrupted, zeros):  # resample ablation, and zero ablation too
            hooks = [_replace_node(model, node, replacement) for node in group]
            got = model.run_with_hooks(clean, hooks)
            assert all(_same(model, g, e) for g, e in zip(got, expected)), [n.name for n in group]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_alignment_covers_every_rasp_node_that_has_model_nodes(case, compiled_case):
    model = compiled_case(case)
    circuit = model.circuit()
    alignment = circuit.alignment
    graph = program_graph(model)
    for label, data in graph.nodes(data=True):
        block = data[MODEL_BLOCK]
        if block is not None and block.names:
            assert set(block.names) <= set(alignment[label]), label
        if label in ("tokens", "indices") and label in alignment.rasp_to_model:
            assert alignment[label] == ({"tokens": "embed", "indices": "pos_embed"}[label],)
    for node in circuit.nodes:  # every head and MLP of the circuit computes something
        if node not in ("embed", "pos_embed", "output"):
            assert alignment.model_to_rasp.get(node), node
    for label, nodes in alignment.rasp_to_model.items():
        assert all(label in alignment.model_to_rasp[n] for n in nodes)


GRANULARITY_CASES = [c for c in CASES if c.name in {
    "program:shuffle_dyck1", "program:dyck1", "program:sort_ties", "or_no_shared_side_width",
    "and_of_4_categorical_default", "map_numerical_nonlinear"}]


@pytest.mark.parametrize("ablation", ["resample", "zero", "mean"])
@pytest.mark.parametrize("case", GRANULARITY_CASES, ids=str)
def test_granularities_agree_on_the_same_patches(case, ablation, compiled_case):
    # A residual edge into a head's .q/.k/.v (or an MLP's .in) is the same patch as the
    # edge into the head (or MLP) at head granularity: the functional circuits agree.
    model = compiled_case(case)
    options = dict(functional=True, ablation=ablation, samples=SAMPLES, seed=5)
    head = model.circuit(**options)
    matrix = model.circuit("matrix", **options)
    component = model.circuit("component", **options)
    for circuit in (head, matrix, component):
        assert set(circuit.edges) <= set(circuit.structural_edges) <= set(circuit.candidates)

    def as_head(name):
        parts = name.split(".")
        return ".".join(parts[:4]) if parts[2:3] == ["attn"] else ".".join(parts[:3])

    residual = {Edge(as_head(e.source), as_head(e.destination), e.input) for e in matrix.edges
                if matrix.node(e.source).position != matrix.node(e.destination).position}
    assert residual == set(head.edges)
    merged = {Edge(".".join(e.source.split(".")[:3]), ".".join(e.destination.split(".")[:3]),
                   e.input) for e in head.edges}
    if all(n <= 1 for n in head.layer_heads):  # one head per layer: the same patches again
        assert set(component.edges) == merged


# ---------------------------------------------------------------------------- reverse & co


def _bundled(name):
    spec = load_program(name)
    return compile_program(spec.make(), spec.vocab, spec.max_seq_len, **spec.options)


@pytest.fixture(scope="module")
def reverse():
    return _bundled("reverse")


def test_reverse_functional_circuit_is_the_value_path_under_resampling(reverse):
    functional = reverse.circuit(functional=True, samples=32)
    assert functional.edge_names == ("embed->blocks.1.attn.0[v]", "blocks.1.attn.0->output[in]")
    assert functional.auto_circuit_edges() == {"Resid Start->A1.0.V", "A1.0->Resid End"}
    assert "32 random same-length pairs" in functional.pairs.describe()
    # the length head matters once its output is zeroed, and not under mean ablation
    zero = reverse.circuit(functional=True, ablation="zero", samples=32)
    assert "embed->blocks.0.attn.0[v]" in zero.edge_names  # the BOS value it counts with
    assert set(zero.edges) <= set(zero.structural_edges)
    mean = reverse.circuit(functional=True, ablation="mean", samples=32)
    assert not any(e.source == "blocks.0.attn.0" for e in mean.edges)
    assert mean.pairs.corrupt is None and zero.effects[zero.edges[0]].example.corrupt is None


def test_granularities_nest_and_align(reverse):
    head = reverse.circuit()
    component = reverse.circuit("component")
    matrix = reverse.circuit("matrix", functional=True, samples=16)
    assert component.nodes == ("embed", "pos_embed", "blocks.0.attn", "blocks.0.mlp",
                               "blocks.1.attn", "output")
    assert len(component.edges) == len(head.edges)  # one head per layer
    assert matrix.edge_names == ("embed->blocks.1.attn.0.v[v]",
                                 "blocks.1.attn.0.v->blocks.1.attn.0.o[v]",
                                 "blocks.1.attn.0.o->output[in]")
    assert matrix.alignment["flip"] == ("blocks.1.attn.0.q", "blocks.1.attn.0.k")
    assert matrix.alignment["reverse"] == ("blocks.1.attn.0.v", "blocks.1.attn.0.o")
    assert component.alignment["opp_index"] == ("blocks.0.mlp",)
    assert head.alignment["blocks.0.mlp"] == ("length", "length.attn", "opp_index")


def test_name_maps_and_exports(reverse, tmp_path):
    circuit = reverse.circuit()
    assert circuit.benchmark_names()["blocks.1.attn.0"] == "blocks.1.attn[0]"
    assert circuit.benchmark_names()["output"] is None
    assert ("embed", "blocks.1.attn[0]") in circuit.benchmark_edges()
    matrix = reverse.circuit("matrix")
    assert matrix.benchmark_names()["blocks.1.attn.0.q"] == "blocks.1.attn.W_Q[0]"
    assert matrix.benchmark_names()["embed"] == "embed.W_E"
    assert matrix.benchmark_names()["blocks.0.mlp.out"] == "blocks.0.mlp.W_out"
    tl = circuit.transformer_lens_names()
    assert tl["blocks.1.attn.0"] == ("blocks.1.attn.hook_z", 0)
    assert tl["blocks.0.mlp"] == ("blocks.0.hook_mlp_out", None)
    assert tl["output"] == ("blocks.1.hook_resid_post", None)
    assert circuit.transformer_lens_input("embed->blocks.1.attn.0[v]") == ("blocks.1.hook_v_input", 0)
    names = circuit.auto_circuit_names()
    assert names[Edge("pos_embed", "blocks.0.mlp", "in")] == "Resid Start->MLP 0"
    assert set(names.values()) <= set(circuit.auto_circuit_candidates())
    data = json.loads(circuit.to_json(tmp_path / "circuit.json"))
    assert data == json.loads((tmp_path / "circuit.json").read_text())
    assert len(data["edges"]) == len(circuit.edges) and data["alignment"]["tokens"] == ["embed"]
    graph = circuit.to_networkx()
    assert graph.number_of_edges() == len(circuit.edges)
    assert graph.has_edge("embed", "blocks.1.attn.0", key="v")
    dot = reverse.circuit(functional=True, samples=8).to_dot()
    assert dot.startswith('digraph "reverse circuit"') and "style=dashed" in dot
    assert '"embed" [label="embed\\ntokens"]' in dot  # DOT's own line break
    assert parse_edge("embed->blocks.1.attn.0[v]") == ("embed", "blocks.1.attn.0", "v")
    functional = reverse.circuit(functional=True, samples=8)
    example = json.loads(functional.to_json())["edges"]
    assert [e["effect"]["example"] is not None for e in example if e["in_circuit"]] == [True, True]
    assert "changes" in str(functional) and repr(functional).startswith("Circuit('reverse'")


def test_a_loaded_model_has_its_circuit(reverse, tmp_path):
    loaded = CompiledModel.load(reverse.save(tmp_path / "saved"))
    assert loaded.circuit().edges == reverse.circuit().edges
    # from the info records alone: what is folded into a head needs the compiler's record
    assert set(loaded.circuit().alignment["blocks.1.attn.0"]) == {"flip", "reverse"}
    assert set(reverse.circuit().alignment["blocks.1.attn.0"]) == {"flip", "reverse",
                                                                  "opp_index_minus_1"}


def test_given_pairs_are_used_as_given(reverse):
    circuit = reverse.circuit(functional=True, inputs=[list("abcd"), list("ab")],
                              corrupt=[list("abcc"), list("ab")])
    assert circuit.pairs.how == "given" and len(circuit.pairs) == 2
    effect = circuit.effects[circuit.edges[0]]
    assert (effect.changed, effect.example.clean) == (1, tuple("abcd"))
    sampled = reverse.circuit(functional=True, inputs=[list("abcd")])
    assert sampled.pairs.corrupt[0] != tuple("abcd") and len(sampled.pairs.corrupt[0]) == 4


def test_every_pair_when_there_are_few():
    model = compile_program(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices,
                                                       rasp.Comparison.EQ), rasp.tokens),
                            {"a", "b"}, 3)
    pairs = make_pairs(model)
    assert pairs.how == "every pair"
    assert len(pairs) == sum(2 ** n * (2 ** n - 1) for n in (1, 2, 3))


def test_a_rotated_compressed_model_has_the_same_functional_circuit(reverse):
    # A CompressedModel with linear reads whose W is a rotation (d = D) computes what the
    # exact model computes, through a residual where every feature shares every dimension:
    # every allowed edge is structural, and the functional circuit is the exact one.
    from rasp_compiler.circuits import circuit
    from rasp_compiler.superposition.compressed_model import CompressedModel

    d = reverse.shape.d_model
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))
    rotated = CompressedModel(reverse, rotation, None, None)
    structural = circuit(rotated)
    assert set(reverse.circuit().edges) < set(structural.edges)
    functional = circuit(rotated, functional=True, samples=16)
    assert functional.edges == reverse.circuit(functional=True, samples=16).edges
    nonlinear = CompressedModel(reverse, rotation, {"blocks.0.hook_attn_in": {}}, None)
    with pytest.raises(InvalidInputError, match="need linear reads"):
        circuit(nonlinear)


# ---------------------------------------------------------------------------- scoring


def test_scorer_known_cases():
    labels = [True, True, False, False, False]
    perfect = score_labels(labels, [5, 4, 3, 2, 1], threshold=3.5)
    assert (perfect.roc_auc, perfect.average_precision, perfect.best_f1) == (1.0, 1.0, 1.0)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    assert perfect.best_threshold == 4.0 and perfect.roc[0] == (0.0, 0.0, math.inf)
    assert score_labels(labels, [1, 2, 3, 4, 5]).roc_auc == 0.0
    constant = score_labels(labels, [7, 7, 7, 7, 7], threshold=8)
    assert constant.roc_auc == 0.5 and constant.average_precision == pytest.approx(0.4)
    assert (constant.precision, constant.recall, constant.f1) == (0.0, 0.0, 0.0)
    half = score_labels([True, False, True, False], [4, 3, 2, 1])
    assert half.roc_auc == 0.75 and half.average_precision == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(score_labels([False, False], [1, 2]).roc_auc)


def test_score_circuit_takes_our_names_and_auto_circuits(reverse, tmp_path):
    truth = reverse.circuit(functional=True, samples=16)
    ours = score_circuit({edge.name: 1.0 for edge in truth.edges}, truth)
    assert ours.roc_auc == 1.0 and ours.names == "ours" and ours.positives == 2
    assert ours.negatives == len(truth.candidates) - 2
    by_tuple = score_circuit({tuple(edge): 1.0 for edge in truth.edges}, truth)
    assert by_tuple.roc_auc == 1.0
    within = score_circuit({edge: 1.0 for edge in truth.candidates}, truth, among="structural")
    assert (within.positives, within.negatives, within.roc_auc) == (2, 10, 0.5)
    theirs = score_circuit({"Resid Start->A1.0.V": 2.0, "A1.0->Resid End": 1.0,
                            "Resid Start->A0.0.Q": 1.5}, truth, threshold=1.0)
    # auto-circuit's graph of the export: 23 edges (Resid Start is embed and pos_embed,
    # both layers have an MLP); one negative outscores one positive
    assert theirs.names == "auto-circuit" and (theirs.positives, theirs.negatives) == (2, 21)
    assert theirs.roc_auc == pytest.approx(1 - 1 / (2 * 21))
    assert (theirs.recall, theirs.precision) == (1.0, 2 / 3)
    assert "ROC AUC 0.976" in str(theirs)
    assert ours.picture(tmp_path / "roc.png").stat().st_size > 1000


def test_methods_find_a_one_edge_circuit_and_reverses():
    # a numerical Map of tokens is a linear form: no layer, one edge embed -> output
    model = compile_program(rasp.numerical(rasp.Map(lambda x: 2 * x - 1, rasp.tokens)),
                            {0, 1, 2, 3}, 4)
    truth = model.circuit(functional=True, samples=16)
    assert truth.edge_names == ("embed->output[in]",)
    pairs = make_pairs(model, samples=16, seed=1)
    for method in (activation_patching, edge_attribution_patching):
        scores = method(model, pairs=pairs)
        assert set(scores) == set(truth.candidates)
        assert score_circuit(scores, truth).roc_auc == 1.0, method


def test_methods_on_reverse(reverse):
    truth = reverse.circuit(functional=True, samples=32)
    pairs = make_pairs(reverse, samples=24, seed=1)
    patching = activation_patching(reverse, pairs=pairs)
    attribution = edge_attribution_patching(reverse, pairs=pairs)
    assert score_circuit(patching, truth).roc_auc == 1.0
    assert score_circuit(attribution, truth).roc_auc == 1.0
    assert attribution.method == "edge attribution patching" and attribution.seconds > 0
    # each method's estimate of the value edge: a patch changes every output column
    value = Edge("embed", "blocks.1.attn.0", "v")
    assert patching[value] > 0 and attribution[value] > 0
    assert patching.top(2)[0][1] >= patching.top(2)[1][1]


# ---------------------------------------------------------------------------- bad input


def test_bad_input_gives_one_clear_error_each(reverse):
    with pytest.raises(InvalidInputError, match="granularity must be one of 'head'"):
        reverse.circuit("neuron")
    with pytest.raises(InvalidInputError, match="ablation must be one of 'resample'"):
        reverse.circuit(functional=True, ablation="noise")
    with pytest.raises(InvalidInputError, match="pass functional=True"):
        reverse.circuit(inputs=[["a"]])
    with pytest.raises(InvalidInputError, match=r"inputs: .*token 'z' is not in"):
        reverse.circuit(functional=True, inputs=[["a", "z"]])
    with pytest.raises(InvalidInputError, match=r"corrupt: .*token 'q' is not in"):
        reverse.circuit(functional=True, inputs=[["a"]], corrupt=[["q"]])
    with pytest.raises(InvalidInputError, match="a pair must have one length"):
        reverse.circuit(functional=True, inputs=[["a"]], corrupt=[["a", "b"]])
    with pytest.raises(InvalidInputError, match="resample ablation only"):
        reverse.circuit(functional=True, inputs=[["a"]], corrupt=[["b"]], ablation="zero")
    truth = reverse.circuit()
    with pytest.raises(UnknownNameError, match="'embed->blocks.9.mlp\\[in\\]' names no edge"):
        score_circuit({"embed->blocks.9.mlp[in]": 1.0}, truth)
    with pytest.raises(UnknownNameError, match="'Resid Start->A7.0.V' names no edge"):
        score_circuit({"Resid Start->A1.0.V": 1.0, "Resid Start->A7.0.V": 1.0}, truth)
    with pytest.raises(InvalidInputError, match="among must be 'all'"):
        score_circuit({"embed->output[in]": 1.0}, truth, among="some")
    with pytest.raises(InvalidInputError, match="EAP|resample ablation"):
        edge_attribution_patching(reverse, ablation="zero")
    with pytest.raises(InvalidInputError, match="head granularity"):
        reverse.circuit("matrix").auto_circuit_names()
    with pytest.raises(UnknownNameError):
        truth.alignment["nothing"]
    assert all(issubclass(e, RaspCompilerError) for e in (InvalidInputError, UnknownNameError))


# ---------------------------------------------------------------------------- helpers


def _same(model, got, expected) -> bool:
    """Equal outputs: numbers within verify's tolerance, categorical values the same value
    (0 and -0.0 are two values: identity.py)."""
    categorical = not model.readouts[model.output].numerical
    return len(got) == len(expected) and all(
        values_match(g, e, categorical=categorical) for g, e in zip(got, expected))


def _head_weights(model, l, h):
    layer = model.shape.layers[l]
    p = {name: np.asarray(model.params[f"layer_{l}/attn/{name}"]["w"])
         for name in ("query", "key", "value", "linear")}
    dk, dv = layer.key_size, layer.value_size
    return {"q": p["query"][:, h * dk:(h + 1) * dk], "k": p["key"][:, h * dk:(h + 1) * dk],
            "v": p["value"][:, h * dv:(h + 1) * dv], "o": p["linear"][h * dv:(h + 1) * dv]}


def _contribution(model, name, cache):
    """What model node `name` (head granularity) writes to the residual, from a cache."""
    if name in ("embed", "pos_embed"):
        return cache[f"hook_{name}"]
    parts = name.split(".")
    l = int(parts[1])
    if parts[2] == "mlp":
        return cache[f"blocks.{l}.hook_mlp_out"]
    h = int(parts[3])
    return cache[f"blocks.{l}.attn.hook_z"][:, :, h, :] @ _head_weights(model, l, h)["o"]


def _patched_run(model, edge, clean, corrupt):
    """The output with `edge` patched, through model.run_with_hooks (an independent
    implementation of the patch: only the public hooks)."""
    _, clean_cache = model.run_with_cache([list(clean)], backend="numpy")
    _, corrupt_cache = model.run_with_cache([list(corrupt)], backend="numpy")
    delta = _contribution(model, edge.source, corrupt_cache) - _contribution(
        model, edge.source, clean_cache)
    if edge.destination == "output":
        name = (f"blocks.{model.depth - 1}.hook_resid_post" if model.depth else "hook_pos_embed")
        hook = (name, lambda x: x + delta)
    elif edge.destination.endswith(".mlp"):
        l = int(edge.destination.split(".")[1])
        w1 = np.asarray(model.params[f"layer_{l}/mlp/linear_1"]["w"])
        hook = (f"blocks.{l}.mlp.hook_pre", lambda x: x + delta @ w1)
    else:
        _, l, _, h = edge.destination.split(".")
        change = delta @ _head_weights(model, int(l), int(h))[edge.input]

        def add(x, h=int(h)):
            x = x.copy()
            x[:, :, h, :] += change
            return x

        hook = (f"blocks.{l}.attn.hook_{edge.input}", add)
    return model.run_with_hooks([list(clean)], [hook])[0]


def _replace_node(model, node, corrupted):
    """A hook replacing `node`'s output by its output in the `corrupted` cache."""
    if node.kind in ("embed", "pos_embed"):
        return f"hook_{node.kind}", lambda x: corrupted[f"hook_{node.kind}"]
    if node.kind == "mlp":
        return f"blocks.{node.layer}.hook_mlp_out", lambda x: corrupted[
            f"blocks.{node.layer}.hook_mlp_out"]

    def swap(x):
        x = x.copy()
        x[:, :, node.head] = corrupted[f"blocks.{node.layer}.attn.hook_z"][:, :, node.head]
        return x

    return f"blocks.{node.layer}.attn.hook_z", swap
