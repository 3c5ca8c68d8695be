"""YOLOv8 detection and pose postprocessing in vectorised NumPy, matching Ultralytics.

:func:`postprocess_detections` and :func:`postprocess_pose` reproduce
``ultralytics.utils.nms.non_max_suppression`` (``multi_label=False``, ``max_nms=30000``,
``max_wh=7680``) followed by ``ultralytics.utils.ops.scale_boxes`` / ``scale_coords`` (both of
which clip to the original image). All arithmetic is float32 in the same order as Ultralytics,
so IoU threshold decisions are bit-identical.

Equal scores: Ultralytics' own fallback ``TorchNMS.nms`` uses an *unstable* torch sort, whose
tie order is an implementation detail of the C++ standard library. ``torchvision.ops.nms``
(which Ultralytics prefers whenever torchvision is importable, i.e. in a normal install, on CPU
and GPU) sorts with ``stable=True``. We do the same: among equal scores the lower anchor index
comes first. Likewise an IoU that is NaN (two zero-area boxes) never suppresses, as in
torchvision.

The padding helpers convert between per-image results and the fixed-size, zero-padded arrays of
the Triton postprocessors (EfficientNMS convention: ``MAX_DETECTIONS`` rows plus a count), keyed
by the tensor names of :mod:`enrichment_light.core.contract`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from enrichment_light.core import validators
from enrichment_light.core.contract import (
    BOXES,
    CLASS_IDS,
    KEYPOINT_DIMS,
    KEYPOINTS,
    MAX_DETECTIONS,
    NUM_DETECTIONS,
    NUM_KEYPOINTS,
    POSE_CLASS,
    POSE_CONFIDENCE,
    POSE_RAW_CHANNELS,
    SCORES,
    SUSPICIOUS,
)
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.processing.image import LetterboxInfo

__all__ = [
    "MAX_NMS",
    "MAX_WH",
    "POSE_FIELDS",
    "Detections",
    "nms",
    "pad_detections",
    "pad_pose",
    "pad_rows",
    "pose_detections",
    "postprocess_detections",
    "postprocess_pose",
    "scale_boxes",
    "scale_keypoints",
    "split_batch",
    "unpad_detections",
    "unpad_pose",
]

MAX_NMS = 30000  # Ultralytics: most boxes that enter NMS
MAX_WH = 7680  # Ultralytics: per-class coordinate offset for class-aware NMS
_MATRIX_NMS_LIMIT = 1024  # up to this many candidates, NMS uses one IoU matrix


# --------------------------------------------------------------------------------------------
# Result containers (arrays per field, supervision style)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """The one detection container of the processing side: parallel arrays plus a ``data`` dict.

    As supervision's ``Detections``: one row per object, in original-image pixels. Pose and threat
    outputs are the same container with different ``data`` keys (checked by
    :mod:`enrichment_light.core.validators`); per-object dataclasses exist only at the client.

    Attributes:
        xyxy: ``float32 (K, 4)`` boxes ``x1, y1, x2, y2``.
        scores: ``float32 (K,)`` box scores.
        class_ids: ``int32 (K,)`` class indices of the model (0, person, for pose).
        data: Per-object arrays with K rows. Pose: ``keypoints`` ``float32 (K, 17, 3)``
            (``x, y, confidence``), ``pose_class`` ``int32`` (index into ``labels.POSE_CLASS_ORDER``),
            ``pose_confidence`` ``float32`` (mean keypoint confidence), ``suspicious`` ``bool``.
            Threat: ``threat_type`` and ``class_name`` ``object`` (str), ``severity`` ``int32``
            (rank in ``labels.SEVERITY_ORDER``). Keys also read as attributes: ``det.keypoints``.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    data: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = np.asarray(self.scores).reshape(-1).shape[0]
        object.__setattr__(self, "xyxy", validators.array_field("Detections.xyxy", self.xyxy, np.float32, (k, 4)))
        object.__setattr__(self, "scores", validators.array_field("Detections.scores", self.scores, np.float32, (k,)))
        object.__setattr__(
            self, "class_ids", validators.array_field("Detections.class_ids", self.class_ids, np.int32, (k,))
        )
        object.__setattr__(self, "data", validators.detection_data("Detections", k, self.data))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getattr__(self, name: str) -> np.ndarray:
        data = self.__dict__.get("data", {})
        if name in data:
            return data[name]
        raise AttributeError(f"Detections has no field or data key {name!r} (data keys: {sorted(data)})")

    def __getitem__(self, index: str | int | slice | np.ndarray) -> np.ndarray | Detections:
        """``det["keypoints"]`` reads a data array; an index, slice or mask selects rows."""
        if isinstance(index, str):
            return self.data[index]
        rows = np.arange(len(self))[index].reshape(-1)
        return Detections(
            self.xyxy[rows], self.scores[rows], self.class_ids[rows], {k: v[rows] for k, v in self.data.items()}
        )

    @classmethod
    def empty(cls, *keys: str) -> Detections:
        """No detections, with empty arrays for the given known ``data`` keys."""
        data = {}
        for key in keys:
            dtype, row_shape = validators.DATA_FIELDS[key]
            data[key] = np.zeros((0, *row_shape), dtype=dtype)
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), data)


