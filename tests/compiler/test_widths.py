"""The SelectorWidth BOS share (widths.py): scaled past max_seq_len 16 so that the widths a
head encodes stay far enough apart for their decoder at long lengths."""

from rasp_compiler import lib
from rasp_compiler.compiler import widths
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.verify.checker import verify


def test_width_shares_stay_decodable_at_1024():
    assert widths.bos_share(16) == 1.0 and widths.bos_share(17) == 17.0
    assert widths.bos_share(1024, categorical=False) == 1.0  # decoded piecewise-linearly
    assert widths.smallest_gap(1024) > 2.4e-4 > 100 * widths.smallest_gap(1024, False)


def test_hist_at_256_is_exact_on_the_widest_counts():
    model = compile_program(lib.make_hist(), ["a", "b"], 256)
    (head,) = model.info.layers[0].heads
    assert model.ops.attention[head.label].bos_share == 256.0
    inputs = [["a"] * 256, ["a"] * 255 + ["b"]]
    assert verify(lib.make_hist(), model, inputs=inputs, backend="numpy").ok


def test_the_ideal_pattern_of_a_scaled_width_head_gives_bos_its_share():
    model = compile_program(lib.make_hist(), ["a", "b"], 20)
    assert model.check_patterns([["a", "b", "a"]]).passed
