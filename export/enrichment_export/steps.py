"""Progress logging shared by the exporters: timed steps and human-readable byte sizes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path


def format_bytes(n: int) -> str:
    """Return `n` bytes as a short human-readable string, e.g. ``"12.3 MB"``."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@contextlib.contextmanager
def timed_step(log: logging.Logger, what: str, output: Path | None = None) -> Iterator[None]:
    """Log the start of a long step, then its duration (and the size of `output` when given)."""
    log.info("%s ...", what)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if output is not None and output.exists():
        log.info("%s done in %.1fs, saved as '%s' (%s)", what, elapsed, output, format_bytes(output.stat().st_size))
    else:
        log.info("%s done in %.1fs", what, elapsed)