#: ``data`` keys of pose detections.
POSE_FIELDS = ("keypoints", "pose_class", "pose_confidence", "suspicious")


def pose_detections(
    *,
    xyxy: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray,
    pose_class: np.ndarray,
    pose_confidence: np.ndarray,
    suspicious: np.ndarray,
) -> Detections:
    """Persons of one image as :class:`Detections` (class id 0) with the pose ``data`` keys."""
    data = {"keypoints": keypoints, "pose_class": pose_class, "pose_confidence": pose_confidence}
    data["suspicious"] = suspicious
    return Detections(xyxy, scores, np.zeros(np.asarray(scores).reshape(-1).shape[0], np.int32), data)


# --------------------------------------------------------------------------------------------
# NMS and coordinate scaling
# --------------------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS, identical to ``torchvision.ops.nms`` (stable score order, IoU > threshold).

    Args:
        boxes: ``float32 (n, 4)`` xyxy boxes.
        scores: ``(n,)`` scores.
        iou_threshold: Boxes with IoU strictly above this with a kept box are dropped.
        max_keep: Stop after this many boxes are kept (exact: NMS keeps in score order).

    Returns:
        ``int64`` indices of the kept boxes, by descending score.
    """
    n = scores.shape[0]
    limit = n if max_keep is None else min(n, max_keep)
    if n == 0 or limit <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = np.ascontiguousarray(boxes[order], dtype=np.float32)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    thr = np.float32(iou_threshold)
    keep: list[int] = []
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if n <= _MATRIX_NMS_LIMIT:
            w = np.clip(np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]), 0, None)
            h = np.clip(np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]), 0, None)
            inter = w * h
            suppress = inter / (areas[:, None] + areas[None, :] - inter) > thr
            removed = np.zeros(n, dtype=bool)
            for i in range(n):
                if removed[i]:
                    continue
                keep.append(i)
                if len(keep) == limit:
                    break
                removed |= suppress[i]
        else:
            rest = np.arange(n)
            while rest.size:
                i = rest[0]
                keep.append(int(i))
                if len(keep) == limit:
                    break
                rest = rest[1:]
                w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
                h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
                inter = w * h
                rest = rest[~(inter / (areas[i] + areas[rest] - inter) > thr)]
    return order[np.asarray(keep, dtype=np.int64)]


def scale_boxes(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map xyxy boxes from letterbox to original pixels and clip, as Ultralytics' ``scale_boxes``.

    Args:
        boxes: ``(K, 4)`` xyxy boxes in letterbox pixels.
        info: The letterbox of the image.

    Returns:
        ``float32 (K, 4)`` boxes in original pixels, clipped to the image.
    """
    gain_x, gain_y = info.gain_xy
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    out -= np.array([info.pad_left, info.pad_top, info.pad_left, info.pad_top], dtype=np.float32)
    out /= np.array([gain_x, gain_y, gain_x, gain_y], dtype=np.float32)
    np.clip(out[:, 0::2], 0, info.orig_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, info.orig_h, out=out[:, 1::2])
    return out


