"""Progress display for long runs (`verify`, `compress`, `train_sae`), drawn by tqdm.

Where the progress goes decides how it is drawn:
- a notebook (an IPython kernel): `tqdm.auto`, a widget when ipywidgets is installed;
- a terminal: one tqdm bar redrawn in place (with `\\r`);
- anything else (a log file, a pipe, CI): plain lines, one every LOG_INTERVAL seconds
  and one at the end, never a `\\r`: a log stays readable line by line.

`ProgressBar` is verify's (inputs checked, mismatches, the time left, and a one-time
warning that a run will be long); `StepProgress` counts training steps.
"""

from __future__ import annotations

import os
import sys
import time

LOG_INTERVAL = 10.0  # seconds between two progress lines in a log (not a terminal)
TERMINAL_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:,}/{total:,} {unit} [{elapsed}<{remaining}{postfix}]"
LOG_FORMAT = "{desc}: {n:,}/{total:,} {unit} ({percentage:.0f}%){postfix}"


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too old or too new to ask: not a notebook we know
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def is_terminal(stream) -> bool:
    """A terminal wide enough for a bar (a pseudo-terminal of 0 columns, as `script` opens,
    would show none: it gets lines)."""
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns >= 20
    except (AttributeError, ValueError, OSError):  # no file descriptor: trust isatty
        return True


class _Lines:
    """A file for tqdm that writes each redraw (`\\r` + the status) as a line of its own."""

    def __init__(self, stream):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        for part in text.split("\r"):
            part = part.strip()
            if part and part != self.last:
                self.stream.write(part + "\n")
                self.last = part

    def flush(self) -> None:
        self.stream.flush()


def bar(total: int, desc: str, unit: str, stream=None):
    """A tqdm progress bar of `total` `unit`s on `stream` (default stderr), drawn as the
    module docstring says. Update it with `.update(n)`, say more with `.set_postfix_str`."""
    stream = stream if stream is not None else sys.stderr
    options = dict(total=max(int(total), 1), desc=desc, unit=unit, disable=False, leave=True)
    if stream is sys.stderr and in_notebook():
        from tqdm.auto import tqdm

        return tqdm(bar_format=TERMINAL_FORMAT, **options)
    from tqdm import tqdm

    if is_terminal(stream):
        return tqdm(file=stream, bar_format=TERMINAL_FORMAT, dynamic_ncols=True, **options)
    return tqdm(file=_Lines(stream), bar_format=LOG_FORMAT, mininterval=LOG_INTERVAL,
                maxinterval=LOG_INTERVAL, **options)


def describe_seconds(seconds: float) -> str:
    """A duration for messages: '45 s', '12 minutes', '3.5 hours', '2.0 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:,.1f} days"


class ProgressBar:
    """verify's progress: inputs checked out of the total, the rate, mismatches so far and
    the time left.

    Once the rate is known (from the end of the first chunk, which also pays for XLA's
    compilation, over at least ESTIMATE_AFTER seconds), a run that will take more than
    LONG_RUN seconds in all says so once, on a line of its own: `verify --samples
    100000000` ran for 70 minutes with only the bar to show for it."""

    ESTIMATE_AFTER = 1.0
    LONG_RUN = 60.0

    def __init__(self, total: int, stream=None, title: str = "verify"):
        self.total = max(total, 1)
        self.done = 0
        self.started = time.perf_counter()
        self.title = title
        self.first: tuple[float, int] | None = None  # (time, inputs) after the first chunk
        self.estimated = False
        self.bar = bar(self.total, title, "inputs", stream)

    def advance(self, count: int, mismatches: int = 0) -> None:
        self.done += count
        now = time.perf_counter()
        rate = self.done / max(now - self.started, 1e-9)
        left = ""
        if self.first is None:
            self.first = (now, self.done)
        elif now - self.first[0] >= self.ESTIMATE_AFTER:
            rate = (self.done - self.first[1]) / (now - self.first[0])
            remaining = (self.total - self.done) / max(rate, 1e-9)
            left = f", about {describe_seconds(remaining)} left"
            if not self.estimated and now - self.started + remaining > self.LONG_RUN:
                self.bar.write(
                    f"{self.title}: {self.total:,} inputs at about {rate:,.0f}/s take about "
                    f"{describe_seconds(now - self.started + remaining)} in all; Ctrl-C stops "
                    f"it", file=self.bar.fp)
            self.estimated = True
        self.bar.set_postfix_str(f"{rate:,.0f}/s, {mismatches} mismatched{left}", refresh=False)
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


class StepProgress:
    """Training progress: steps taken out of the budget, with the latest numbers
    (`update(step, loss=..., agreement=...)`)."""

    def __init__(self, title: str, total: int, stream=None):
        self.bar = bar(total, title, "steps", stream)

    def update(self, step: int, **numbers: float) -> None:
        shown = ", ".join(f"{name} {value:.4g}" for name, value in numbers.items())
        self.bar.set_postfix_str(shown, refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()
