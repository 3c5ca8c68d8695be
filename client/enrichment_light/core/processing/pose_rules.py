"""Rule-based, scale-invariant posture classification of COCO-17 keypoints.

Every distance is divided by the person's *reference length* ``L`` before it is compared with a
threshold, so the class does not change when the image is scaled or the person moves in the frame.
``L`` is the longer side of the person's box: the box height for an upright person and the box
width for a horizontal (crawling, lying) one. The longer side is used rather than the height
alone because a horizontal body has a short box, which would inflate every ratio. When the box is
not a valid finite box with positive width and height (for example the all-zero box of the seed's
box-less API), the longer side of the extent of the visible keypoints is used instead. When
neither gives a positive length the pose is ``unknown``.

Rules, checked in this order (the first that holds wins):

1. ``reaching_up``: the highest visible wrist is above the nose by more than
   ``reaching_up_ratio * L``.
2. ``crawling``: the body is horizontal. The shoulders and the feet (ankles, else knees) are
   closer vertically than ``crawling_ratio * L`` and further apart horizontally than vertically.
3. ``hiding``: crouching (below) with the face not visible, meaning the nose and both eyes have a
   confidence of at most ``keypoint_conf``.
4. ``crouching``: any of these holds:
   - the torso is compressed, with the hips less than ``crouch_torso_ratio * L`` below the
     shoulders;
   - the head is down, with the nose less than ``crouch_nose_hip_ratio * L`` above the hips;
   - the knees are at hip height, within ``crouch_knee_hip_ratio * L``.
5. ``running``: the horizontal spread of the two ankles is more than ``running_ratio * L``.
6. ``standing``: the shoulders and hips are visible, and none of the rules above holds.
7. ``unknown``: anything else, for example too few keypoints are visible.

A keypoint is visible when its confidence is above ``keypoint_conf`` and its coordinates are
finite. Left/right pairs (shoulders, hips, knees, ankles) use the mean of their visible members.

Fixed defects of the original rules:
- absolute pixel thresholds, which made the class depend on image scale;
- ``nose.y > 0.85 * hip.y``, which depended on where the person stood in the frame;
- crawling was unreachable whenever shoulders and hips were visible, because a horizontal torso
  already passed the crouching test. Crawling is therefore checked before crouching.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from enrichment_light.core.contract import KEYPOINT_DIMS, NUM_KEYPOINTS
from enrichment_light.core.labels import POSE_CLASS_ORDER, SUSPICIOUS_POSES, PoseClass

# COCO-17 indices.
NOSE, LEFT_EYE, RIGHT_EYE = 0, 1, 2
SHOULDERS = (5, 6)
WRISTS = (9, 10)
HIPS = (11, 12)
KNEES = (13, 14)
ANKLES = (15, 16)

_INDEX = {cls: i for i, cls in enumerate(POSE_CLASS_ORDER)}
_SUSPICIOUS_TABLE = np.array([cls in SUSPICIOUS_POSES for cls in POSE_CLASS_ORDER], dtype=bool)


@dataclass(frozen=True)
class PoseRules:
    """Every threshold of the posture rules. Ratios are fractions of the reference length ``L``.

    The defaults are the original absolute thresholds divided by the ~400 px height of the
    person in the original tests, then widened where a tight detector box of a crouched person
    needed it.

    Attributes:
        keypoint_conf: A keypoint is visible when its confidence is above this value.
        reaching_up_ratio: A wrist must be above the nose by more than this (original: 50 px).
        crawling_ratio: A horizontal body has shoulders and feet closer vertically than this
            (original: 100 px).
        crouch_torso_ratio: Crouching when the hips are less than this below the shoulders
            (original: 50 px).
        crouch_nose_hip_ratio: Crouching when the nose is less than this above the hips. It
            replaces the original, translation-dependent ``nose.y > 0.85 * hip.y``.
        crouch_knee_hip_ratio: Crouching when the knees are within this of hip height
            (original: 30 px).
        running_ratio: Running when the ankles are further apart horizontally than this
            (original: 100 px).
    """

    keypoint_conf: float = 0.3
    reaching_up_ratio: float = 0.1
    crawling_ratio: float = 0.25
    crouch_torso_ratio: float = 0.2
    crouch_nose_hip_ratio: float = 0.3
    crouch_knee_hip_ratio: float = 0.15
    running_ratio: float = 0.25

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"PoseRules.{f.name} must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if not 0.0 <= self.keypoint_conf < 1.0:
            raise ValueError(f"PoseRules.keypoint_conf must be in [0, 1), got {self.keypoint_conf!r}")
        for f in dataclasses.fields(self):
            if f.name != "keypoint_conf" and getattr(self, f.name) <= 0.0:
                raise ValueError(f"PoseRules.{f.name} must be > 0, got {getattr(self, f.name)!r}")

    @classmethod
    def from_mapping(cls, params: Mapping[str, str]) -> PoseRules:
        """Build rules from string parameters, such as Triton config ``parameters``.

        Args:
            params: Field names mapped to their values as strings. Missing fields keep their
                defaults.

        Returns:
            The rules.

        Raises:
            ValueError: A key is not a field name, or a value is not a valid number.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, float] = {}
        for key, raw in params.items():
            if key not in names:
                raise ValueError(f"unknown pose rule parameter {key!r}; known: {sorted(names)}")
            try:
                values[key] = float(str(raw).strip())
            except ValueError:
                raise ValueError(f"pose rule parameter {key!r} must be a number, got {raw!r}") from None
        return cls(**values)

    def to_mapping(self) -> dict[str, str]:
        """The inverse of :meth:`from_mapping`: every field as a string."""
        return {f.name: repr(getattr(self, f.name)) for f in dataclasses.fields(self)}


