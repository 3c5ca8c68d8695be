"""Person re-id math and crops: OSNet input crops, cosine similarity, seed-compatible hashes.

Crops are resized to 256x128 (H x W) by torchreid's own test transform,
``PIL.Image.resize((128, 256), Image.BILINEAR)``: Pillow itself, so the crops are the reference's
pixels. When shrinking, PIL widens its triangle filter by the scale factor, so it antialiases;
``cv2.INTER_LINEAR`` does not and ``cv2.INTER_AREA`` is a box filter (measured on crops of
``bus.jpg`` and ``zidane.jpg`` from 20x10 to 1000x500: mean absolute errors against PIL of 1.7 and
1.9 grey levels, worst pixels off by 125 and 112).

An earlier version reproduced PIL's filter with two NumPy matrix products per crop (within one
grey level). Pillow is 2.6x faster (32 person crops: 9.5 vs 25 ms on 2 cores) and single-threaded:
the matrix products ran on OpenBLAS threads, which keep spinning for a while after each call and
slowed the onnxruntime run that followed on the same 2 cores (32 crops resized then embedded with
2 intra-op threads: 118 ms against 85 ms with ``OPENBLAS_NUM_THREADS=1``; docs/cpu-performance.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from enrichment_light.core.contract import REID_INPUT_HEIGHT, REID_INPUT_WIDTH
from enrichment_light.core.errors import InvalidInputError

DEFAULT_SIMILARITY_THRESHOLD = 0.7
_EPS = 1e-12


# --- similarity --------------------------------------------------------------------------------------


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Scale each row (or a single vector) to unit length; zero vectors stay zero.

    Args:
        embeddings: ``(D,)`` or ``(N, D)``.

    Returns:
        float32 array of the same shape.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(norm > _EPS, x / np.maximum(norm, _EPS), 0.0).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings, in [-1, 1]; 0.0 when either is a zero vector.

    Args:
        a: ``(D,)`` embedding.
        b: ``(D,)`` embedding.

    Returns:
        The similarity.

    Raises:
        InvalidInputError: The vectors are not 1-D of the same length, or not finite.
    """
    va = np.asarray(a, dtype=np.float64).reshape(-1)
    vb = np.asarray(b, dtype=np.float64).reshape(-1)
    if va.shape != vb.shape or va.size == 0:
        raise InvalidInputError(f"embeddings must be non-empty and the same length, got {va.size} and {vb.size}")
    if not (np.isfinite(va).all() and np.isfinite(vb).all()):
        raise InvalidInputError("embeddings must be finite")
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    if na <= _EPS or nb <= _EPS:
        return 0.0
    return float(np.clip(np.dot(va, vb) / (na * nb), -1.0, 1.0))


