"""One colour convention for every picture of a model: the explorer's heatmaps and the
matplotlib pictures (attention heatmaps, the W W^T interference picture).

Positive values are blue, negative ones red, zero white: a diverging scale symmetric about
0, linear in RGB from NEGATIVE through ZERO to POSITIVE. Attention weights (0 to 1) use its
positive half, white to blue. The explorer gets these three colours with its data
(`as_json`) and interpolates them the same way, and states the convention in a legend.
"""

from __future__ import annotations

NEGATIVE = "#b2182b"  # red
ZERO = "#ffffff"  # white
POSITIVE = "#2166ac"  # blue
CONVENTION = "blue positive, red negative, white 0; attention weights white (0) to blue (1)"


def as_json() -> dict[str, str]:
    return {"negative": NEGATIVE, "zero": ZERO, "positive": POSITIVE,
            "convention": CONVENTION}


def diverging_cmap():
    """The matplotlib colormap of signed values (use it with vmin=-v, vmax=v)."""
    from matplotlib.colors import LinearSegmentedColormap

    # 257 steps: 0 falls on the middle step, exactly white
    return LinearSegmentedColormap.from_list("rasp_signed", [NEGATIVE, ZERO, POSITIVE], N=257)


def weights_cmap():
    """The matplotlib colormap of attention weights (use it with vmin=0, vmax=1)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("rasp_weights", [ZERO, POSITIVE])
