"""Turn the image types the client accepts into what goes on the wire.

Accepted images:

- ``bytes`` / ``bytearray`` / ``memoryview``: an encoded image (JPEG, PNG, WebP, BMP), sent as is;
- ``str`` / ``os.PathLike``: a file whose bytes are read and sent as is (never decoded here);
- ``numpy.ndarray``: ``uint8`` ``HxWx3`` RGB (``bgr=True`` for OpenCV's BGR), ``HxW`` grey or
  ``HxWx4`` RGBA (alpha dropped);
- anything with a ``.convert`` method, such as a PIL Image (converted with ``.convert("RGB")``;
  PIL is never imported here).

Arrays are encoded as **PNG** (lossless, fast compression level 1) by default, so the server sees
exactly the pixels the caller passed and results match a local run on the same array. Pass
``array_format="jpeg"`` (quality 95) to send about 5-10x fewer bytes to a remote server. The
4 MB default gRPC message limit does not apply: tritonclient raises its send and receive limits
to 2 GiB, and Triton accepts the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from enrichment_light.core.errors import InvalidImageError, InvalidInputError

ImageInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", np.ndarray, Any]

ARRAY_FORMATS = ("png", "jpeg")
JPEG_QUALITY = 95
PNG_COMPRESSION = 1


def _is_pil_like(image: object) -> bool:
    return hasattr(image, "convert") and hasattr(image, "size") and not isinstance(image, (bytes, str, np.ndarray))


def as_rgb_array(image: ImageInput, *, bgr: bool = False) -> np.ndarray:
    """Return `image` as a C-contiguous ``uint8`` ``HxWx3`` RGB array, decoding bytes and files.

    Args:
        image: Any accepted image (see the module docstring).
        bgr: Whether a 3- or 4-channel array is in BGR(A) order.

    Returns:
        The RGB array (a view of the input when nothing needs converting).

    Raises:
        InvalidImageError: The bytes cannot be decoded (same checks as the server's decoder).
        InvalidInputError: The array has the wrong dtype or shape, or the file cannot be read.
    """
    if isinstance(image, np.ndarray):
        return _normalise_array(image, bgr=bgr)
    if _is_pil_like(image):
        return _normalise_array(np.asarray(image.convert("RGB")), bgr=False)
    from enrichment_light.core.processing.image import decode_image

    return decode_image(as_image_bytes(image, bgr=bgr))


def _normalise_array(array: np.ndarray, *, bgr: bool) -> np.ndarray:
    if array.dtype != np.uint8:
        raise InvalidInputError(f"image array must have dtype uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, :3]
        if bgr:
            array = array[:, :, ::-1]
    else:
        raise InvalidInputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"image array must not be empty, got shape {array.shape}")
    return np.ascontiguousarray(array)


def encode_array(rgb: np.ndarray, *, array_format: str = "png") -> bytes:
    """Encode an RGB ``uint8`` array as PNG (lossless) or JPEG (quality 95).

    Args:
        rgb: ``HxWx3`` RGB array.
        array_format: ``"png"`` or ``"jpeg"``.

    Returns:
        The encoded bytes.

    Raises:
        InvalidInputError: Unknown format, or OpenCV failed to encode.
    """
    if array_format == "png":
        ext, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    elif array_format == "jpeg":
        ext, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    else:
        raise InvalidInputError(f"array_format must be one of {ARRAY_FORMATS}, got {array_format!r}")
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise InvalidInputError(f"OpenCV could not encode a {rgb.shape} array as {array_format}")
    return buf.tobytes()


def as_image_bytes(image: ImageInput, *, bgr: bool = False, array_format: str = "png") -> bytes:
    """Return the encoded bytes to send for `image`.

    Args:
        image: Any accepted image (see the module docstring).
        bgr: Whether an array is in BGR order.
        array_format: How arrays and PIL images are encoded: ``"png"`` or ``"jpeg"``.

    Returns:
        Encoded image bytes.

    Raises:
        InvalidInputError: Empty bytes, unreadable file, bad array, or unsupported type.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise InvalidImageError("image bytes are empty")
        return data
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise InvalidInputError(f"cannot read image file {str(path)!r}: {err}") from err
        if not data:
            raise InvalidImageError(f"image file {str(path)!r} is empty")
        return data
    if isinstance(image, np.ndarray) or _is_pil_like(image):
        return encode_array(as_rgb_array(image, bgr=bgr), array_format=array_format)
    raise InvalidInputError(
        f"unsupported image type {type(image).__name__}: pass encoded bytes, a path, a uint8 numpy array or a PIL Image"
    )


def as_boxes(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Validate person boxes and return them as a float32 ``[K, 4]`` ``x1, y1, x2, y2`` array.

    Raises:
        InvalidInputError: Wrong shape, non-finite values or ``x2 < x1`` / ``y2 < y1``.
    """
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidInputError(f"boxes must have shape [K, 4] (x1, y1, x2, y2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError("boxes must be finite")
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise InvalidInputError("boxes must satisfy x1 <= x2 and y1 <= y2")
    return np.ascontiguousarray(arr)