def cosine_similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities; rows that are zero vectors give 0.

    Args:
        a: ``(N, D)`` embeddings.
        b: ``(M, D)`` embeddings.

    Returns:
        float32 ``(N, M)`` in [-1, 1].

    Raises:
        InvalidInputError: The arrays are not 2-D with the same ``D``, or not finite.
    """
    xa = np.asarray(a, dtype=np.float32)
    xb = np.asarray(b, dtype=np.float32)
    if xa.ndim != 2 or xb.ndim != 2 or xa.shape[1] != xb.shape[1]:
        raise InvalidInputError(f"embeddings must be (N, D) and (M, D), got {xa.shape} and {xb.shape}")
    if not (np.isfinite(xa).all() and np.isfinite(xb).all()):
        raise InvalidInputError("embeddings must be finite")
    return np.clip(l2_normalize(xa) @ l2_normalize(xb).T, -1.0, 1.0).astype(np.float32)


def is_same_person(a: np.ndarray, b: np.ndarray, *, threshold: float = DEFAULT_SIMILARITY_THRESHOLD) -> bool:
    """Whether two embeddings show the same person: cosine similarity strictly above ``threshold``."""
    return bool(cosine_similarity(a, b) > threshold)


def embedding_hash(embedding: np.ndarray) -> str:
    """First 16 hex characters of the sha256 of the float32 bytes (the seed's definition)."""
    return hashlib.sha256(np.asarray(embedding).astype(np.float32).tobytes()).hexdigest()[:16]


# --- crops -----------------------------------------------------------------------------------------


def crop_bounds(boxes: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Integer pixel bounds of person boxes, clamped to the image.

    The bounds cover the box: ``floor`` of ``x1, y1`` and ``ceil`` of ``x2, y2``.

    Args:
        boxes: ``(K, 4)`` float ``x1, y1, x2, y2`` in image pixels.
        image_shape: ``(H, W, ...)`` of the image.

    Returns:
        int64 ``(K, 4)`` bounds, each with a positive width and height.

    Raises:
        InvalidInputError: Wrong shape, or a box that is non-finite, inverted, or empty after
            clamping (for example, entirely outside the image). The message names the box index
            and its values. A bad box never silently becomes the whole frame.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise InvalidInputError(f"person boxes must have shape (K, 4), got {b.shape}")
    h, w = int(image_shape[0]), int(image_shape[1])

    def fail(mask: np.ndarray, problem: str) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            raise InvalidInputError(f"person box {i} {b[i].tolist()} is {problem}")

    fail(~np.isfinite(b).all(axis=1), "not finite")
    fail((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]), "inverted (need x1 <= x2 and y1 <= y2)")
    x1 = np.floor(np.clip(b[:, 0], 0, w))
    y1 = np.floor(np.clip(b[:, 1], 0, h))
    x2 = np.ceil(np.clip(b[:, 2], 0, w))
    y2 = np.ceil(np.clip(b[:, 3], 0, h))
    fail((x2 <= x1) | (y2 <= y1), f"empty after clamping to the {w}x{h} image")
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInputError(f"{what} must be a uint8 (H, W, 3) RGB array, got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"{what} is empty: shape {arr.shape}")
    return arr


def resize_crop(crop: np.ndarray) -> np.ndarray:
    """Resize one RGB crop to 256x128 exactly as torchreid's test transform does (PIL bilinear).

    Args:
        crop: uint8 ``(h, w, 3)``.

    Returns:
        uint8 ``(256, 128, 3)``.

    Raises:
        InvalidInputError: Not a non-empty uint8 RGB array.
    """
    arr = _check_rgb(crop, "crop")
    if arr.shape[:2] == (REID_INPUT_HEIGHT, REID_INPUT_WIDTH):
        return np.ascontiguousarray(arr)
    return _pil_resize(arr)


def _pil_resize(arr: np.ndarray) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(arr))
    return np.asarray(image.resize((REID_INPUT_WIDTH, REID_INPUT_HEIGHT), Image.Resampling.BILINEAR))


def check_crops(crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Check that every crop is a non-empty uint8 ``(h, w, 3)`` array, without resizing.

    Returns:
        The crops as arrays.

    Raises:
        InvalidInputError: Naming the first bad crop's index.
    """
    checked = []
    for i, crop in enumerate(crops):
        try:
            checked.append(_check_rgb(crop, "crop"))
        except InvalidInputError as err:
            raise InvalidInputError(f"crop {i}: {err}") from err
    return checked


def resize_crops(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Resize several RGB crops of any sizes to one uint8 ``(K, 256, 128, 3)`` batch.

    Raises:
        InvalidInputError: Naming the first bad crop's index (see :func:`check_crops`).
    """
    out = np.empty((len(crops), REID_INPUT_HEIGHT, REID_INPUT_WIDTH, 3), dtype=np.uint8)
    for i, crop in enumerate(check_crops(crops)):
        out[i] = resize_crop(crop)
    return out


def extract_person_crops(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Cut person boxes out of an RGB image and resize them to OSNet's 256x128 input.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        boxes: ``(K, 4)`` ``x1, y1, x2, y2`` in image pixels; see :func:`crop_bounds`.

    Returns:
        uint8 ``(K, 256, 128, 3)``.

    Raises:
        InvalidInputError: A bad image or box (see :func:`crop_bounds`).
    """
    img = _check_rgb(image, "image")
    bounds = crop_bounds(boxes, img.shape)
    return resize_crops([img[y1:y2, x1:x2] for x1, y1, x2, y2 in bounds.tolist()])


crop_persons = extract_person_crops  # shorter alias used by the client core


def detected_person_crops(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crops of the detector's person boxes that cover at least one pixel of the image.

    The ``enrich`` model and the client's shared-memory ``enrich`` both call this, so a detected
    box that is empty after clamping gets no crop in either (its embedding stays all zeros)
    instead of failing the frame as :func:`crop_bounds` would for a user's box.

    Args:
        image: uint8 ``(H, W, 3)`` RGB, the original frame.
        boxes: ``(K, 4)`` float ``x1, y1, x2, y2`` in image pixels (the detector's output).

    Returns:
        uint8 ``(k, 256, 128, 3)`` crops and the int64 indices (into `boxes`) of the ``k`` boxes they belong to.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = image.shape[:2]
    x1, x2 = np.floor(np.clip(b[:, 0], 0, w)), np.ceil(np.clip(b[:, 2], 0, w))
    y1, y2 = np.floor(np.clip(b[:, 1], 0, h)), np.ceil(np.clip(b[:, 3], 0, h))
    valid = np.flatnonzero((x2 > x1) & (y2 > y1))
    if not valid.size:
        return np.zeros((0, REID_INPUT_HEIGHT, REID_INPUT_WIDTH, 3), np.uint8), valid
    return extract_person_crops(image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[valid]), valid
