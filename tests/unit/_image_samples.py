"""Encoded sample images and hand-built headers for the image tests (no test functions here)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def assets_dir() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets"


def photo_bytes(name: str = "bus.jpg") -> bytes:
    return (assets_dir() / name).read_bytes()


def smooth_rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rs = np.random.RandomState(seed)
    return cv2.GaussianBlur(rs.randint(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)


def cv2_encode(rgb: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), list(params))
    assert ok
    return buf.tobytes()


def pil_encode(array: np.ndarray, mode: str, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, fmt, **kwargs)
    return out.getvalue()


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def png_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    """A valid PNG structure whose IHDR claims w x h (the IDAT would inflate to ~30 GB)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_bomb(w: int = 65_000, h: int = 65_000) -> bytes:
    """A JPEG whose SOF0 claims w x h (the format's maximum is 65535)."""
    real = cv2_encode(smooth_rgb(8, 8), ".jpg")
    i = real.index(b"\xff\xc0")
    return real[: i + 5] + struct.pack(">HH", h, w) + real[i + 9 :]


def webp_vp8x_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    payload = b"\x00\x00\x00\x00" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(payload)) + payload
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_vp8l_bomb() -> bytes:
    """A lossless WebP whose header claims 16384 x 16384 (the VP8L maximum)."""
    real = bytearray(pil_encode(smooth_rgb(8, 8), "RGB", "WEBP", lossless=True))
    assert real[12:16] == b"VP8L"
    bits = int.from_bytes(real[21:25], "little")
    bits = (bits & ~((1 << 28) - 1)) | 0x3FFF | (0x3FFF << 14)
    real[21:25] = bits.to_bytes(4, "little")
    return bytes(real)


def bmp_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 0, 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + dib + b"\x00" * 64


def flip_bytes(data: bytes, at: int, n: int = 16) -> bytes:
    out = bytearray(data)
    out[at : at + n] = bytes(255 - b for b in out[at : at + n])
    return bytes(out)
