"""A corpus of hostile, broken and odd-but-valid encoded images (no test functions here).

Every case is built in memory, deterministically, in well under a second. Each :class:`ImageCase`
says whether the bytes are an error (with message fragments every error must contain, matched
case-insensitively) or a valid image that must succeed.

Decisions about edge cases (what is an error and what is valid):

- zero bytes, truncated or corrupt containers, unknown or unsupported formats, headers that
  claim more than ``max_pixels`` and zero-sized dimensions are errors;
- a 1x1 image, greyscale, 16-bit, RGBA and extreme aspect ratios are valid images: they are
  decoded (grey replicated, 16-bit reduced to the high byte, alpha dropped) and must succeed,
  with results that lie inside the image (for a 1x1 frame, nothing can be found).

Used in process by ``tests/unit/test_fuzz.py`` (against ``decode_image``) and over both
protocols by ``tests/integration/test_hostile_inputs.py`` (against the served models).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["ImageCase", "image_cases", "invalid_cases", "valid_cases"]


@dataclass(frozen=True)
class ImageCase:
    """One encoded input and the expected outcome."""

    name: str
    data: bytes
    error: tuple[str, ...] | None  # fragments of the error message; None: a valid image
    shape: tuple[int, int] | None = None  # (H, W) a valid image decodes to

    @property
    def valid(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:  # short ids in pytest output
        return f"ImageCase({self.name}, {len(self.data)} bytes)"


# ------------------------------------------------------------------------------------------------ builders


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (3, 3), 0)


def _cv2(array: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    img = array[..., ::-1] if array.ndim == 3 and array.shape[2] == 3 else array
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), list(params))
    assert ok, ext
    return buf.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(w: int, h: int, ihdr_tail: bytes, idat: bytes) -> bytes:
    ihdr = struct.pack(">II", w, h) + ihdr_tail
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_header_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    """A well-formed PNG whose IHDR claims ``w x h`` RGB (the IDAT would inflate to ~30 GB)."""
    return _png(w, h, bytes([8, 2, 0, 0, 0]), zlib.compress(b"\x00" * 1024))


def png_real_bomb(side: int = 6400) -> bytes:
    """A *real*, fully decodable ``side x side`` grey PNG of zeros: ~40 KB that inflates to ~41 MB.

    6400 x 6400 = 40.96 M pixels, just over the default ``max_pixels`` (40 M). Rows are
    streamed into the compressor, so building it allocates one row at a time.
    """
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + samples
    parts = [comp.compress(row) for _ in range(side)]
    idat = b"".join(parts) + comp.flush()
    return _png(side, side, bytes([8, 0, 0, 0, 0]), idat)


def jpeg_header_bomb(w: int = 65_000, h: int = 65_000) -> bytes:
    """A JPEG whose SOF0 frame header claims ``w x h`` (the format's maximum is 65535)."""
    real = _cv2(_rgb(8, 8), ".jpg")
    i = real.index(b"\xff\xc0")
    return real[: i + 5] + struct.pack(">HH", h, w) + real[i + 9 :]


def webp_header_bomb(w: int = 16_384, h: int = 16_384) -> bytes:
    """A lossless WebP (VP8L) whose header claims ``w x h`` (268 M pixels) over a tiny bitstream."""
    real = _cv2(_rgb(4, 4), ".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))  # quality > 100: lossless
    assert real[12:16] == b"VP8L", real[12:16]
    bits = (w - 1) | ((h - 1) << 14) | (int.from_bytes(real[21:25], "little") & ~((1 << 28) - 1))
    return real[:21] + bits.to_bytes(4, "little") + real[25:]


def webp_vp8x_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    """An extended WebP (VP8X) whose canvas claims ``w x h``."""
    payload = bytes(4) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(payload)) + payload
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _png_16bit(h: int, w: int, channels: int) -> bytes:
    rng = np.random.default_rng(1)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return _cv2(rng.integers(0, 65536, shape, dtype=np.uint16), ".png")


def _pil(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, fmt)
    return out.getvalue()


def _flip(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


# ------------------------------------------------------------------------------------------------ corpus


def invalid_cases() -> list[ImageCase]:
    """Encoded inputs that must be refused, each with the fragments its error message must contain."""
    jpeg = _cv2(_rgb(64, 96), ".jpg")
    png = _cv2(_rgb(64, 96), ".png")
    webp = _cv2(_rgb(64, 96), ".webp")
    sof = jpeg.index(b"\xff\xc0")
    idat = png.index(b"IDAT")
    cases = [
        ImageCase("zero_bytes", b"", ("empty",)),
        ImageCase("one_byte", b"\xff", ("truncated",)),
        ImageCase("png_header_bomb", png_header_bomb(), ("too large", "100000x100000")),
        ImageCase("png_real_bomb_over_max_pixels", png_real_bomb(), ("too large", "6400x6400")),
        ImageCase("jpeg_header_bomb", jpeg_header_bomb(), ("too large", "65000x65000")),
        ImageCase("webp_vp8l_header_bomb", webp_header_bomb(), ("too large", "16384x16384")),
        ImageCase("webp_vp8x_header_bomb", webp_vp8x_bomb(), ("too large",)),
        ImageCase("jpeg_truncated_half", jpeg[: len(jpeg) // 2], ("truncated jpeg",)),
        ImageCase("jpeg_truncated_in_header", jpeg[: sof + 4], ("truncated jpeg",)),
        ImageCase("jpeg_no_eoi", jpeg[:-2], ("jpeg",)),
        ImageCase("jpeg_corrupt_marker", _flip(jpeg, sof, 0x00), ("corrupt jpeg",)),
        ImageCase("jpeg_zero_width", jpeg[: sof + 7] + b"\x00\x00" + jpeg[sof + 9 :], ("zero dimension",)),
        ImageCase("png_truncated_half", png[: len(png) // 2], ("truncated png",)),
        ImageCase("png_truncated_header", png[:20], ("png",)),
        ImageCase("png_corrupt_idat_crc", _flip(png, idat + 10, png[idat + 10] ^ 0xFF), ("png",)),
        ImageCase("png_bad_ihdr", png[:12] + b"IHDX" + png[16:], ("corrupt png",)),
        ImageCase("webp_truncated_half", webp[: len(webp) // 2], ("truncated webp",)),
        ImageCase("webp_bad_vp8_start_code", webp[:23] + b"\x00\x00\x00" + webp[26:], ("webp",)),
        ImageCase("webp_riff_only", b"RIFF\x04\x00\x00\x00WEBP", ("webp",)),
        ImageCase("gif_unsupported", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", ("unsupported", "gif")),
        ImageCase("tiff_unsupported", b"II*\x00\x08\x00\x00\x00" + bytes(16), ("unsupported", "tiff")),
        ImageCase("random_garbage", np.random.default_rng(7).bytes(4096), ("format",)),
        ImageCase("plain_text", b"this is not an image at all", ("format",)),
        ImageCase("unicode_text", "héllo wörld 😀 画像".encode(), ("format",)),
        ImageCase("html_error_page", b"<!DOCTYPE html><html><body>404</body></html>", ("format",)),
    ]
    return cases


def valid_cases() -> list[ImageCase]:
    """Odd but valid images: each must decode (and be served) successfully."""
    tiny = _rgb(1, 1)
    grey = _rgb(48, 64)[..., 0].copy()
    rgba = np.dstack([_rgb(40, 30), np.full((40, 30), 128, np.uint8)])
    return [
        ImageCase("png_1x1", _cv2(tiny, ".png"), None, (1, 1)),
        ImageCase("jpeg_1x1", _cv2(tiny, ".jpg"), None, (1, 1)),
        ImageCase("webp_1x1", _cv2(tiny, ".webp"), None, (1, 1)),
        ImageCase("bmp_1x1", _cv2(tiny, ".bmp"), None, (1, 1)),
        ImageCase("png_grey_8bit", _cv2(grey, ".png"), None, (48, 64)),
        ImageCase("jpeg_grey_8bit", _cv2(grey, ".jpg"), None, (48, 64)),
        ImageCase("png_rgb_16bit", _png_16bit(24, 32, 3), None, (24, 32)),
        ImageCase("png_grey_16bit", _png_16bit(24, 32, 1), None, (24, 32)),
        ImageCase("png_rgba", _pil(rgba, "PNG", "RGBA"), None, (40, 30)),
        ImageCase("png_palette", _pil(_rgb(20, 20)[..., 0], "PNG", "P"), None, (20, 20)),
        ImageCase("png_1x4000_strip", _cv2(_rgb(1, 4000), ".png"), None, (1, 4000)),
        ImageCase("png_under_max_pixels", png_real_bomb(640), None, (640, 640)),
    ]


def image_cases() -> list[ImageCase]:
    """Every case, invalid first."""
    return invalid_cases() + valid_cases()
