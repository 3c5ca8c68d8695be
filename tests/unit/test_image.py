"""decode_image and letterbox: refusal table, pixel parity with cv2/Ultralytics, LetterboxInfo."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from _image_samples import (
    bmp_bomb,
    cv2_encode,
    flip_bytes,
    jpeg_bomb,
    photo_bytes,
    pil_encode,
    png_bomb,
    smooth_rgb,
    webp_vp8l_bomb,
    webp_vp8x_bomb,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from enrichment_light.core.contract import DEFAULT_MAX_PIXELS, LETTERBOX_INFO_LEN
from enrichment_light.core.errors import InvalidImageError, InvalidInputError
from enrichment_light.core.processing.image import LetterboxInfo, decode_image, image_size, letterbox

RGB = smooth_rgb(48, 64)
JPEG = cv2_encode(RGB, ".jpg")
PNG = cv2_encode(RGB, ".png")
WEBP_LOSSY = pil_encode(RGB, "RGB", "WEBP", quality=80)
WEBP_LOSSLESS = pil_encode(RGB, "RGB", "WEBP", lossless=True)
BMP = cv2_encode(RGB, ".bmp")


def _inject(data: bytes, at: int, payload: bytes) -> bytes:
    return data[:at] + payload + data[at + len(payload) :]


BAD_INPUTS = [
    ("empty", b"", "empty image"),
    ("one_byte", b"\xff", "too few for any image header"),
    ("random_bytes", np.random.RandomState(0).bytes(200).replace(b"\xff\xd8", b"\x00\x00"), "unknown image format"),
    ("text", b"hello, this is not an image at all", "unknown image format"),
    ("jpeg_truncated_half", JPEG[: len(JPEG) // 2], "truncated JPEG: no end-of-image marker"),
    ("jpeg_missing_eoi", JPEG[:-2], "truncated JPEG: no end-of-image marker"),
    ("jpeg_truncated_header", JPEG[:100], "truncated JPEG: data ends inside segment"),
    ("jpeg_corrupt_header", _inject(JPEG, JPEG.index(b"\xff\xc4"), b"\x12\x34"), "corrupt JPEG: expected a marker"),
    ("jpeg_corrupt_scan", _inject(JPEG, len(JPEG) // 2, b"\xff\xc1"), "corrupt JPEG: invalid marker 0xFFC1"),
    ("jpeg_soi_only", b"\xff\xd8\xff\xd9", "corrupt JPEG: end-of-image marker before any image data"),
    ("png_truncated_half", PNG[: len(PNG) // 2], "truncated PNG: chunk 'IDAT'"),
    ("png_missing_iend", PNG[:-12], "truncated PNG: data ends before the IEND chunk"),
    ("png_signature_only", PNG[:8], "truncated PNG"),
    ("png_corrupt_middle", flip_bytes(PNG, len(PNG) // 2), "corrupt PNG: CRC mismatch in chunk 'IDAT'"),
    ("webp_truncated_half", WEBP_LOSSY[: len(WEBP_LOSSY) // 2], "truncated WebP: RIFF header says"),
    ("webp_lossless_truncated", WEBP_LOSSLESS[:-10], "truncated WebP: RIFF header says"),
    ("webp_corrupt_start_code", flip_bytes(WEBP_LOSSY, 23, 3), "corrupt WebP: missing VP8 start code"),
    ("webp_unknown_chunk", WEBP_LOSSY[:12] + b"XXXX" + WEBP_LOSSY[16:], "corrupt WebP: unknown first chunk"),
    ("bmp_truncated", BMP[: len(BMP) // 2], "truncated BMP: pixel data needs"),
    ("png_bomb", png_bomb(), "image too large: PNG header says 100000x100000"),
    ("jpeg_bomb", jpeg_bomb(), "image too large: JPEG header says 65000x65000"),
    ("webp_vp8x_bomb", webp_vp8x_bomb(), "image too large: WebP header says 100000x100000"),
    ("webp_vp8l_bomb", webp_vp8l_bomb(), "image too large: WebP header says 16384x16384"),
    ("bmp_bomb", bmp_bomb(), "image too large: BMP header says 100000x100000"),
    ("png_zero_width", png_bomb(0, 10), "has a zero dimension"),
    ("gif", pil_encode(RGB, "RGB", "GIF"), "unsupported image format GIF"),
    ("tiff", pil_encode(RGB, "RGB", "TIFF"), "unsupported image format TIFF"),
]


@pytest.mark.parametrize(("data", "fragment"), [(d, f) for _, d, f in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_decode_image_refuses_with_named_problem_when_bytes_are_bad(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidImageError, match=re.escape(fragment)):
        decode_image(data)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("photo.jpg", "got str (pass the file's contents, not its path)"),
        (None, "got NoneType"),
        (123, "got int"),
        (np.zeros((4, 4, 3), np.uint8), "got ndarray"),
        ([0xFF, 0xD8], "got list"),
    ],
    ids=["str", "none", "int", "ndarray_3d", "list"],
)
def test_decode_image_refuses_when_input_is_not_bytes(value: object, fragment: str) -> None:
    with pytest.raises(InvalidImageError, match=r"image must be encoded bytes .*" + re.escape(fragment)):
        decode_image(value)  # type: ignore[arg-type]


def test_decode_image_refuses_before_decoding_when_header_exceeds_max_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("cv2.imdecode must not run for an oversized image")

    monkeypatch.setattr(cv2, "imdecode", fail)
    with pytest.raises(InvalidImageError, match="image too large: PNG header says 64x48 = 3072 pixels, the limit is"):
        decode_image(PNG, max_pixels=3071)
    assert DEFAULT_MAX_PIXELS == 40_000_000


@pytest.mark.parametrize("max_pixels", [0, -1, 1.5, True, "10"])
def test_decode_image_refuses_when_max_pixels_is_invalid(max_pixels: object) -> None:
    with pytest.raises(InvalidInputError, match="max_pixels must be a positive integer"):
        decode_image(PNG, max_pixels=max_pixels)  # type: ignore[arg-type]


def test_decode_image_accepts_image_when_pixels_equal_max_pixels() -> None:
    assert decode_image(PNG, max_pixels=48 * 64).shape == (48, 64, 3)


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_decode_image_matches_cv2_imread_when_photo_is_jpeg(name: str) -> None:
    data = photo_bytes(name)
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    out = decode_image(data)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "data",
    [PNG, WEBP_LOSSLESS, BMP, bytearray(PNG), memoryview(PNG), np.frombuffer(PNG, np.uint8)],
    ids=["png", "webp_lossless", "bmp", "bytearray", "memoryview", "uint8_array"],
)
def test_decode_image_returns_exact_rgb_when_format_is_lossless(data: object) -> None:
    np.testing.assert_array_equal(decode_image(data), RGB)  # type: ignore[arg-type]


def test_decode_image_accepts_triton_bytes_element_when_given_object_array() -> None:
    tensor = np.empty(1, dtype=object)
    tensor[0] = PNG
    np.testing.assert_array_equal(decode_image(tensor), RGB)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [JPEG, WEBP_LOSSY], ids=["jpeg", "webp_lossy"])
def test_decode_image_matches_cv2_when_format_is_lossy(data: bytes) -> None:
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decode_image(data), expected)


def test_decode_image_replicates_gray_when_png_is_grayscale() -> None:
    gray = RGB[..., 1].copy()
    out = decode_image(pil_encode(gray, "L", "PNG"))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_decode_image_drops_alpha_when_image_has_alpha(fmt: str) -> None:
    alpha = np.random.RandomState(1).randint(0, 256, RGB.shape[:2], dtype=np.uint8)
    alpha[0, 0] = 0  # fully transparent pixel keeps its stored colour
    rgba = np.dstack([RGB, alpha])
    kwargs = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    np.testing.assert_array_equal(decode_image(pil_encode(rgba, "RGBA", fmt, **kwargs)), RGB)


def test_decode_image_drops_alpha_when_png_is_gray_alpha() -> None:
    gray = RGB[..., 0].copy()
    data = pil_encode(np.dstack([gray, 255 - gray]), "LA", "PNG")
    np.testing.assert_array_equal(decode_image(data), np.repeat(gray[..., None], 3, axis=2))


def test_decode_image_keeps_high_byte_when_png_is_16_bit() -> None:
    rs = np.random.RandomState(2)
    bgr16 = rs.randint(0, 65536, (10, 12, 3)).astype(np.uint16)
    bgr16[0, :4] = [[65535, 0, 32768], [255, 256, 383], [65280, 65279, 128], [1, 2, 3]]
    data = cv2.imencode(".png", bgr16)[1].tobytes()
    out = decode_image(data)
    # Reference conversion: cv2.imread (what Ultralytics uses) keeps the high byte.
    reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, reference)
    np.testing.assert_array_equal(out, (bgr16 >> 8).astype(np.uint8)[..., ::-1])


def test_decode_image_replicates_gray_when_png_is_16_bit_gray() -> None:
    gray16 = np.random.RandomState(3).randint(0, 65536, (9, 7)).astype(np.uint16)
    out = decode_image(cv2.imencode(".png", gray16)[1].tobytes())
    np.testing.assert_array_equal(out, np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, axis=2))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_decode_image_returns_rgb_when_bmp_has_mode(mode: str) -> None:
    src = {"L": RGB[..., 2].copy(), "RGB": RGB, "RGBA": np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])}[mode]
    expected = np.repeat(src[..., None], 3, axis=2) if mode == "L" else src[..., :3]
    np.testing.assert_array_equal(decode_image(pil_encode(src, mode, "BMP")), expected)


def test_decode_image_accepts_trailing_bytes_when_jpeg_has_data_after_eoi() -> None:
    expected = decode_image(JPEG)
    np.testing.assert_array_equal(decode_image(JPEG + b"\x00" * 64 + b"trailer"), expected)


def test_decode_image_applies_exif_orientation_when_jpeg_is_rotated() -> None:
    img = pil_encode(RGB, "RGB", "JPEG", quality=95, exif=_exif_orientation(6))
    out = decode_image(img)
    assert out.shape == (64, 48, 3)  # rotated 90 degrees, like cv2.imread
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, expected)


def _exif_orientation(value: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


@pytest.mark.parametrize(
    ("data", "expected"),
    [(JPEG, (48, 64)), (PNG, (48, 64)), (WEBP_LOSSY, (48, 64)), (WEBP_LOSSLESS, (48, 64)), (BMP, (48, 64))],
    ids=["jpeg", "png", "webp_vp8", "webp_vp8l", "bmp"],
)
def test_image_size_reads_header_when_format_is_supported(data: bytes, expected: tuple[int, int]) -> None:
    assert image_size(data) == expected


def test_image_size_reads_canvas_when_webp_is_extended() -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)])
    data = pil_encode(rgba, "RGBA", "WEBP", quality=80)  # lossy + alpha -> VP8X container
    assert data[12:16] == b"VP8X"
    assert image_size(data) == (48, 64)
    np.testing.assert_array_equal(decode_image(data).shape, (48, 64, 3))


# --- letterbox ------------------------------------------------------------------------------


def _ultralytics_letterbox(image: np.ndarray, size: int = 640) -> np.ndarray:
    from ultralytics.data.augment import LetterBox

    return LetterBox(new_shape=(size, size), auto=False)(image=image)


EXPLICIT_SHAPES = [
    (1, 1),
    (1, 640),
    (640, 1),
    (1, 5000),
    (5000, 3),
    (479, 641),
    (1080, 1920),
    (1920, 1080),
    (100, 50),
    (640, 640),
    (641, 640),
    (256, 1),
    (2, 1279),
    (3, 7),
    (720, 1280),
]


@pytest.mark.parametrize("shape", EXPLICIT_SHAPES, ids=[f"{h}x{w}" for h, w in EXPLICIT_SHAPES])
def test_letterbox_equals_ultralytics_when_shape_is_listed(shape: tuple[int, int]) -> None:
    image = np.random.RandomState(shape[0] * 7 + shape[1]).randint(0, 256, (*shape, 3), dtype=np.uint8)
    out, info = letterbox(image)
    np.testing.assert_array_equal(out, _ultralytics_letterbox(image))
    assert out.shape == (640, 640, 3) and out.dtype == np.uint8
    assert (info.orig_h, info.orig_w) == shape


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 2500),
    w=st.integers(1, 2500),
    size=st.sampled_from([640, 320, 64, 33]),
    seed=st.integers(0, 2**31 - 1),
)
def test_letterbox_equals_ultralytics_when_shape_is_random(h: int, w: int, size: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out, info = letterbox(image, size)
    np.testing.assert_array_equal(out, _ultralytics_letterbox(image, size))
    assert info.size == size
    restored = LetterboxInfo.from_array(info.to_array())
    assert restored.size == size and restored.new_shape == info.new_shape and restored.gain_xy == info.gain_xy


def test_letterbox_equals_ultralytics_when_image_is_real_photo() -> None:
    image = decode_image(photo_bytes("zidane.jpg"))
    out, info = letterbox(image)
    np.testing.assert_array_equal(out, _ultralytics_letterbox(image))
    assert (info.pad_left, info.pad_top, info.new_shape) == (0, 140, (360, 640))


def _ultralytics_rect_letterbox(image: np.ndarray, size: int = 640) -> np.ndarray:
    from ultralytics.data.augment import LetterBox

    return LetterBox(new_shape=(size, size), auto=True, stride=32)(image=image)


@pytest.mark.parametrize("shape", EXPLICIT_SHAPES, ids=[f"{h}x{w}" for h, w in EXPLICIT_SHAPES])
def test_rect_letterbox_equals_ultralytics_auto_when_shape_is_listed(shape: tuple[int, int]) -> None:
    image = np.random.RandomState(shape[0] * 5 + shape[1]).randint(0, 256, (*shape, 3), dtype=np.uint8)
    out, info = letterbox(image, auto=True)
    want = _ultralytics_rect_letterbox(image)
    np.testing.assert_array_equal(out, want)
    assert out.shape[0] % 32 == 0 and out.shape[1] % 32 == 0 and max(out.shape[:2]) == 640
    assert info.output_shape(auto=True) == want.shape[:2]


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 2500),
    w=st.integers(1, 2500),
    size=st.sampled_from([640, 320, 64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_rect_letterbox_equals_ultralytics_auto_when_shape_is_random(h: int, w: int, size: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out, info = letterbox(image, size, auto=True)
    np.testing.assert_array_equal(out, _ultralytics_rect_letterbox(image, size))
    restored = LetterboxInfo.from_array(info.to_array())
    assert restored.size == size and restored.output_shape(auto=True) == out.shape[:2]


@pytest.mark.parametrize(("photo", "shape"), [("bus.jpg", (640, 480, 3)), ("zidane.jpg", (384, 640, 3))])
def test_rect_letterbox_gives_minimal_rectangle_when_image_is_real_photo(photo: str, shape: tuple) -> None:
    image = decode_image(photo_bytes(photo))
    out, _ = letterbox(image, auto=True)
    assert out.shape == shape
    np.testing.assert_array_equal(out, _ultralytics_rect_letterbox(image))


def test_letterbox_info_round_trips_when_converted_to_array() -> None:
    _, info = letterbox(np.zeros((479, 641, 3), np.uint8))
    array = info.to_array()
    assert array.dtype == np.float32 and array.shape == (LETTERBOX_INFO_LEN,)
    assert array[[0, 1, 3, 4]].tolist() == [479, 641, info.pad_left, info.pad_top]
    restored = LetterboxInfo.from_array(array)
    assert (restored.orig_h, restored.orig_w, restored.pad_left, restored.pad_top) == (479, 641, 0, 81)
    assert restored.gain == pytest.approx(640 / 641, rel=1e-7)
    assert restored.gain_xy == info.gain_xy


def test_letterbox_info_is_frozen_when_assigned() -> None:
    info = LetterboxInfo.for_shape(10, 20)
    with pytest.raises(AttributeError):
        info.gain = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros(4, np.float32), "must hold 5 finite values"),
        (np.array([10, 10, np.nan, 0, 0], np.float32), "must hold 5 finite values"),
        (np.array([0, 10, 1, 0, 0], np.float32), "orig_h must be a positive integer"),
        (np.array([10, 10, -1, 0, 0], np.float32), "gain must be finite and positive"),
        (np.array([10, 10, 1, -3, 0], np.float32), "pad_left must be a non-negative integer"),
    ],
    ids=["short", "nan", "zero_height", "negative_gain", "negative_pad"],
)
def test_letterbox_info_from_array_refuses_when_values_are_invalid(array: np.ndarray, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        LetterboxInfo.from_array(array)


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (np.zeros((10, 10, 3), np.float32), "must be uint8"),
        (np.zeros((10, 10), np.uint8), r"must have shape \(H, W, 3\)"),
        (np.zeros((10, 10, 4), np.uint8), r"must have shape \(H, W, 3\)"),
        (np.zeros((0, 10, 3), np.uint8), "must not be empty"),
        (np.zeros((10, 0, 3), np.uint8), "must not be empty"),
        ([[0, 0, 0]], "must be a numpy array"),
    ],
    ids=["float", "gray", "rgba", "zero_height", "zero_width", "list"],
)
def test_letterbox_refuses_when_image_is_invalid(image: object, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        letterbox(image)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -640, 64.0, True])
def test_letterbox_refuses_when_size_is_invalid(size: object) -> None:
    with pytest.raises(InvalidInputError, match="size must be a positive integer"):
        letterbox(np.zeros((4, 4, 3), np.uint8), size)  # type: ignore[arg-type]


def test_letterbox_info_checks_size_when_from_array_gets_expected_size() -> None:
    info = LetterboxInfo.for_shape(480, 640, 320)
    assert LetterboxInfo.from_array(info.to_array(), size=320).size == 320
    assert (info.orig_height, info.orig_width) == (480, 640)
    with pytest.raises(InvalidInputError, match="is for a 320 letterbox, not 640"):
        LetterboxInfo.from_array(info.to_array(), size=640)
