"""File helpers shared by the exporters: checked input paths and file hashes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_path(path: str | os.PathLike[str], *, allowed_roots: object = None) -> Path:
    """Validate a user-given input path (``validate_model_path``: no traversal, inside the roots).

    Existence is left to the caller, whose error message can say what to do.
    """
    from enrichment_light.core.paths import validate_model_path

    kwargs = {} if allowed_roots is None else {"allowed_roots": allowed_roots}
    return Path(validate_model_path(path, must_exist=False, **kwargs))
