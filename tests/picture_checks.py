"""What a picture test checks: the file is a PNG that decodes whole, is as large as its
content needs, and shows something (not one flat colour, not all ink)."""

from pathlib import Path

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_pixels(path, min_width: int = 100, min_height: int = 100) -> np.ndarray:
    """The picture's pixels [height, width, 3] (RGB), after checking that the file is a
    PNG whose every pixel decodes (a truncated file fails in `load`) and is at least
    min_width x min_height."""
    from PIL import Image

    assert Path(path).read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert width >= min_width and height >= min_height, (path, width, height)
    return pixels


def ink(pixels: np.ndarray) -> np.ndarray:
    """bool [height, width]: pixels visibly unlike the background (the commonest colour)."""
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    return np.abs(pixels - background).sum(axis=-1) > 48


def assert_drawn(pixels: np.ndarray, min_colours: int = 8, inked=(0.01, 0.9)) -> None:
    """Something is drawn: at least `min_colours` colours, and between inked[0] and
    inked[1] of the pixels unlike the background."""
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours >= min_colours, f"{colours} colours: a flat picture"
    share = float(ink(pixels).mean())
    assert inked[0] <= share <= inked[1], f"{share:.1%} of the pixels drawn"


def assert_picture(path, min_width: int = 100, min_height: int = 100, **drawn) -> np.ndarray:
    pixels = png_pixels(path, min_width, min_height)
    assert_drawn(pixels, **drawn)
    return pixels
