"""float32 error bounds: large magnitudes are refused with the SOp and the size named, or exact."""

import math
import re

import pytest

from rasp_compiler import lib, rasp
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import CompilationError, InvalidProgramError, RaspCompilerError
from rasp_compiler.lang.evaluator import evaluate
from rasp_compiler.compiler.precision import analyse_precision, gamma
from rasp_compiler.verify.checker import verify
from rasp_compiler.verify.inputs import all_inputs

VOCAB = [0, 1, 2]
PREFIX = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)


def mean_then_subtract(offset):
    """The issue's example: x + offset, averaged over the prefix, then - offset."""
    big = rasp.numerical(rasp.Map(lambda x: offset + x, rasp.tokens)).named("big")
    mean = rasp.numerical(rasp.Aggregate(PREFIX, big, default=0)).named("big_mean")
    return rasp.numerical(rasp.Map(lambda v: v - offset, mean)).named("back")


def two_means(offset):
    """Two means of offset values combined: the offsets cancel, float32's rounding does not."""
    up = rasp.numerical(rasp.Map(lambda x: offset + x, rasp.tokens))
    down = rasp.numerical(rasp.Map(lambda x: offset - x, rasp.tokens))
    means = [rasp.numerical(rasp.Aggregate(PREFIX, sop, default=0)) for sop in (up, down)]
    return rasp.numerical(rasp.LinearSequenceMap(means[0], means[1], 1, -1)).named("difference")


def refused_or_exact(program, n=3):
    """The contract: compile refuses clearly, or the model equals the evaluator everywhere."""
    try:
        model = compile_program(program, VOCAB, n)
    except RaspCompilerError as error:
        return error
    report = verify(program, model, exhaustive_up_to=n, backend="numpy")
    assert report.ok, str(report)
    return None


@pytest.mark.parametrize("offset, shown", [(1e8, "1e+08"), (1e6, "1e+06"),
                                           (2 ** 25, "3.36e+07"), (1e4, "1e+04")])
def test_a_large_offset_averaged_then_subtracted_is_refused(offset, shown):
    with pytest.raises(CompilationError, match=rf"back: the float32 model can be off by up to "
                                               rf".*big_mean.*as large as {re.escape(shown)}"):
        compile_program(mean_then_subtract(offset), VOCAB, 3)


def test_two_means_offset_by_1e7_are_refused():
    with pytest.raises(CompilationError, match=r"difference: .*as large as 1e\+07"):
        compile_program(two_means(1e7), VOCAB, 3)


@pytest.mark.parametrize("make", [mean_then_subtract, two_means])
@pytest.mark.parametrize("offset", [0.5, 3, 10])
def test_small_offsets_compile_and_are_exact(make, offset):
    assert refused_or_exact(make(offset)) is None


@pytest.mark.parametrize("offset, refused", [(1e3, False), (1e4, True), (1e6, True), (1e8, True),
                                             (2 ** 25, True)])
def test_categorical_reads_of_offset_means_are_refused_or_exact(offset, refused):
    """Rounding the mean needs a step between means 1/6 apart (x + 0.5 and x + 2/3): at an
    offset of 1e3 that is 1.7e-4 of the range and compiles exactly; from 1e4 it is below
    mlp.MIN_RELATIVE_GAP (2e-5) of the range, which float32 cannot place, and is refused
    by name."""
    mean = mean_then_subtract(offset).inner  # Map(v - offset) composes with nothing: use the mean
    rounded = rasp.Map(lambda v: round(v - offset), mean, simplify=False).named("rounded")
    error = refused_or_exact(rounded)
    if not refused:
        assert error is None
        return
    assert isinstance(error, CompilationError), error
    assert re.match(rf"rounded: its output changes between big_mean = {re.escape(repr(offset + 0.5))}"
                    rf" and .*, only 0.167 apart on a range of .*float32 cannot tell them apart",
                    str(error)), str(error)


def test_offsets_that_cancel_before_float32_are_exact():
    """x + 1e8 - 1e8 as two affine Maps folds to x in float64 before any weight is written."""
    big = rasp.numerical(rasp.Map(lambda x: x + 1e8, rasp.tokens))
    back = rasp.numerical(rasp.Map(lambda v: v - 1e8, big, simplify=False))
    assert refused_or_exact(back) is None


def test_large_but_relative_values_compile():
    """An average of values near 1e8 is fine where the output itself is near 1e8 (a default of
    0 would not be: a head leaks a little weight between the default and the values)."""
    big = rasp.numerical(rasp.Map(lambda x: 1e8 + x, rasp.tokens))
    assert refused_or_exact(rasp.numerical(rasp.Aggregate(PREFIX, big, default=1e8))) is None


