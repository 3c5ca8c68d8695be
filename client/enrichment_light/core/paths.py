"""Model path validation: keep user-supplied model paths inside the allowed roots.

Rules of :func:`validate_model_path`, checked in this order:

1. The path must be a non-empty ``str`` or ``os.PathLike``. ``~`` is expanded.
2. It must not contain a NUL byte.
3. It must not contain a ``..`` component, even one that would stay inside a root.
4. Its fully resolved form must lie inside a resolved allowed root. Resolving follows every
   symlink, so a link that points out of the roots is rejected, dangling or not. The check
   compares path components, not string prefixes, so ``/models_x`` is not inside ``/models``.
   A relative path is resolved against the current directory.
5. With ``must_exist=True``, it must exist. By default a missing path inside a root is accepted,
   because the caller may be about to create it (an export target, a plan cache entry).

The allowed roots come from the ``allowed_roots`` argument, else from ``$ENRICHMENT_MODEL_ROOTS``
(separated by ``os.pathsep``), else from :data:`DEFAULT_MODEL_ROOTS` plus the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from enrichment_light.core.errors import InvalidModelPathError

MODEL_ROOTS_ENV = "ENRICHMENT_MODEL_ROOTS"
DEFAULT_MODEL_ROOTS: tuple[str, ...] = ("/models", "/cache/tensorrt", "~/.cache/enrichment-light")

StrPath = str | os.PathLike[str]


def allowed_model_roots(allowed_roots: StrPath | Iterable[StrPath] | None = None) -> list[Path]:
    """The resolved allowed roots.

    Args:
        allowed_roots: One root or several. ``None`` reads ``$ENRICHMENT_MODEL_ROOTS``, else
            uses the current directory plus :data:`DEFAULT_MODEL_ROOTS`.

    Returns:
        Resolved absolute root paths, in order, without duplicates.
    """
    if allowed_roots is None:
        env = os.environ.get(MODEL_ROOTS_ENV, "")
        raw: list[StrPath] = [p for p in env.split(os.pathsep) if p] if env else [os.getcwd(), *DEFAULT_MODEL_ROOTS]
    elif isinstance(allowed_roots, (str, os.PathLike)):
        raw = [allowed_roots]
    else:
        raw = list(allowed_roots)
    roots: list[Path] = []
    for root in raw:
        resolved = Path(os.path.expanduser(os.fspath(root))).resolve()
        if resolved not in roots:
            roots.append(resolved)
    return roots


def validate_model_path(
    path: StrPath,
    *,
    allowed_roots: StrPath | Iterable[StrPath] | None = None,
    must_exist: bool = False,
) -> Path:
    """Check that a model path is safe to open, and return it resolved.

    Args:
        path: The user-supplied path (file or folder).
        allowed_roots: Roots the path must lie in; see :func:`allowed_model_roots`.
        must_exist: Also require the path to exist.

    Returns:
        The resolved absolute path.

    Raises:
        InvalidModelPathError: A ``ValueError`` naming the path and the reason. Possible reasons
            are a wrong type or an empty path, a NUL byte, a ``..`` component, a path outside
            the allowed roots (also through a symlink), or a missing path when ``must_exist``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidModelPathError(path, f"must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise InvalidModelPathError(path, "must be a text path, not bytes")
    if not text.strip():
        raise InvalidModelPathError(path, "is empty")
    if "\x00" in text:
        raise InvalidModelPathError(path, "contains a NUL byte")
    if ".." in text.replace("\\", "/").split("/"):
        raise InvalidModelPathError(path, "contains a '..' component (path traversal)")

    roots = allowed_model_roots(allowed_roots)
    if not roots:
        raise InvalidModelPathError(path, "no allowed model roots are configured")
    try:
        resolved = Path(os.path.expanduser(text)).resolve()
    except (OSError, RuntimeError) as err:  # symlink loops, unreadable components
        raise InvalidModelPathError(path, f"cannot be resolved: {err}") from err
    if not any(resolved.is_relative_to(root) for root in roots):
        via = "" if str(resolved) == os.path.abspath(os.path.expanduser(text)) else f" (resolves to {str(resolved)!r})"
        raise InvalidModelPathError(path, f"is outside the allowed roots {[str(r) for r in roots]}{via}")
    if must_exist and not resolved.exists():
        raise InvalidModelPathError(path, "does not exist")
    return resolved
