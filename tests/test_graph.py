import time

import networkx as nx
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.evaluator import evaluate
from rasp_compiler.graph import build_graph, postorder


def test_graph_has_one_node_per_expression_with_edges_from_inputs():
    program = lib.make_reverse(rasp.tokens)
    graph = build_graph(program)
    assert graph.output == "reverse"
    assert set(graph.sources) == {"tokens", "indices"}
    assert graph.graph.has_edge("flip", "reverse")
    assert graph.graph.has_edge("tokens", "reverse")
    assert graph.graph.has_edge("length", "opp_index")
    position = {label: i for i, label in enumerate(graph.order)}
    for src, dst in graph.graph.edges:
        assert position[src] < position[dst]
    assert graph.users("indices") == ["opp_index", "flip"]
    assert graph.selectors() == ["all_true", "flip"]
    assert isinstance(graph.expr("reverse"), rasp.Aggregate)
    assert nx.is_frozen(graph.graph)


def test_shared_chain_builds_in_linear_time():
    sop = rasp.tokens
    for _ in range(2000):
        sop = rasp.SequenceMap(lambda x, y: x, sop, sop)
    start = time.perf_counter()
    graph = build_graph(sop)
    elapsed = time.perf_counter() - start
    assert len(graph) == 2001
    assert elapsed < 0.5, f"build_graph took {elapsed:.2f}s on a 2,000-node shared chain"
    assert evaluate(sop, [7, 8]) == [7, 8]  # and evaluation does not recurse


def test_label_clashes_are_renamed_once_deterministically():
    a = rasp.Map(lambda x: x + 1, rasp.tokens).named("step")
    b = rasp.Map(lambda x: x + 2, a, simplify=False).named("step")
    graph = build_graph(b)
    assert graph.order == ("tokens", "step", "step_2")
    assert a.label == b.label == "step"  # the user's expressions keep their labels
    assert graph.expr("step") is a and graph.expr("step_2").inner is a
    assert evaluate(b, [1]) == [4]
    assert build_graph(b).order == graph.order  # stable on rebuild


def test_every_instance_of_an_input_is_one_node_and_nothing_is_renamed():
    second = rasp.TokensType()
    program = rasp.SequenceMap(lambda x, y: x * y, second, rasp.tokens)
    clash = rasp.Map(lambda x: x, program).named("tokens")  # a real clash is still renamed
    graph = build_graph(clash)
    assert graph.order == ("tokens", program.label, "tokens_2")
    assert graph.graph.has_edge("tokens", program.label)
    assert rasp.tokens.label == second.label == "tokens"
    assert evaluate(clash, [2, 3]) == [4, 9]


def test_a_cycle_is_reported():
    a = rasp.Map(lambda x: x, rasp.tokens).named("loop_a")
    b = rasp.Map(lambda x: x, a, simplify=False)
    a.inner = b  # only reachable by mutating an expression
    with pytest.raises(InvalidProgramError, match="cycle"):
        postorder(b)


def test_summary_and_dot_name_every_node():
    graph = build_graph(lib.make_hist())
    summary = graph.summary()
    dot = graph.to_dot(layer_of={"hist": 1})
    for label in graph.order:
        assert label in summary
        assert f'"{label}"' in dot
    assert "layer 1" in dot
    assert dot.startswith("digraph")
    assert "nodes=3" in repr(graph)


def test_non_expressions_are_refused():
    with pytest.raises(InvalidProgramError, match="RASP expression"):
        build_graph(42)
