"""Typed reading of Triton config ``parameters`` (``{"key": {"string_value": "..."}}``).

Pure: the serving adapters read their settings with it, the client reads a served model's config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from enrichment_light.core.flags import parse_flag


def parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """Flatten the ``parameters`` of a model config (as given to ``initialize``) to ``{key: str}``."""
    raw = model_config.get("parameters") or {}
    return {str(k): str(v.get("string_value", "") if isinstance(v, Mapping) else v) for k, v in raw.items()}


def subset(params: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The parameters starting with `prefix`, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def get_float(
    params: Mapping[str, str], key: str, default: float, *, low: float | None = None, high: float | None = None
) -> float:
    """A finite float parameter within ``[low, high]``.

    Raises:
        ValueError: Not a number, not finite or out of range (names the key and the value).
    """
    raw = params.get(key)
    if raw is None or raw == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"config parameter {key!r} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"config parameter {key!r} must be a finite number in [{low}, {high}], got {raw!r}")
    return value


def get_int(params: Mapping[str, str], key: str, default: int, *, low: int | None = None) -> int:
    """An integer parameter ``>= low``.

    Raises:
        ValueError: Not an integer or below `low`.
    """
    raw = params.get(key)
    if raw is None or raw == "":
        return int(default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"config parameter {key!r} must be an integer, got {raw!r}") from None
    if low is not None and value < low:
        raise ValueError(f"config parameter {key!r} must be >= {low}, got {value}")
    return value


def get_bool(params: Mapping[str, str], key: str, default: bool) -> bool:
    """A boolean parameter in the words of :mod:`enrichment_light.core.flags`; empty means `default`.

    Raises:
        ValueError: Any other value (names the key and the value).
    """
    return parse_flag(params.get(key), default=default, source=f"config parameter {key!r}")


def get_json(params: Mapping[str, str], key: str, default: Any) -> Any:
    """A JSON-valued parameter.

    Raises:
        ValueError: Invalid JSON.
    """
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"config parameter {key!r} must be JSON: {err}") from None
