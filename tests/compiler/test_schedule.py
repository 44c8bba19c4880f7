import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.errors import UnsupportedExpressionError
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values


def scheduled_of(program, vocab=("a", "b", "c"), n=5, **options):
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, vocab, n))
    return ops, schedule(ops, **options)


def head_of(ops, source: str) -> str:
    """The attention op computing the SOp `source` (a SelectorWidth's head writes a
    hidden SOp of its own, whatever the rewriter names it)."""
    (label,) = [label for label, op in ops.attention.items() if op.source == source]
    return label


def test_consecutive_mlp_units_fuse_into_one_block():
    ops, scheduled = scheduled_of(lib.make_reverse(rasp.tokens))
    assert scheduled.depth == 2 and scheduled.lower_bound == 2
    (block,) = scheduled.layers[0].blocks
    assert block.units == ("length", "opp_index")  # decode + SequenceMap in one MLP
    assert set(block.leaves) == {head_of(ops, "length"), "indices"}
    assert block.outputs == ("opp_index",)  # length itself never reaches the residual
    assert scheduled.layers[0].heads == (head_of(ops, "length"),)
    assert scheduled.layers[1].heads == (head_of(ops, "reverse"),)


def test_each_op_runs_in_the_first_sublayer_after_what_it_reads():
    ops, scheduled = scheduled_of(lib.make_reverse(rasp.tokens))
    assert scheduled.layer_of("tokens") is None and scheduled.layer_of("indices") is None  # embeddings
    assert scheduled.layer_of(head_of(ops, "length")) == 0  # attention of layer 0
    assert scheduled.layer_of("opp_index") == 0  # the MLP right after the head it reads
    assert scheduled.layer_of("reverse") == 1
    order = [scheduled.time[label] for label in ("tokens", head_of(ops, "length"), "opp_index", "reverse")]
    assert order == sorted(set(order))  # strictly one after another


def test_fusion_stops_at_the_input_space_limit_and_says_why():
    program = lib.make_reverse(rasp.tokens)
    _, scheduled = scheduled_of(program, n=10, max_fused_input_space=50)
    assert scheduled.depth == 3 and scheduled.lower_bound == 2
    assert any("input space" in note and "max_fused_input_space=50" in note
               for note in scheduled.fusion_notes)


def test_fusion_stops_at_two_numerical_inputs():
    _, scheduled = scheduled_of(lib.make_shuffle_dyck(["()", "{}"]), vocab=tuple("(){}"), n=6)
    assert scheduled.depth == 3 and scheduled.lower_bound == 2
    assert any("2 numerical SOps" in note for note in scheduled.fusion_notes)


def test_a_unit_reading_two_numbers_is_refused():
    a = lib.make_frac_prevs(rasp.tokens == "a").named("fa")
    b = lib.make_frac_prevs(rasp.tokens == "b").named("fb")
    product = rasp.numerical(rasp.SequenceMap(lambda x, y: x * y, a, b)).named("product")
    with pytest.raises(UnsupportedExpressionError, match="product: .*two numerical SOps.*LinearSequenceMap"):
        scheduled_of(product)


def test_only_sops_something_reads_are_materialized():
    ops, scheduled = scheduled_of(lib.make_hist())
    assert scheduled.materialized == {"tokens", head_of(ops, "hist"), "hist"}
    is_x = (rasp.tokens == "a").named("is_a")
    _, scheduled = scheduled_of(lib.make_frac_prevs(is_x))
    assert scheduled.materialized == {"tokens", "indices", "frac_prevs"}  # is_a folds into the head
    assert "is_a" not in scheduled.live


def test_a_long_chain_of_maps_schedules_in_linear_time():
    """A chain of k Maps (simplify=False) fuses into one MLP block. Each unit that joined
    used to re-sort the block and re-read all its units' inputs: k^2 work, 18 s for 3,000
    Maps (issue 22); the block's members and outside reads are now kept as it grows."""
    import time

    chain = rasp.tokens
    for _ in range(5_000):
        chain = rasp.Map(lambda v: (v + 1) % 3, chain, simplify=False)
    graph = build_graph(chain)
    ops = rewrite(graph, infer_values(graph, (0, 1, 2), 4))
    started = time.perf_counter()
    scheduled = schedule(ops)
    elapsed = time.perf_counter() - started
    (layer,) = scheduled.layers
    (block,) = layer.blocks
    assert len(block.units) == 5_000 and block.leaves == ("tokens",)
    assert list(block.units) == sorted(block.units, key=ops.position.__getitem__)
    assert elapsed < 2.0, f"scheduling 5,000 fused Maps took {elapsed:.1f} s"  # was 24 s