DEFAULT_POSE_RULES = PoseRules()


def _pair_mean(v: np.ndarray, vis: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """Mean of the visible members of a keypoint pair; NaN where neither is visible."""
    sel = vis[:, pair]
    total = np.where(sel, v[:, pair], 0.0).sum(axis=1)
    count = sel.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _reference_length(x: np.ndarray, y: np.ndarray, vis: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Longer box side, else the longer side of the visible keypoints' extent; NaN if neither."""
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    box_ok = np.isfinite(boxes).all(axis=1) & (bw > 0) & (bh > 0)
    kx_max = np.where(vis, x, -np.inf).max(axis=1)
    kx_min = np.where(vis, x, np.inf).min(axis=1)
    ky_max = np.where(vis, y, -np.inf).max(axis=1)
    ky_min = np.where(vis, y, np.inf).min(axis=1)
    kp_len = np.maximum(kx_max - kx_min, ky_max - ky_min)  # -inf when nothing is visible
    length = np.where(box_ok, np.maximum(bw, bh), kp_len)
    return np.where(np.isfinite(length) & (length > 0), length, np.nan)


def classify_poses(keypoints: np.ndarray, boxes: np.ndarray, *, rules: PoseRules = DEFAULT_POSE_RULES) -> np.ndarray:
    """Classify the postures of K persons at once.

    Args:
        keypoints: ``(K, 17, 3)`` array of ``x, y, confidence`` in image pixels.
        boxes: ``(K, 4)`` array of ``x1, y1, x2, y2`` person boxes. An invalid box (zero,
            inverted or non-finite) falls back to the visible keypoints' extent.
        rules: The thresholds.

    Returns:
        ``int32 (K,)`` indices into :data:`enrichment_light.core.labels.POSE_CLASS_ORDER`.

    Raises:
        ValueError: The arrays have the wrong shapes.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    bx = np.asarray(boxes, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, KEYPOINT_DIMS):
        raise ValueError(f"keypoints must have shape (K, {NUM_KEYPOINTS}, {KEYPOINT_DIMS}), got {kp.shape}")
    if bx.shape != (kp.shape[0], 4):
        raise ValueError(f"boxes must have shape ({kp.shape[0]}, 4), got {bx.shape}")

    x, y, conf = kp[..., 0], kp[..., 1], kp[..., 2]
    vis = (conf > rules.keypoint_conf) & np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        length = _reference_length(x, y, vis, bx)
        nose_y = np.where(vis[:, NOSE], y[:, NOSE], np.nan)
        wrist_top = np.where(vis[:, WRISTS], y[:, WRISTS], np.inf).min(axis=1)
        wrist_top = np.where(np.isfinite(wrist_top), wrist_top, np.nan)
        sh_x, sh_y = _pair_mean(x, vis, SHOULDERS), _pair_mean(y, vis, SHOULDERS)
        hip_y = _pair_mean(y, vis, HIPS)
        knee_x, knee_y = _pair_mean(x, vis, KNEES), _pair_mean(y, vis, KNEES)
        ank_x, ank_y = _pair_mean(x, vis, ANKLES), _pair_mean(y, vis, ANKLES)
        feet_x = np.where(np.isnan(ank_y), knee_x, ank_x)
        feet_y = np.where(np.isnan(ank_y), knee_y, ank_y)

        # NaN (a missing keypoint or length) makes every comparison False.
        reaching = (nose_y - wrist_top) / length > rules.reaching_up_ratio
        body_dy = np.abs(sh_y - feet_y)
        crawling = (body_dy / length < rules.crawling_ratio) & (np.abs(sh_x - feet_x) > body_dy)
        crouching = (
            ((hip_y - sh_y) / length < rules.crouch_torso_ratio)
            | ((hip_y - nose_y) / length < rules.crouch_nose_hip_ratio)
            | (np.abs(knee_y - hip_y) / length < rules.crouch_knee_hip_ratio)
        )
        face_hidden = ~vis[:, [NOSE, LEFT_EYE, RIGHT_EYE]].any(axis=1)
        both_ankles = vis[:, ANKLES].all(axis=1)
        ankle_spread = np.abs(x[:, ANKLES[0]] - x[:, ANKLES[1]])
        running = both_ankles & (ankle_spread / length > rules.running_ratio)
        standing = ~np.isnan(sh_y) & ~np.isnan(hip_y) & ~np.isnan(length)

    conditions = [reaching, crawling, crouching & face_hidden, crouching, running, standing]
    choices = [
        _INDEX[PoseClass.REACHING_UP],
        _INDEX[PoseClass.CRAWLING],
        _INDEX[PoseClass.HIDING],
        _INDEX[PoseClass.CROUCHING],
        _INDEX[PoseClass.RUNNING],
        _INDEX[PoseClass.STANDING],
    ]
    return np.select(conditions, choices, default=_INDEX[PoseClass.UNKNOWN]).astype(np.int32)


def classify_pose(
    keypoints: np.ndarray, box: np.ndarray | None = None, *, rules: PoseRules = DEFAULT_POSE_RULES
) -> PoseClass:
    """Classify the posture of one person.

    Args:
        keypoints: ``(17, 3)`` array of ``x, y, confidence`` in image pixels.
        box: ``x1, y1, x2, y2`` person box. ``None`` or an invalid box (such as all zeros, as in
            the seed's box-less API) uses the visible keypoints' extent instead.
        rules: The thresholds.

    Returns:
        The posture class.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    bx = np.zeros(4) if box is None else np.asarray(box, dtype=np.float64)
    if kp.shape != (NUM_KEYPOINTS, KEYPOINT_DIMS):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, {KEYPOINT_DIMS}), got {kp.shape}")
    if bx.shape != (4,):
        raise ValueError(f"box must have shape (4,), got {bx.shape}")
    return POSE_CLASS_ORDER[int(classify_poses(kp[None], bx[None], rules=rules)[0])]


def suspicious_mask(indices: np.ndarray) -> np.ndarray:
    """Whether each pose class index (see ``POSE_CLASS_ORDER``) is suspicious.

    Args:
        indices: Integer pose class indices, any shape.

    Returns:
        Boolean array of the same shape.

    Raises:
        ValueError: An index is outside ``POSE_CLASS_ORDER``.
    """
    idx = np.asarray(indices)
    if idx.size and (idx.min() < 0 or idx.max() >= len(POSE_CLASS_ORDER)):
        raise ValueError(f"pose class indices must be in [0, {len(POSE_CLASS_ORDER)}), got {idx.min()}..{idx.max()}")
    return _SUSPICIOUS_TABLE[idx.astype(np.intp)]


def pose_confidences(keypoints: np.ndarray) -> np.ndarray:
    """Pose confidence per person: the mean keypoint confidence (the seed's definition).

    Args:
        keypoints: ``(K, 17, 3)`` keypoints.

    Returns:
        ``float32 (K,)``; non-finite confidences count as 0.
    """
    conf = np.asarray(keypoints, dtype=np.float64)[..., 2]
    return np.nan_to_num(conf, nan=0.0, posinf=0.0, neginf=0.0).mean(axis=-1).astype(np.float32)
