"""Draw pose, threat and enrichment results onto RGB images with OpenCV only (Hershey font, no downloads).

Every ``draw_*`` function takes an ``H x W x 3`` uint8 **RGB** image, leaves it untouched and returns
a new array of the same shape and dtype. Coordinates are original-image pixels, as in the results.

Legend (RGB):

=====================  ===============  =============================================
element                colour           meaning
=====================  ===============  =============================================
threat box, critical   red (255,0,0)    gun, pistol, rifle, ...
threat box, high       orange           knife, sword, machete, axe
                       (255,165,0)
threat box, medium     yellow           bat, crowbar, hammer
                       (255,255,0)
threat box, low        blue (0,0,255)   unmapped classes with a low default severity
person box             green (0,200,0)  posture not suspicious
person box             magenta          suspicious posture; label ends with ``!``
                       (255,0,255)
skeleton               cyan (0,255,255) limbs between visible keypoints
keypoint               white dot        confidence above ``keypoint_threshold``
=====================  ===============  =============================================

Labels are filled rectangles in the element's colour with black or white text (whichever reads
better): ``"knife 0.87"`` for threats, ``"crouching 0.82 !"`` for persons, and for enrichment results
a second label under the person box with the first 6 hex characters of the re-id hash
(``"#3fa2b1"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from enrichment_light.client.results import EnrichmentResult, PoseResult, Severity, ThreatResult
from enrichment_light.core.contract import KEYPOINT_NAMES, SKELETON
from enrichment_light.core.errors import EnrichmentError, InvalidInputError
from enrichment_light.core.files import atomic_output

__all__ = [
    "KEYPOINT_COLOR",
    "PERSON_COLOR",
    "SEVERITY_COLORS",
    "SKELETON_COLOR",
    "SUSPICIOUS_COLOR",
    "draw_enrichment",
    "draw_pose",
    "draw_threats",
    "save_annotated",
]

Color = tuple[int, int, int]

SEVERITY_COLORS: dict[Severity, Color] = {
    Severity.CRITICAL: (255, 0, 0),
    Severity.HIGH: (255, 165, 0),
    Severity.MEDIUM: (255, 255, 0),
    Severity.LOW: (0, 0, 255),
    Severity.NONE: (128, 128, 128),
}
PERSON_COLOR: Color = (0, 200, 0)
SUSPICIOUS_COLOR: Color = (255, 0, 255)
SKELETON_COLOR: Color = (0, 255, 255)
KEYPOINT_COLOR: Color = (255, 255, 255)
DEFAULT_KEYPOINT_THRESHOLD = 0.3
REID_LABEL_CHARS = 6

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_KP_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
_EXTENSIONS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png"}


def draw_pose(
    image_rgb: np.ndarray, poses: Sequence[PoseResult], *, keypoint_threshold: float = DEFAULT_KEYPOINT_THRESHOLD
) -> np.ndarray:
    """Draw person boxes, skeletons, visible keypoints and posture labels.

    Args:
        image_rgb: ``H x W x 3`` uint8 RGB image (not modified).
        poses: The detected persons.
        keypoint_threshold: Keypoints with confidence above this are drawn (and joined by limbs).

    Returns:
        A new annotated image of the same shape and dtype.

    Raises:
        InvalidInputError: The image is not ``H x W x 3`` uint8.
    """
    out = _copy_image(image_rgb)
    style = _Style(out)
    for pose in poses:
        _draw_person(out, style, pose, keypoint_threshold, reid_hash=None)
    return out


def draw_threats(image_rgb: np.ndarray, threat_result: ThreatResult) -> np.ndarray:
    """Draw threat boxes coloured by severity, labelled with threat type and confidence.

    Args:
        image_rgb: ``H x W x 3`` uint8 RGB image (not modified).
        threat_result: The threats of this image.

    Returns:
        A new annotated image of the same shape and dtype.

    Raises:
        InvalidInputError: The image is not ``H x W x 3`` uint8.
    """
    out = _copy_image(image_rgb)
    style = _Style(out)
    _draw_threats(out, style, threat_result)
    return out


def draw_enrichment(
    image_rgb: np.ndarray, result: EnrichmentResult, *, keypoint_threshold: float = DEFAULT_KEYPOINT_THRESHOLD
) -> np.ndarray:
    """Draw persons (box, skeleton, posture, short re-id hash) and then threats on top.

    Args:
        image_rgb: ``H x W x 3`` uint8 RGB image (not modified).
        result: The enrichment result of this image.
        keypoint_threshold: Keypoints with confidence above this are drawn.

    Returns:
        A new annotated image of the same shape and dtype.

    Raises:
        InvalidInputError: The image is not ``H x W x 3`` uint8.
    """
    out = _copy_image(image_rgb)
    style = _Style(out)
    for person in result.persons:
        reid_hash = None if person.reid is None else person.reid.embedding_hash
        _draw_person(out, style, person.pose, keypoint_threshold, reid_hash=reid_hash)
    _draw_threats(out, style, result.threats)
    return out


def save_annotated(path: str | os.PathLike[str], image_rgb: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Write an RGB image as JPEG (``.jpg``/``.jpeg``) or PNG (``.png``), chosen by extension.

    The file is written atomically (temporary file + ``os.replace``).

    Args:
        path: Target file; its directory must exist.
        image_rgb: ``H x W x 3`` uint8 RGB image.
        jpeg_quality: JPEG quality 0-100.

    Returns:
        The path written.

    Raises:
        InvalidInputError: Unknown extension, missing directory or bad image.
        EnrichmentError: OpenCV could not encode the image.
    """
    target = Path(path)
    ext = _EXTENSIONS.get(target.suffix.lower())
    if ext is None:
        raise InvalidInputError(
            f"cannot save {str(target)!r}: unknown image extension {target.suffix!r}; use .jpg, .jpeg or .png"
        )
    if not target.parent.is_dir():
        raise InvalidInputError(f"cannot save {str(target)!r}: directory {str(target.parent)!r} does not exist")
    _check_image(image_rgb)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise EnrichmentError(f"OpenCV could not encode {str(target)!r} as {ext}")
    with atomic_output(target) as tmp:
        tmp.write_bytes(buf.tobytes())
    return target


