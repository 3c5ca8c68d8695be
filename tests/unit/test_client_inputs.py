"""Input normalisation of the client: image types, encodings, boxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from enrichment_light.client.inputs import as_boxes, as_image_bytes, as_rgb_array, encode_array
from enrichment_light.core.errors import InvalidImageError, InvalidInputError
from enrichment_light.core.processing.image import decode_image


def _rgb(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_as_image_bytes_returns_bytes_unchanged_when_given_bytes():
    data = encode_array(_rgb())
    assert as_image_bytes(data) is not None
    assert as_image_bytes(data) == data
    assert as_image_bytes(bytearray(data)) == data
    assert as_image_bytes(memoryview(data)) == data


def test_as_image_bytes_reads_file_without_decoding_when_given_path(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"not an image at all")
    assert as_image_bytes(path) == b"not an image at all"
    assert as_image_bytes(str(path)) == b"not an image at all"


def test_as_image_bytes_encodes_png_losslessly_when_given_rgb_array():
    rgb = _rgb()
    np.testing.assert_array_equal(decode_image(as_image_bytes(rgb)), rgb)


def test_as_image_bytes_swaps_channels_when_bgr():
    rgb = _rgb()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    np.testing.assert_array_equal(decode_image(as_image_bytes(bgr, bgr=True)), rgb)


def test_as_image_bytes_encodes_jpeg_close_to_source_when_array_format_jpeg():
    rgb = np.full((64, 64, 3), (200, 30, 90), np.uint8)
    data = as_image_bytes(rgb, array_format="jpeg")
    assert data[:2] == b"\xff\xd8"
    assert np.abs(decode_image(data).astype(int) - rgb).max() <= 4


def test_as_rgb_array_accepts_pil_like_objects_without_importing_pil():
    rgb = _rgb()

    class FakePil:  # duck type: .convert and .size, as PIL.Image.Image
        size = (rgb.shape[1], rgb.shape[0])

        def convert(self, mode):
            assert mode == "RGB"
            return rgb

    np.testing.assert_array_equal(as_rgb_array(FakePil()), rgb)


def test_as_rgb_array_accepts_real_pil_image():
    pil = pytest.importorskip("PIL.Image")
    rgb = _rgb()
    np.testing.assert_array_equal(as_rgb_array(pil.fromarray(rgb)), rgb)


def test_as_rgb_array_expands_grey_and_drops_alpha():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb_array(grey).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 255
    assert as_rgb_array(rgba).shape == (3, 4, 3)


def test_as_rgb_array_decodes_bytes_like_the_server(tmp_path):
    rgb = _rgb()
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(as_rgb_array(buf.tobytes()), rgb)


@pytest.mark.parametrize(
    ("image", "error", "words"),
    [
        (b"", InvalidImageError, "empty"),
        (np.zeros((4, 4, 3), np.float32), InvalidInputError, "uint8"),
        (np.zeros((4, 4, 2), np.uint8), InvalidInputError, "shape"),
        (np.zeros((0, 4, 3), np.uint8), InvalidInputError, "empty"),
        (12345, InvalidInputError, "unsupported image type"),
        ("/nonexistent/image.jpg", InvalidInputError, "cannot read"),
    ],
)
def test_as_image_bytes_raises_invalid_input_when_image_is_unusable(image, error, words):
    with pytest.raises(error, match=words):
        as_image_bytes(image)


def test_as_rgb_array_raises_invalid_image_when_bytes_are_corrupt():
    with pytest.raises(InvalidImageError):
        as_rgb_array(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


def test_encode_array_rejects_unknown_format():
    with pytest.raises(InvalidInputError, match="array_format"):
        encode_array(_rgb(), array_format="gif")


def test_as_boxes_returns_float32_k_by_4():
    boxes = as_boxes([[1, 2, 3, 4], [0, 0, 10, 10]])
    assert boxes.dtype == np.float32
    assert boxes.shape == (2, 4)
    assert as_boxes([]).shape == (0, 4)


@pytest.mark.parametrize(
    ("boxes", "words"),
    [
        ([[1, 2, 3]], "shape"),
        ([[np.nan, 0, 1, 1]], "finite"),
        ([[5, 0, 1, 1]], "x1 <= x2"),
    ],
)
def test_as_boxes_raises_invalid_input_when_boxes_are_bad(boxes, words):
    with pytest.raises(InvalidInputError, match=words):
        as_boxes(boxes)
