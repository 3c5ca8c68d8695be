"""Logging helpers shared by the exporters: timed steps, byte sizes, hashing, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from enrichment_light.core.files import atomic_output  # noqa: F401  (re-exported for the exporters)

_CHUNK = 1 << 20


def format_bytes(n: int) -> str:
    """Return `n` bytes as a short human-readable string, e.g. ``"12.3 MB"``."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def checked_path(path: str | os.PathLike[str], *, allowed_roots: object = None) -> Path:
    """Validate a user-given input path (``validate_model_path``: no traversal, inside the roots).

    Existence is left to the caller, whose error message can say what to do.
    """
    from enrichment_light.core.paths import validate_model_path

    kwargs = {} if allowed_roots is None else {"allowed_roots": allowed_roots}
    return Path(validate_model_path(path, must_exist=False, **kwargs))
