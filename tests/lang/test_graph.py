import itertools
import time

import networkx as nx
import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.errors import InvalidProgramError
from rasp_compiler.lang.evaluator import evaluate
from rasp_compiler.lang.graph import build_graph, postorder


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


def test_instances_of_an_input_must_agree_on_the_encoding():
    numbers = rasp.numerical(rasp.tokens)
    assert rasp.is_categorical(rasp.tokens)  # numerical() made a copy
    program = rasp.SequenceMap(lambda x, y: x + y, numbers, rasp.Map(lambda x: x, rasp.tokens))
    with pytest.raises(InvalidProgramError, match=r"tokens: the program reads the input tokens "
                       r"as numerical in one place and as categorical in another.*same "
                       r"encoding.*rasp.numerical\(rasp.Map\(lambda x: x, rasp.tokens\)\)"):
        build_graph(program)
    alike = rasp.SequenceMap(lambda x, y: x + y, numbers, rasp.numerical(rasp.TokensType()))
    graph = build_graph(alike)
    assert graph.sources == ("tokens",) and rasp.is_numerical(graph.expr("tokens"))
    named = rasp.Map(lambda x: x, rasp.tokens.named("words"))  # a name does not matter
    assert build_graph(rasp.SequenceMap(lambda x, y: x, named, rasp.tokens)).sources == ("tokens",)


# --------------------------------------------------------------------------- tracr's ids


def _real_tracr():
    """tracr's own rasp, lib and rasp_to_graph (never our module under tracr's name)."""
    from tracr.compiler import lib as tracr_lib
    from tracr.compiler import rasp_to_graph
    from tracr.rasp import rasp as tracr_rasp

    assert tracr_rasp is not rasp and tracr_lib is not lib, "tracr is aliased to rasp_compiler"
    return tracr_rasp, tracr_lib, rasp_to_graph


def _twin_programs(r, l):
    """The same constructions, in the same order, with tracr's modules or ours (not those
    reading lib.length: one module-level instance, whose id an earlier test may have drawn)."""
    def unnamed(r):
        x = r.Map(lambda v: v + 1, r.tokens)
        y = r.SequenceMap(lambda a, b: a * b, x, r.indices)
        sel = r.Select(y, r.tokens, r.Comparison.LEQ) & r.Select(y, r.tokens, r.Comparison.NEQ)
        width = r.SelectorWidth(sel)
        mean = r.numerical(r.Aggregate(r.Select(r.indices, width, r.Comparison.EQ),
                                       r.numerical(r.Map(float, x)), default=0))
        return r.SequenceMap(lambda a, b: (a, b), mean, width)

    return [
        l.make_sort_unique(r.tokens, r.tokens),
        l.make_hist(),
        l.make_frac_prevs(r.tokens == "x"),
        l.make_sort(r.tokens, r.tokens, max_seq_len=5, min_key=1),
        l.make_sort_freq(5),
        l.detect_pattern(r.tokens, "abc"),
        l.make_nary_sequencemap(lambda a, b, c: a + b - c, r.tokens, r.indices, r.tokens),
        l.make_count_less_freq(2),
        unnamed(r),  # last
    ]


def _pairs(ours, theirs):
    """Corresponding expressions of two programs built alike, breadth first."""
    queue, seen = [(ours, theirs)], set()
    while queue:
        a, b = queue.pop(0)
        if id(a) in seen:
            continue
        seen.add(id(a))
        assert type(a).__name__ == type(b).__name__ and len(a.children) == len(b.children)
        yield a, b
        queue.extend(zip(a.children, b.children))


@pytest.fixture
def fresh_ids():
    """Both counters reset to 1, as a user resets tracr's; ours restored afterwards."""
    tracr_rasp = _real_tracr()[0]
    saved = rasp.RASPExpr._ids, tracr_rasp.RASPExpr._ids
    yield lambda: [setattr(m.RASPExpr, "_ids", itertools.count(1)) for m in (rasp, tracr_rasp)]
    rasp.RASPExpr._ids, tracr_rasp.RASPExpr._ids = saved


@pytest.mark.parametrize("index", range(9))
def test_unnamed_expressions_get_the_labels_tracrs_compiler_gives(fresh_ids, index):
    tracr_rasp, tracr_lib, rasp_to_graph = _real_tracr()
    fresh_ids()
    theirs = _twin_programs(tracr_rasp, tracr_lib)[index]
    ours = _twin_programs(rasp, lib)[index]
    tracr_graph = rasp_to_graph.extract_rasp_graph(theirs).graph
    graph = build_graph(ours)
    compared = 0
    for a, b in _pairs(ours, theirs):
        if isinstance(a, rasp._Primitive):
            continue
        assert a.unique_id == b.unique_id, (a, b.label)
        if not a.is_named:
            assert a.label == b.label and a.label in graph.graph and b.label in tracr_graph
            compared += 1
    if index == 8:
        assert compared == 8  # every expression of the hand-written program


def test_compiling_draws_tracrs_ids_and_a_rebuild_gives_the_same_labels(fresh_ids):
    from rasp_compiler.compiling import compile_rasp_to_model

    tracr_rasp, tracr_lib, rasp_to_graph = _real_tracr()
    fresh_ids()
    theirs = tracr_rasp.Map(lambda v: v + 1, tracr_lib.make_hist())
    ours = rasp.Map(lambda v: v + 1, lib.make_hist())
    tip = rasp_to_graph.extract_rasp_graph(theirs).sink["ID"]
    model = compile_rasp_to_model(ours, {"a", "b"}, 3)
    assert model.output == tip == "map_1"
    labels = []
    for _ in range(2):
        fresh_ids()
        program = lib.make_frac_prevs(rasp.Map(lambda v: v == "a", rasp.tokens))
        labels.append([a.label for a, _ in _pairs(program, program)])
        build_graph(program)
        labels[-1] = [a.label for a, _ in _pairs(program, program)]
    assert labels[0] == labels[1]
