"""Every check on detections and results in one place (supervision keeps its checks in ``validators``).

The processing side checks array fields (:func:`array_field`, :func:`detection_data`); the public
result dataclasses check scalars and boxes (:func:`finite`, :func:`unit_interval`, :func:`bbox`).
Each raises ValueError naming the owner, the field, the expected and the actual value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from enrichment_light.core.contract import KEYPOINT_DIMS, NUM_KEYPOINTS
from enrichment_light.core.labels import POSE_CLASS_ORDER, SEVERITY_ORDER

#: Known keys of ``Detections.data``: dtype and per-row shape.
DATA_FIELDS: dict[str, tuple[Any, tuple[int, ...]]] = {
    # pose
    "keypoints": (np.float32, (NUM_KEYPOINTS, KEYPOINT_DIMS)),
    "pose_class": (np.int32, ()),
    "pose_confidence": (np.float32, ()),
    "suspicious": (np.bool_, ()),
    # threat
    "threat_type": (object, ()),
    "severity": (np.int32, ()),
    "class_name": (object, ()),
}
#: Index ranges of the label fields (wire order of core.labels).
_INDEX_RANGES = {"pose_class": len(POSE_CLASS_ORDER), "severity": len(SEVERITY_ORDER)}


def object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D ``object`` array of `values` (strings stay strings; NumPy would make a ``<U`` array)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def array_field(name: str, value: object, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`value` as a contiguous array of `dtype` with exactly `shape`.

    Raises:
        ValueError: Another shape.
    """
    if dtype is object:
        array = value if isinstance(value, np.ndarray) and value.dtype == object else object_array(list(value))
    else:
        array = np.ascontiguousarray(value, dtype=dtype)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


def detection_data(owner: str, rows: int, data: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Check the per-detection ``data`` arrays of a container with `rows` detections.

    Known keys (:data:`DATA_FIELDS`) get their dtype and row shape; other keys only need `rows`
    rows. Label indices must lie in the wire order of :mod:`enrichment_light.core.labels`.

    Raises:
        ValueError: A wrong shape or an index outside its label order.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in data.items():
        if key in DATA_FIELDS:
            dtype, row_shape = DATA_FIELDS[key]
            array = array_field(f"{owner}.data[{key!r}]", value, dtype, (rows, *row_shape))
        else:
            array = np.asarray(value)
            if array.shape[:1] != (rows,):
                raise ValueError(f"{owner}.data[{key!r}] must have {rows} rows, got shape {array.shape}")
        limit = _INDEX_RANGES.get(key)
        if limit is not None and rows and (array.min() < 0 or array.max() >= limit):
            raise ValueError(f"{owner}.data[{key!r}] must index 0..{limit - 1}, got {array.min()}..{array.max()}")
        out[key] = array
    return out


def finite(owner: str, name: str, value: float) -> None:
    """Raise ValueError unless `value` is finite."""
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be finite, got {value!r}")


def unit_interval(owner: str, name: str, value: float) -> None:
    """Raise ValueError unless `value` is finite and in ``[0, 1]``."""
    finite(owner, name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}.{name} must be in [0, 1], got {value!r}")


def bbox(owner: str, box: Sequence[float]) -> tuple[float, float, float, float]:
    """``[x1, y1, x2, y2]`` as floats, finite and ordered.

    Raises:
        ValueError: Not four values, not finite, or ``x2 < x1`` / ``y2 < y1``.
    """
    if len(box) != 4:
        raise ValueError(f"{owner}.bbox must have 4 values [x1, y1, x2, y2], got {len(box)}")
    x1, y1, x2, y2 = (float(v) for v in box)
    for v in (x1, y1, x2, y2):
        finite(owner, "bbox", v)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{owner}.bbox must satisfy x1 <= x2 and y1 <= y2, got {list(box)}")
    return x1, y1, x2, y2