# --- internals ------------------------------------------------------------------------------
class _Style:
    """Line width and font size scaled to the image."""

    def __init__(self, image: np.ndarray) -> None:
        short = min(image.shape[:2])
        self.thickness = max(1, round(short / 400))
        self.radius = max(2, round(short / 200))
        self.font_scale = max(0.35, short / 1200)
        self.font_thickness = max(1, round(short / 600))


def _check_image(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = (
            f"{type(image).__name__} {getattr(image, 'dtype', '')}{list(getattr(image, 'shape', ()))}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise InvalidInputError(f"image must be an H x W x 3 uint8 RGB numpy array, got {desc}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"image must not be empty, got shape {image.shape}")
    return image


def _copy_image(image: object) -> np.ndarray:
    return np.ascontiguousarray(_check_image(image)).copy()


def _box_px(bbox: Sequence[float], shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Round and clip a box to the image; None when it has no area inside the image."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if x2 <= x1 or y2 <= y1 or x2 < 0 or y2 < 0 or x1 > w - 1 or y1 > h - 1:
        return None
    return (
        round(min(max(x1, 0), w - 1)),
        round(min(max(y1, 0), h - 1)),
        round(min(max(x2, 0), w - 1)),
        round(min(max(y2, 0), h - 1)),
    )


def _text_color(bg: Color) -> Color:
    luminance = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _label(image: np.ndarray, style: _Style, text: str, at: tuple[int, int], color: Color, *, above: bool) -> None:
    """Filled label whose bottom-left (``above``) or top-left corner is at ``at``, kept inside the image."""
    x, y = at
    h, w = image.shape[:2]
    (tw, th), base = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    box_h = th + base + 2
    top = y - box_h if above else y
    if top < 0:
        top = y if above else 0
    if top + box_h > h:
        top = max(0, h - box_h)
    left = min(max(0, x), max(0, w - tw - 2))
    cv2.rectangle(image, (left, top), (left + tw + 2, top + box_h), color, thickness=-1)
    cv2.putText(
        image, text, (left + 1, top + th + 1), _FONT, style.font_scale, _text_color(color), style.font_thickness,
        cv2.LINE_AA,
    )  # fmt: skip


def _draw_person(
    image: np.ndarray, style: _Style, pose: PoseResult, kp_threshold: float, *, reid_hash: str | None
) -> None:
    h, w = image.shape[:2]
    pts: dict[int, tuple[int, int]] = {}
    for kp in pose.keypoints:
        if kp.confidence > kp_threshold and -w <= kp.x <= 2 * w and -h <= kp.y <= 2 * h:
            pts[_KP_INDEX[kp.name]] = (round(kp.x), round(kp.y))
    for a, b in SKELETON:
        if a in pts and b in pts:
            cv2.line(image, pts[a], pts[b], SKELETON_COLOR, style.thickness, cv2.LINE_AA)
    for p in pts.values():
        cv2.circle(image, p, style.radius, KEYPOINT_COLOR, thickness=-1, lineType=cv2.LINE_AA)

    color = SUSPICIOUS_COLOR if pose.is_suspicious else PERSON_COLOR
    box = _box_px(pose.bbox, image.shape)
    if box is None and pts:  # no detector box (seed-style result): frame the visible keypoints
        xs, ys = zip(*pts.values(), strict=True)
        box = _box_px((min(xs), min(ys), max(xs) + 1, max(ys) + 1), image.shape)
    if box is None:
        return
    x1, y1, x2, y2 = box
    cv2.rectangle(image, (x1, y1), (x2, y2), color, style.thickness)
    text = f"{pose.pose_class.value} {pose.confidence:.2f}" + (" !" if pose.is_suspicious else "")
    _label(image, style, text, (x1, y1), color, above=True)
    if reid_hash:
        _label(image, style, "#" + reid_hash[:REID_LABEL_CHARS], (x1, y2), color, above=False)


def _draw_threats(image: np.ndarray, style: _Style, result: ThreatResult) -> None:
    # Draw low severities first so the most severe boxes end up on top.
    for threat in sorted(result.threats, key=lambda t: t.severity.rank):
        box = _box_px(threat.bbox, image.shape)
        if box is None:
            continue
        color = SEVERITY_COLORS[threat.severity]
        x1, y1, x2, y2 = box
        cv2.rectangle(image, (x1, y1), (x2, y2), color, style.thickness)
        _label(image, style, f"{threat.threat_type} {threat.confidence:.2f}", (x1, y1), color, above=True)
