"""Tolerances and limits: one home for each number that more than one stage relies on.

The compiler builds weights to meet these tolerances, the runtime decodes with them, the
verifier checks against them and the export writes them down; defining each once keeps
those four in agreement.
"""

# ---------------------------------------------------------------- matching the evaluator
RTOL = 1e-4  # a numerical output matches within rtol relative (above magnitude 1) ...
ATOL = 1e-4  # ... or within this absolute floor
# verify(strict=True): a categorical SOp's raw dims are within this of the exact one-hot.
# The compiler's own bound is far below it (docs/verification.md, "Exactness on raw
# activations"): each head leaks at most attention_precision (1e-7 by default), float32
# rounds a head's average by (N + 5) u and the MLPs' 0/1 outputs by about u times their
# pre-activations; the worst measured over the case table is 5e-7.
RAW_TOLERANCE = 1e-3
# decoding: a clean one-hot has its value within this of 1 and the rest within it of 0
DECODE_TOLERANCE = 0.1

# ---------------------------------------------------------------- float32 headroom
# float32 tops out at 3.4e38. A value, weight or activation bound below this leaves eight
# orders of magnitude for sums, slopes and products before anything can overflow: the
# compiler refuses larger program values, and the sparse forward falls back to the dense
# one when its bound on the residual passes it.
FLOAT32_SAFE_MAGNITUDE = 1e30

# ---------------------------------------------------------------- model size
# 200 million float32 parameters are 0.8 GB. Compiling holds the weights about twice
# (lower's per-head matrices, then assemble's stacked ones) and JAX copies them once more,
# so a model at the limit peaks near 2.5 GB: it fits a laptop. Loading checks the same limit.
DEFAULT_MAX_PARAMETERS = 200_000_000
BYTES_PER_PARAMETER = 4  # float32
