"""Image decoding and Ultralytics-exact letterboxing, in pure NumPy/OpenCV.

:func:`decode_image` turns encoded bytes (JPEG, PNG, WebP, BMP) into an ``(H, W, 3)`` uint8 RGB
array. Before any pixel is decoded it parses the container header itself, so that a
decompression bomb is refused without allocating, and it checks the container structure, so that
a truncated file is refused instead of being returned half grey (libjpeg pads a truncated scan
with grey and only warns).

Pixel conversion follows ``cv2.imread(path)`` (``IMREAD_COLOR``), which is what Ultralytics does
when it predicts on a file, so our pixels equal theirs:

- grayscale is replicated to three channels;
- alpha is dropped (not composited): a transparent pixel keeps its stored colour. Compositing
  onto a background would invent colours the model never saw in Ultralytics' pipeline;
- 16-bit samples are reduced to 8 bits by keeping the high byte (``v >> 8``), as libpng's
  ``png_set_strip_16`` does inside OpenCV. The alternative ``round(v * 255 / 65535)`` differs by
  at most 1 and would break pixel parity with Ultralytics;
- the JPEG EXIF orientation is applied.

:func:`letterbox` reproduces ``ultralytics.data.augment.LetterBox(new_shape=(s, s), auto=False)``
(square mode) and, with ``auto=True``, ``LetterBox(auto=True, stride=32)`` (rect mode: the minimal
stride-32 rectangle Ultralytics' predictor uses) pixel for pixel; :class:`LetterboxInfo` carries
what is needed to map boxes and keypoints back to the original image (see
:mod:`enrichment_light.core.processing.detection`).
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from enrichment_light.core.contract import (
    DEFAULT_MAX_PIXELS,
    DETECTOR_INPUT_SIZE,
    DETECTOR_STRIDE,
    LETTERBOX_INFO_LEN,
    LETTERBOX_PAD_VALUE,
)
from enrichment_light.core.errors import InvalidImageError, InvalidInputError

__all__ = [
    "SUPPORTED_FORMATS",
    "LetterboxInfo",
    "decode_image",
    "image_format",
    "image_size",
    "letterbox",
]

SUPPORTED_FORMATS = ("JPEG", "PNG", "WebP", "BMP")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Formats we recognise but refuse (OpenCV may decode some of them; the contract does not).
_UNSUPPORTED_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
)


# --------------------------------------------------------------------------------------------
# Format sniffing and header parsing (pure Python, no pixel allocation)
# --------------------------------------------------------------------------------------------


def image_format(data: bytes) -> str:
    """Identify the container format from its magic bytes.

    Args:
        data: Encoded image bytes.

    Returns:
        One of :data:`SUPPORTED_FORMATS`.

    Raises:
        InvalidImageError: The bytes are empty or of an unknown or unsupported format.
    """
    data = _as_bytes(data)
    if not data:
        raise InvalidImageError("empty image: got 0 bytes")
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == _PNG_SIGNATURE:
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM":
        return "BMP"
    for magic, name in _UNSUPPORTED_MAGIC:
        if data.startswith(magic):
            raise InvalidImageError(f"unsupported image format {name}; supported: {', '.join(SUPPORTED_FORMATS)}")
    if len(data) < 12 and any(p.startswith(data[:4]) for p in (b"\xff\xd8\xff", _PNG_SIGNATURE, b"RIFF", b"BM")):
        raise InvalidImageError(f"truncated image: {len(data)} bytes are too few for any image header")
    raise InvalidImageError(
        f"unknown image format (first bytes {data[:8].hex(' ')}); supported: {', '.join(SUPPORTED_FORMATS)}"
    )


def image_size(data: bytes) -> tuple[int, int]:
    """Read ``(height, width)`` from the header and check the container structure.

    No pixel is decoded. The structure checks refuse truncated files: a JPEG without an
    end-of-image marker after its scan, a PNG without ``IEND`` or with a chunk running past the
    end, a WebP shorter than its RIFF size, a BMP shorter than its pixel array.

    Args:
        data: Encoded image bytes.

    Returns:
        ``(height, width)`` as stored in the header (before any EXIF rotation).

    Raises:
        InvalidImageError: Unknown format, truncated or malformed header, zero dimensions.
    """
    data = _as_bytes(data)
    fmt = image_format(data)
    h, w, check = _header(data, fmt)
    check()
    return h, w


def _header(data: bytes, fmt: str) -> tuple[int, int, Callable[[], None]]:
    h, w, check = _PARSERS[fmt](data)
    if h <= 0 or w <= 0:
        raise InvalidImageError(f"invalid {fmt} header: image size {w}x{h} has a zero dimension")
    return h, w, check


def _u16be(data: bytes, off: int) -> int:
    return (data[off] << 8) | data[off + 1]


def _jpeg_size(data: bytes) -> tuple[int, int, Callable[[], None]]:
    n = len(data)
    pos = 2
    size: tuple[int, int] | None = None
    while True:
        # Markers may be preceded by any number of 0xFF fill bytes.
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise InvalidImageError("truncated JPEG: data ends inside the header, before the image data")
        if data[pos - 1] != 0xFF:
            raise InvalidImageError(f"corrupt JPEG: expected a marker at byte {pos - 1}, found 0x{data[pos - 1]:02x}")
        marker = data[pos]
        pos += 1
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # standalone markers
        if marker == 0xD9:
            raise InvalidImageError("corrupt JPEG: end-of-image marker before any image data")
        if pos + 2 > n:
            raise InvalidImageError("truncated JPEG: data ends inside the header, before the image data")
        seg_len = _u16be(data, pos)
        if seg_len < 2:
            raise InvalidImageError(f"corrupt JPEG: segment 0xFF{marker:02X} has invalid length {seg_len}")
        if pos + seg_len > n:
            raise InvalidImageError(f"truncated JPEG: data ends inside segment 0xFF{marker:02X}")
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if seg_len < 8:
                raise InvalidImageError(f"corrupt JPEG: frame header of length {seg_len} is too short")
            size = (_u16be(data, pos + 3), _u16be(data, pos + 5))
        elif marker == 0xDA:  # start of scan: header ends, entropy-coded data follows
            if size is None:
                raise InvalidImageError("corrupt JPEG: image data starts before any frame header (SOF)")
            scan = pos + seg_len
            return size[0], size[1], functools.partial(_check_jpeg_scan, data, scan)
        pos += seg_len


# Bytes that may follow 0xFF between the first scan and EOI: stuffing (00), restart markers,
# the segments allowed between scans (DHT, DAC, DQT, DNL, DRI, APPn, COM), SOS, EOI and fill.
_JPEG_SCAN_MARKERS = np.zeros(256, dtype=bool)
_JPEG_SCAN_MARKERS[[0x00, 0xC4, 0xCC, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE, 0xFF]] = True
_JPEG_SCAN_MARKERS[0xD0:0xD8] = True
_JPEG_SCAN_MARKERS[0xE0:0xF0] = True


def _check_jpeg_scan(data: bytes, start: int) -> None:
    # EOI cannot occur inside entropy-coded data (0xFF is byte-stuffed there), so the last FFD9
    # must lie after the first scan. Trailing bytes after EOI are allowed.
    end = data.rfind(b"\xff\xd9", start)
    if end < 0:
        raise InvalidImageError("truncated JPEG: no end-of-image marker (FFD9) after the image data")
    # libjpeg only *warns* about corrupt entropy-coded data and returns grey-filled pixels.
    # Corruption that leaves no structural trace cannot be detected; a marker that may not occur
    # inside the image data can, at memory speed.
    scan = np.frombuffer(data, dtype=np.uint8, count=end - start + 1, offset=start)
    ff = np.flatnonzero(scan[:-1] == 0xFF)
    if ff.size:
        bad = ff[~_JPEG_SCAN_MARKERS[scan[ff + 1]]]
        if bad.size:
            at = start + int(bad[0])
            raise InvalidImageError(
                f"corrupt JPEG: invalid marker 0xFF{data[at + 1]:02X} inside the image data at byte {at}"
            )


def _png_chunks(data: bytes):
    pos, n = 8, len(data)
    while True:
        if pos + 8 > n:
            raise InvalidImageError("truncated PNG: data ends before the IEND chunk")
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        if length > 0x7FFFFFFF:
            raise InvalidImageError(f"corrupt PNG: chunk length {length} is out of range")
        end = pos + 12 + length
        if end > n:
            raise InvalidImageError(
                f"truncated PNG: chunk {ctype.decode('latin-1')!r} needs {end - pos} bytes, {n - pos} remain"
            )
        yield pos, ctype, length
        if ctype == b"IEND":
            return
        pos = end


def _png_walk(data: bytes) -> None:
    for _ in _png_chunks(data):
        pass


def _png_size(data: bytes) -> tuple[int, int, Callable[[], None]]:
    if len(data) < 33:
        raise InvalidImageError(f"truncated PNG: {len(data)} bytes are too few for the IHDR header")
    if data[12:16] != b"IHDR" or int.from_bytes(data[8:12], "big") != 13:
        raise InvalidImageError("corrupt PNG: the first chunk is not a 13-byte IHDR")
    w, h = struct.unpack(">II", data[16:24])
    return h, w, lambda: _png_walk(data)


def _png_crc_error(data: bytes) -> str | None:
    for pos, ctype, length in _png_chunks(data):
        stored = int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        if zlib.crc32(data[pos + 4 : pos + 8 + length]) != stored:
            return f"corrupt PNG: CRC mismatch in chunk {ctype.decode('latin-1')!r} at byte {pos}"
    return None


def _webp_size(data: bytes) -> tuple[int, int, Callable[[], None]]:
    n = len(data)
    riff_size = int.from_bytes(data[4:8], "little")
    if riff_size < 4 + 8:
        raise InvalidImageError(f"corrupt WebP: RIFF size {riff_size} is too small")
    if n < 30:
        raise InvalidImageError(f"truncated WebP: {n} bytes are too few for the frame header")
    fourcc = data[12:16]
    chunk_end = 20 + int.from_bytes(data[16:20], "little")

    def check() -> None:
        if n < riff_size + 8:
            raise InvalidImageError(f"truncated WebP: RIFF header says {riff_size + 8} bytes, got {n}")
        if chunk_end > riff_size + 8:
            raise InvalidImageError(f"corrupt WebP: chunk {fourcc!r} ends at byte {chunk_end}, past the RIFF end")

    if fourcc == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise InvalidImageError("corrupt WebP: missing VP8 start code")
        w = int.from_bytes(data[26:28], "little") & 0x3FFF
        h = int.from_bytes(data[28:30], "little") & 0x3FFF
        return h, w, check
    if fourcc == b"VP8L":
        if data[20] != 0x2F:
            raise InvalidImageError("corrupt WebP: missing VP8L signature")
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1, check
    if fourcc == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return h, w, check
    raise InvalidImageError(f"corrupt WebP: unknown first chunk {fourcc!r}")


def _bmp_size(data: bytes) -> tuple[int, int, Callable[[], None]]:
    n = len(data)
    if n < 26:
        raise InvalidImageError(f"truncated BMP: {n} bytes are too few for the header")
    file_size, _, offset, dib = struct.unpack("<IIII", data[2:18])
    if dib == 12:  # BITMAPCOREHEADER
        w, h, _, bpp = struct.unpack("<HHHH", data[18:26])
        compression = 0
    elif dib >= 40:
        if n < 54:
            raise InvalidImageError(f"truncated BMP: {n} bytes are too few for the header")
        w, h, _, bpp, compression = struct.unpack("<iiHHI", data[18:34])
    else:
        raise InvalidImageError(f"corrupt BMP: unknown DIB header size {dib}")
    h = abs(h)  # negative height = top-down rows
    if compression in (4, 5):
        raise InvalidImageError("unsupported BMP: embedded JPEG/PNG compression")
    if bpp not in (1, 2, 4, 8, 16, 24, 32):
        raise InvalidImageError(f"corrupt BMP: invalid bit depth {bpp}")

    def check() -> None:
        if compression in (0, 3, 6):  # uncompressed: the size is known exactly
            needed = offset + ((w * bpp + 31) // 32) * 4 * h
            if n < needed:
                raise InvalidImageError(f"truncated BMP: pixel data needs {needed} bytes, got {n}")
        elif file_size and n < file_size:  # RLE: trust the file header's size
            raise InvalidImageError(f"truncated BMP: header says {file_size} bytes, got {n}")

    return h, w, check


_PARSERS = {"JPEG": _jpeg_size, "PNG": _png_size, "WebP": _webp_size, "BMP": _bmp_size}


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
        return data.tobytes()
    if isinstance(data, np.ndarray) and data.dtype == np.object_ and data.size == 1:
        return _as_bytes(data.reshape(-1)[0])  # one element of a Triton BYTES tensor
    hint = " (pass the file's contents, not its path)" if isinstance(data, str) else ""
    raise InvalidImageError(
        f"image must be encoded bytes (bytes, bytearray, memoryview or 1-D uint8 array), "
        f"got {type(data).__name__}{hint}"
    )


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image into RGB pixels, refusing anything unsafe or broken.

    The header is parsed and checked against ``max_pixels`` before any pixel is decoded. See the
    module docstring for the grayscale, alpha and 16-bit conversions (identical to
    ``cv2.imread``, hence to Ultralytics).

    Args:
        data: JPEG, PNG, WebP or BMP bytes (``bytearray``, ``memoryview``, a 1-D uint8 array and
            a one-element Triton BYTES array are accepted too).
        max_pixels: Largest accepted ``height * width``.

    Returns:
        ``(H, W, 3)`` C-contiguous uint8 RGB array.

    Raises:
        InvalidImageError: Non-bytes input, empty data, unknown or unsupported format,
            truncated or corrupt data, or an image larger than ``max_pixels``. The message
            names the problem.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
        raise InvalidInputError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    data = _as_bytes(data)
    fmt = image_format(data)
    h, w, check = _header(data, fmt)
    if h * w > max_pixels:
        raise InvalidImageError(
            f"image too large: {fmt} header says {w}x{h} = {w * h} pixels, the limit is {max_pixels}"
        )
    check()
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    if image is None:
        detail = _png_crc_error(data) if fmt == "PNG" else None
        raise InvalidImageError(detail or f"corrupt {fmt}: the decoder could not read the image data")
    if image.shape[:2] not in ((h, w), (w, h)):  # (w, h) after an EXIF rotation
        raise InvalidImageError(
            f"corrupt {fmt}: decoded size {image.shape[1]}x{image.shape[0]} differs from the header's {w}x{h}"
        )
    return image


# --------------------------------------------------------------------------------------------
# Letterbox
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was letterboxed; enough to map letterbox pixels back to the original.

    The wire form (``LETTERBOX_INFO`` tensor, float32) is ``[orig_h, orig_w, gain, pad_left,
    pad_top]``. The square target size and the per-axis gains are derived from it exactly as
    Ultralytics' ``scale_boxes`` does (each resized side is ``max(round(side * gain), 1)``).

    Attributes:
        orig_h: Original image height in pixels.
        orig_w: Original image width in pixels.
        gain: Resize factor, ``size / max(orig_h, orig_w)``.
        pad_left: Columns of padding on the left.
        pad_top: Rows of padding on the top.
    """

    orig_h: int
    orig_w: int
    gain: float
    pad_left: int
    pad_top: int

    def __post_init__(self) -> None:
        for name in ("orig_h", "orig_w"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise ValueError(f"LetterboxInfo.{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("pad_left", "pad_top"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"LetterboxInfo.{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        gain = float(self.gain)
        if not np.isfinite(gain) or gain <= 0:
            raise ValueError(f"LetterboxInfo.gain must be finite and positive, got {self.gain!r}")
        object.__setattr__(self, "gain", gain)

    @classmethod
    def for_shape(
        cls, orig_h: int, orig_w: int, size: int = DETECTOR_INPUT_SIZE, *, auto: bool = False,
        stride: int = DETECTOR_STRIDE,
    ) -> LetterboxInfo:  # fmt: skip
        """Compute the letterbox of an ``orig_h x orig_w`` image into ``size x size``.

        With `auto` (Ultralytics' ``auto=True``, the rect mode) each side is padded only up to the
        next multiple of `stride` instead of up to `size`.
        """
        gain = min(size / orig_h, size / orig_w)
        new_w, new_h = max(round(orig_w * gain), 1), max(round(orig_h * gain), 1)
        dw, dh = size - new_w, size - new_h
        if auto:
            dw, dh = dw % stride, dh % stride
        # Ultralytics: top = round(dh / 2 - 0.1), left = round(dw / 2 - 0.1) (Python round).
        return cls(orig_h, orig_w, gain, round(dw / 2 - 0.1), round(dh / 2 - 0.1))

    @property
    def orig_height(self) -> int:
        """Alias of :attr:`orig_h` (the name used in the interface notes)."""
        return self.orig_h

    @property
    def orig_width(self) -> int:
        """Alias of :attr:`orig_w`."""
        return self.orig_w

    @property
    def size(self) -> int:
        """The square letterbox side (``gain * max(orig_h, orig_w)``, exact after rounding)."""
        return round(self.gain * max(self.orig_h, self.orig_w))

    @property
    def new_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the resized image inside the letterbox."""
        gain = min(self.size / self.orig_h, self.size / self.orig_w)  # exact, as Ultralytics
        return max(round(self.orig_h * gain), 1), max(round(self.orig_w * gain), 1)

    def output_shape(self, *, auto: bool = False, stride: int = DETECTOR_STRIDE) -> tuple[int, int]:
        """``(height, width)`` of the letterboxed image: ``size x size``, or with `auto` the stride-padded rect."""
        if not auto:
            return self.size, self.size
        new_h, new_w = self.new_shape
        return new_h + (self.size - new_h) % stride, new_w + (self.size - new_w) % stride

    @property
    def gain_xy(self) -> tuple[float, float]:
        """Per-axis gains ``(new_w / orig_w, new_h / orig_h)`` used to map coordinates back."""
        new_h, new_w = self.new_shape
        return new_w / self.orig_w, new_h / self.orig_h

    def to_array(self) -> np.ndarray:
        """The float32 ``LETTERBOX_INFO`` wire form ``[orig_h, orig_w, gain, pad_left, pad_top]``."""
        return np.array([self.orig_h, self.orig_w, self.gain, self.pad_left, self.pad_top], dtype=np.float32)

    @classmethod
    def from_array(cls, array: np.ndarray, *, size: int | None = None) -> LetterboxInfo:
        """Inverse of :meth:`to_array`.

        Args:
            array: The 5 wire values.
            size: The expected letterbox side; ``None`` accepts whatever the values imply.

        Raises:
            InvalidInputError: The array does not hold 5 valid values, or implies another size.
        """
        values = np.asarray(array, dtype=np.float64).reshape(-1)
        if values.shape != (LETTERBOX_INFO_LEN,) or not np.isfinite(values).all():
            raise InvalidInputError(
                f"LETTERBOX_INFO must hold {LETTERBOX_INFO_LEN} finite values "
                f"[orig_h, orig_w, gain, pad_left, pad_top], got {np.asarray(array).tolist()!r}"
            )
        orig_h, orig_w, gain, pad_left, pad_top = values.tolist()
        try:
            info = cls(round(orig_h), round(orig_w), gain, round(pad_left), round(pad_top))
        except ValueError as err:
            raise InvalidInputError(f"invalid LETTERBOX_INFO {values.tolist()}: {err}") from err
        if size is not None and info.size != size:
            raise InvalidInputError(f"LETTERBOX_INFO {values.tolist()} is for a {info.size} letterbox, not {size}")
        return info


def _check_image(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"image must not be empty, got shape {image.shape}")
    return image


def letterbox(
    image_rgb: np.ndarray, size: int = DETECTOR_INPUT_SIZE, *, auto: bool = False, stride: int = DETECTOR_STRIDE
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping the aspect ratio and pad, exactly as Ultralytics.

    Pixels equal ``LetterBox(new_shape=(size, size), auto=auto, stride=stride)(image=image_rgb)``:
    bilinear (``INTER_LINEAR``) resize to ``max(round(side * gain), 1)``, centred padding of value
    114 with ``top = round(dh / 2 - 0.1)`` and ``left = round(dw / 2 - 0.1)``, where ``dw, dh`` is
    the padding up to ``size`` (square mode) or, with `auto` (rect mode), only up to the next
    multiple of `stride` (``dw % stride``). Channels are treated independently, so RGB in gives RGB
    out.

    Args:
        image_rgb: ``(H, W, 3)`` uint8 image.
        size: Side of the square output; with `auto`, the longer side of the output.
        auto: Rect mode: the minimal stride-multiple rectangle (bus.jpg 1080x810 -> 640x480).
        stride: The multiple each padded side is rounded up to in rect mode.

    Returns:
        The letterboxed uint8 image and its :class:`LetterboxInfo`.

    Raises:
        InvalidInputError: Not a non-empty ``(H, W, 3)`` uint8 array, or a bad ``size``/``stride``.
    """
    image = _check_image(image_rgb)
    for name, value in (("size", size), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    h, w = image.shape[:2]
    info = LetterboxInfo.for_shape(h, w, int(size), auto=auto, stride=int(stride))
    new_h, new_w = info.new_shape
    out_h, out_w = info.output_shape(auto=auto, stride=int(stride))
    if (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    top, left = info.pad_top, info.pad_left
    # Fill only the borders, then copy the resized image in (cheaper than copyMakeBorder + copy).
    out[:top] = LETTERBOX_PAD_VALUE
    out[top + new_h :] = LETTERBOX_PAD_VALUE
    out[top : top + new_h, :left] = LETTERBOX_PAD_VALUE
    out[top : top + new_h, left + new_w :] = LETTERBOX_PAD_VALUE
    out[top : top + new_h, left : left + new_w] = image
    return out, info
