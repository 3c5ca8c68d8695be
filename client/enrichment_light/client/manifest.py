"""Reader for the repository manifest (``repository.json``) written by the repository builder."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def load_manifest(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a repository manifest (``repository.json`` or the folder that holds it).

    Returns ``{}`` when `path` is None or the file does not exist.
    """
    if path is None:
        return {}
    p = Path(path)
    if p.is_dir():
        p = p / "repository.json"
    if not p.is_file():
        return {}
    return json.loads(p.read_text())


def manifest_entry(manifest: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The manifest's entry for `model` (``{"models": {name: {...}}}`` or a list of dicts)."""
    models = manifest.get("models", {})
    if isinstance(models, Mapping):
        return dict(models.get(model, {}))
    for item in models:
        if isinstance(item, Mapping) and item.get("name") == model:
            return dict(item)
    return {}
