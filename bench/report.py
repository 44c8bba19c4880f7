"""What every benchmark writes beside its numbers: the machine it ran on, and the block of a
markdown file (between `<!-- name -->` and `<!-- /name -->`) that holds its results, so a
rerun replaces exactly its own block. The bench scripts import it as a sibling module
(`python bench/X.py` puts this folder first on sys.path)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine(*, with_jax: bool = True) -> str:
    """The platform, CPU count and load, Python, and (with_jax) jax and its default device:
    times mean little without them."""
    load = ", load average %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    text = (f"{platform.platform()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs{load}, Python {platform.python_version()}")
    if with_jax:
        import jax

        device = jax.devices()[0]
        text += f", jax {jax.__version__} on {device.platform} ({device.device_kind})"
    return text


def measured(command: str) -> str:
    """The lines that open a results block: the machine and the command that measured it."""
    return f"Machine: {machine()}.\n\nCommand: `{command}`"


def write_block(path: Path, name: str, body: str) -> None:
    """Put `body` between `<!-- name -->` and `<!-- /name -->` in `path`, replacing what was
    there; a file without the markers gets the block at its end (a new file: only it)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    document = path.read_text() if path.exists() else ""
    if start not in document:
        document += f"\n{start}\n{end}\n" if document else f"{start}\n{end}\n"
    before, _, rest = document.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(f"{before}{start}\n{body}\n{end}{after}")