def scale_keypoints(keypoints: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map keypoints from letterbox to original pixels and clip, as Ultralytics' ``scale_coords``.

    Args:
        keypoints: ``(..., 3)`` (or ``(..., 2)``) array with x, y first; other channels untouched.
        info: The letterbox of the image.

    Returns:
        ``float32`` array of the same shape.
    """
    gain_x, gain_y = info.gain_xy
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[..., 0] = np.clip((out[..., 0] - np.float32(info.pad_left)) / np.float32(gain_x), 0, info.orig_w)
    out[..., 1] = np.clip((out[..., 1] - np.float32(info.pad_top)) / np.float32(gain_y), 0, info.orig_h)
    return out


def _check_thresholds(conf: float, iou: float, max_det: int) -> None:
    for name, value in (("conf", conf), ("iou", iou)):
        if not (isinstance(value, (int, float, np.floating, np.integer)) and 0.0 <= float(value) <= 1.0):
            raise InvalidInputError(f"{name} threshold must be a number in [0, 1], got {value!r}")
    if isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer)) or max_det <= 0:
        raise InvalidInputError(f"max_det must be a positive integer, got {max_det!r}")


def _check_raw(raw: object, channels: int | None) -> np.ndarray:
    array = np.asarray(raw)
    if array.ndim != 3:
        raise InvalidInputError(f"raw output must have shape [N, C, anchors], got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidInputError(f"raw output must be floating point, got {array.dtype}")
    if channels is None and array.shape[1] < 5:
        raise InvalidInputError(f"raw detector output needs 4 box + at least 1 class channel, got {array.shape}")
    if channels is not None and array.shape[1] != channels:
        raise InvalidInputError(f"raw pose output must have {channels} channels, got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def _infos(infos: object, batch: int) -> list[LetterboxInfo]:
    if isinstance(infos, LetterboxInfo):
        infos = [infos]
    if isinstance(infos, np.ndarray):
        array = infos.reshape(batch, -1) if infos.size and infos.ndim != 2 else infos
        if array.ndim != 2 or array.shape[0] != batch:
            raise InvalidInputError(f"letterbox info must have shape [{batch}, 5], got {infos.shape}")
        return [LetterboxInfo.from_array(row) for row in array]
    out = [i if isinstance(i, LetterboxInfo) else LetterboxInfo.from_array(i) for i in infos]  # type: ignore[union-attr]
    if len(out) != batch:
        raise InvalidInputError(f"got {len(out)} letterbox infos for a batch of {batch}")
    return out


def _nms_image(pred: np.ndarray, nc: int, *, conf: float, iou: float, max_det: int, agnostic: bool) -> np.ndarray:
    """One image of ``non_max_suppression``: ``pred`` is ``(C, A)``; returns ``(k, 6 + extra)`` rows."""
    mi = 4 + nc
    conf32 = np.float32(conf)
    cls = pred[4:mi]
    best = cls[0] if nc == 1 else cls.max(axis=0)
    idx = np.flatnonzero(best > conf32)
    if idx.size == 0:
        return np.zeros((0, pred.shape[0] + 2 - nc), dtype=np.float32)
    x = pred[:, idx].T  # (n, C), a copy
    score = best[idx]
    j = np.zeros(idx.size, dtype=np.float32) if nc == 1 else x[:, 4:mi].argmax(axis=1).astype(np.float32)
    xy, half = x[:, :2], x[:, 2:4] / np.float32(2)
    rows = np.concatenate((xy - half, xy + half, score[:, None], j[:, None], x[:, mi:]), axis=1)
    if rows.shape[0] > MAX_NMS:
        rows = rows[np.argsort(-rows[:, 4], kind="stable")[:MAX_NMS]]
    boxes = rows[:, :4] if agnostic else rows[:, :4] + rows[:, 5:6] * np.float32(MAX_WH)
    return rows[nms(boxes, rows[:, 4], iou, max_keep=max_det)]


def postprocess_detections(
    raw: np.ndarray,
    infos: Sequence[LetterboxInfo] | np.ndarray,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    agnostic: bool = False,
) -> list[Detections]:
    """NMS and un-letterbox of a YOLOv8 detect head, as Ultralytics' predictor.

    Args:
        raw: ``[N, 4 + nc, anchors]`` raw head output: centre ``x, y, w, h`` in letterbox pixels,
            then the class scores.
        infos: One :class:`LetterboxInfo` per image, or an ``[N, 5]`` ``LETTERBOX_INFO`` array.
        conf: Keep boxes whose best class score is strictly above this.
        iou: Suppress boxes whose IoU with a better box (of the same class unless ``agnostic``)
            is strictly above this.
        max_det: Most detections per image.
        agnostic: Class-agnostic NMS.

    Returns:
        One :class:`Detections` per image, by descending score.

    Raises:
        InvalidInputError: Bad shapes, dtypes or thresholds.
    """
    _check_thresholds(conf, iou, max_det)
    pred = _check_raw(raw, None)
    lbs = _infos(infos, pred.shape[0])
    nc = pred.shape[1] - 4
    out = []
    for p, info in zip(pred, lbs, strict=False):
        rows = _nms_image(p, nc, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic)
        out.append(Detections(scale_boxes(rows[:, :4], info), rows[:, 4], rows[:, 5].astype(np.int32)))
    return out


def postprocess_pose(
    raw: np.ndarray,
    infos: Sequence[LetterboxInfo] | np.ndarray,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    rules: object | None = None,
) -> list[Detections]:
    """NMS, un-letterbox and posture classification of a YOLOv8-pose head.

    Boxes follow Ultralytics' ``scale_boxes`` and keypoint ``x, y`` its ``scale_coords`` (both
    clip to the image); keypoint confidences are passed through untouched.

    Args:
        raw: ``[N, 56, anchors]``: centre ``x, y, w, h``, person score, then 17 x ``(x, y, conf)``.
        infos: One :class:`LetterboxInfo` per image, or an ``[N, 5]`` ``LETTERBOX_INFO`` array.
        conf: Person score threshold (strictly above).
        iou: NMS IoU threshold (strictly above suppresses).
        max_det: Most persons per image.
        rules: A :class:`~enrichment_light.core.processing.pose_rules.PoseRules`; ``None`` uses the
            defaults.

    Returns:
        One :class:`Detections` with the pose ``data`` keys per image, by descending score.

    Raises:
        InvalidInputError: Bad shapes, dtypes or thresholds.
    """
    from enrichment_light.core.processing import pose_rules

    _check_thresholds(conf, iou, max_det)
    pred = _check_raw(raw, POSE_RAW_CHANNELS)
    lbs = _infos(infos, pred.shape[0])
    kwargs = {} if rules is None else {"rules": rules}
    out = []
    for p, info in zip(pred, lbs, strict=False):
        rows = _nms_image(p, 1, conf=conf, iou=iou, max_det=max_det, agnostic=False)
        boxes = scale_boxes(rows[:, :4], info)
        kpts = scale_keypoints(rows[:, 6:].reshape(-1, NUM_KEYPOINTS, KEYPOINT_DIMS), info)
        classes = pose_rules.classify_poses(kpts, boxes, **kwargs)
        out.append(
            pose_detections(
                xyxy=boxes,
                scores=rows[:, 4],
                keypoints=kpts,
                pose_class=classes,
                pose_confidence=pose_rules.pose_confidences(kpts),
                suspicious=pose_rules.suspicious_mask(classes),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Padding (EfficientNMS convention) for the Triton postprocessors
# --------------------------------------------------------------------------------------------


def pad_rows(array: np.ndarray, max_rows: int = MAX_DETECTIONS, *, fill: object = 0) -> np.ndarray:
    """Pad (with ``fill``) or truncate the first axis to exactly ``max_rows`` rows.

    Args:
        array: ``(K, ...)`` array.
        max_rows: Output length of the first axis.
        fill: Value of the padding rows.

    Returns:
        ``(max_rows, ...)`` array of the same dtype.
    """
    array = np.asarray(array)
    out = np.full((max_rows, *array.shape[1:]), fill, dtype=array.dtype)
    k = min(array.shape[0], max_rows)
    out[:k] = array[:k]
    return out


def _count(outputs: Mapping[str, np.ndarray], max_rows: int) -> int:
    count = np.asarray(outputs[NUM_DETECTIONS]).reshape(-1)
    if count.shape != (1,):
        raise InvalidInputError(f"{NUM_DETECTIONS} must hold one value per image, got shape {count.shape}")
    k = int(count[0])
    if not 0 <= k <= max_rows:
        raise InvalidInputError(f"{NUM_DETECTIONS} must be in [0, {max_rows}], got {k}")
    return k


def _rows(outputs: Mapping[str, np.ndarray], name: str, k: int, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(outputs[name])
    if array.ndim != 1 + len(shape) or array.shape[1:] != shape or array.shape[0] < k:
        raise InvalidInputError(f"{name} must have shape (>= {k}, {', '.join(map(str, shape))}), got {array.shape}")
    return array[:k]


def pad_detections(detections: Detections, max_det: int = MAX_DETECTIONS) -> dict[str, np.ndarray]:
    """Fixed-size outputs of one image: ``NUM_DETECTIONS``, ``BOXES``, ``SCORES``, ``CLASS_IDS``.

    Padding rows are 0, class ids -1. Detections beyond ``max_det`` are dropped (they are the
    lowest-scoring ones, as :func:`postprocess_detections` returns them by descending score).
    """
    k = min(len(detections), max_det)
    return {
        NUM_DETECTIONS: np.array([k], dtype=np.int32),
        BOXES: pad_rows(detections.xyxy, max_det),
        SCORES: pad_rows(detections.scores, max_det),
        CLASS_IDS: pad_rows(detections.class_ids, max_det, fill=-1),
    }


def unpad_detections(outputs: Mapping[str, np.ndarray]) -> Detections:
    """Inverse of :func:`pad_detections` for one image (arrays without the batch axis)."""
    k = _count(outputs, np.asarray(outputs[SCORES]).shape[0])
    return Detections(_rows(outputs, BOXES, k, (4,)), _rows(outputs, SCORES, k, ()), _rows(outputs, CLASS_IDS, k, ()))


def pad_pose(poses: Detections, max_det: int = MAX_DETECTIONS) -> dict[str, np.ndarray]:
    """Fixed-size pose outputs of one image, keyed by the contract's pose tensor names.

    Padding rows are 0 (``False`` for ``SUSPICIOUS``), pose classes -1. Persons beyond ``max_det``
    (the lowest-scoring) are dropped.
    """
    k = min(len(poses), max_det)
    return {
        NUM_DETECTIONS: np.array([k], dtype=np.int32),
        BOXES: pad_rows(poses.xyxy, max_det),
        SCORES: pad_rows(poses.scores, max_det),
        KEYPOINTS: pad_rows(poses.keypoints, max_det),
        POSE_CLASS: pad_rows(poses.pose_class, max_det, fill=-1),
        POSE_CONFIDENCE: pad_rows(poses.pose_confidence, max_det),
        SUSPICIOUS: pad_rows(poses.suspicious, max_det),
    }


def unpad_pose(outputs: Mapping[str, np.ndarray]) -> Detections:
    """Inverse of :func:`pad_pose` for one image (arrays without the batch axis)."""
    k = _count(outputs, np.asarray(outputs[SCORES]).shape[0])
    return pose_detections(
        xyxy=_rows(outputs, BOXES, k, (4,)),
        scores=_rows(outputs, SCORES, k, ()),
        keypoints=_rows(outputs, KEYPOINTS, k, (NUM_KEYPOINTS, KEYPOINT_DIMS)),
        pose_class=_rows(outputs, POSE_CLASS, k, ()),
        pose_confidence=_rows(outputs, POSE_CONFIDENCE, k, ()),
        suspicious=_rows(outputs, SUSPICIOUS, k, ()),
    )


def split_batch(outputs: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split batched outputs (leading batch axis on every array) into one dict per image.

    Raises:
        InvalidInputError: The arrays disagree on the batch size.
    """
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(sizes) != 1 or None in sizes:
        raise InvalidInputError(f"batched outputs must share one batch size, got {sorted(map(str, sizes))}")
    (batch,) = sizes
    return [{name: a[i] for name, a in arrays.items()} for i in range(batch)]