def test_values_beyond_float32_are_refused():
    huge = rasp.numerical(rasp.Map(lambda x: 1e36 * (x + 1), rasp.tokens)).named("huge")
    with pytest.raises(CompilationError, match="huge: .*as large as 3e\\+36.*float32"):
        compile_program(huge, VOCAB, 3)


@pytest.mark.parametrize("program, message", [
    (rasp.numerical(rasp.Map(lambda x: math.inf if x == 1 else float(x), rasp.tokens)),
     "this Map can be inf \\(returned on the input value 1"),
    (rasp.numerical(rasp.Map(lambda x: math.nan if x == 1 else float(x), rasp.tokens)),
     "this Map can be nan \\(returned on the input value 1"),
    (rasp.Map(lambda x: math.nan if x == 1 else float(x), rasp.tokens),
     "this Map can be nan \\(returned on the input value 1"),
    (rasp.numerical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT),
                                   rasp.numerical(rasp.Map(float, rasp.tokens)),
                                   default=math.inf)),
     "its default is inf"),
], ids=["inf_map", "nan_map", "categorical_nan_map", "inf_default"])
def test_the_issues_non_finite_programs_are_refused_at_compile(program, message):
    with pytest.raises(InvalidProgramError, match=f"{program.label}: {message}.*finite number"):
        compile_program(program, VOCAB, 3)


def _measured_errors(program, model, n):
    """(|model - evaluator|, |evaluator|) at every position of every input up to length n."""
    inputs = list(all_inputs(VOCAB, n))
    got = model.run(inputs, backend="numpy")
    pairs = []
    for tokens, row in zip(inputs, got):
        for value, expected in zip(row, evaluate(program, list(tokens))):
            pairs.append((abs(value - expected), abs(expected)))
    return pairs


@pytest.mark.parametrize("program", [
    mean_then_subtract(20),
    two_means(30),
    rasp.numerical(rasp.Map(lambda v: v * v - 2, rasp.numerical(rasp.Aggregate(
        PREFIX, rasp.numerical(rasp.Map(lambda x: 7 * x, rasp.tokens)), default=0)))),
    rasp.numerical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ))),
    lib.make_frac_prevs(rasp.tokens == 1),
], ids=["offset_20", "two_means_30", "square_of_mean", "numerical_width", "frac_prevs"])
def test_the_bound_covers_every_measured_error(program):
    model = compile_program(program, VOCAB, 4)
    report = analyse_precision(model.ops, model.schedule, model.lowered)
    for error, size in _measured_errors(program, model, 4):
        assert error <= report.output.at(size) + 1e-12, (error, size, report.output)


def test_error_bounds_are_relative_where_signs_agree_and_absolute_where_they_cancel():
    same_sign = compile_program(rasp.numerical(rasp.Aggregate(
        PREFIX, rasp.numerical(rasp.Map(lambda x: 1e3 + x, rasp.tokens)), default=0)), VOCAB, 3)
    bound = analyse_precision(same_sign.ops, same_sign.schedule, same_sign.lowered).output
    assert bound.relative > 0 and bound.absolute < 1e-3  # the leak onto the default 0 only
    cancels = compile_program(mean_then_subtract(3), VOCAB, 3)
    bound = analyse_precision(cancels.ops, cancels.schedule, cancels.lowered).output
    assert bound.relative == 0 and bound.absolute > 5 * gamma(3 + 5)  # terms up to 5


def test_numerical_selector_width_stays_within_tolerance_at_64():
    """The piecewise-linear decoder of 1/(w+1) pivots where w = 0, so it never cancels."""
    width = rasp.numerical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens,
                                                          rasp.Comparison.LEQ)))
    model = compile_program(width, [0, 1, 2, 3], 64)
    report = analyse_precision(model.ops, model.schedule, model.lowered)
    assert report.output.at(0) < 1e-4


def test_a_step_that_float32_error_could_cross_is_refused():
    """White-box: the same MLP, read as if its input were known only to a third of its gap."""
    from rasp_compiler.compiler.precision import ErrorBound, _Analysis

    mean = lib.make_frac_prevs(rasp.tokens == 1)
    high = rasp.Map(lambda v: v > 0.4, mean).named("high")
    model = compile_program(high, VOCAB, 4)
    analysis = _Analysis(model.ops, model.schedule)
    (layer,) = model.schedule.layers
    analysis.embedding("tokens")
    for head in model.lowered.heads[0]:
        analysis.head(head)
    (block,) = layer.blocks
    gap = 0.5 - 1 / 3  # the two values of frac_prevs closest to 0.4
    analysis.errors["frac_prevs"] = ErrorBound(gap / 3, 0.0, "a test")
    with pytest.raises(CompilationError, match="high: the MLP computing it reads frac_prevs at "
                                               ".*to within 0.0556 .*a test.*0.167 apart"):
        analysis.block(block, model.lowered.mlps[0].parts[0])
