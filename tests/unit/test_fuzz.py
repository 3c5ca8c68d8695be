"""Fuzzing of the input guards: ``decode_image``, person-box validation and threshold validation.

Property: for *any* input, the guard either returns a well-formed value or raises our
``InvalidInputError`` (``InvalidImageError`` for images) with a message; it never raises anything
else, never hangs and never returns out-of-contract data.

The default run is short (``max_examples`` 200 per target, a few seconds in total). For a longer
run set ``ENRICHMENT_FUZZ_EXAMPLES`` (e.g. 20000) or run the ``slow`` variants::

    ENRICHMENT_FUZZ_EXAMPLES=20000 python -m pytest tests/unit/test_fuzz.py
    python -m pytest -m slow tests/unit/test_fuzz.py      # 5000 examples per target
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidImageError, InvalidInputError
from enrichment_light.core.processing.image import decode_image
from enrichment_light.core.processing.reid import crop_bounds, extract_person_crops
from enrichment_light.serving.pipeline import reid_crops, thresholds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _hostile_corpus import image_cases, valid_cases

EXAMPLES = int(os.environ.get("ENRICHMENT_FUZZ_EXAMPLES", "200"))
SLOW_EXAMPLES = max(EXAMPLES, 5000)
MAX_PIXELS = 1 << 20  # small limit: mutated headers claiming more are refused before decoding

SEEDS = [c.data for c in valid_cases() if len(c.data) < 20_000]


def _fuzz_settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize="ENRICHMENT_FUZZ_EXAMPLES" not in os.environ,  # CI runs are reproducible
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


# ------------------------------------------------------------------------------------------ strategies


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid seed image with bytes flipped, inserted, deleted or the tail cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xD9, 0xD8]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


any_bytes = st.one_of(
    st.binary(max_size=512),
    st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF", b"BM"]).flatmap(
        lambda magic: st.binary(max_size=256).map(lambda tail: magic + tail)
    ),
)

coords = st.floats(allow_nan=True, allow_infinity=True, width=32)
boxes_arrays = st.one_of(
    hnp.arrays(np.float32, st.tuples(st.integers(0, 6), st.just(4)), elements=coords),
    hnp.arrays(np.float32, st.tuples(st.integers(0, 3), st.integers(0, 6)), elements=coords),
    hnp.arrays(np.float32, st.integers(0, 8).map(lambda n: (n,)), elements=coords),
)
_threshold_shapes = st.sampled_from([(1, 1), (2, 1), (1,), (1, 2), (0, 1)])
threshold_arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64]), _threshold_shapes, elements=coords),
    hnp.arrays(np.int32, _threshold_shapes),
)


# ------------------------------------------------------------------------------------------ properties


def _check_decode(data: bytes) -> None:
    try:
        image = decode_image(data, max_pixels=MAX_PIXELS)
    except InvalidImageError as err:
        assert str(err), "an error must say what is wrong"
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 0 < image.shape[0] * image.shape[1] <= MAX_PIXELS
    assert image.flags.c_contiguous


def _check_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> None:
    try:
        bounds = crop_bounds(boxes, shape)
    except InvalidInputError as err:
        assert "box" in str(err)
        return
    h, w = shape
    assert bounds.shape == (boxes.shape[0], 4)
    assert (bounds[:, 0] >= 0).all() and (bounds[:, 2] <= w).all() and (bounds[:, 0] < bounds[:, 2]).all()
    assert (bounds[:, 1] >= 0).all() and (bounds[:, 3] <= h).all() and (bounds[:, 1] < bounds[:, 3]).all()
    assert np.isfinite(boxes).all()


def _check_thresholds(conf: np.ndarray, iou: np.ndarray) -> None:
    try:
        c, i = thresholds(conf, iou, 1, 0.5, 0.7)
    except InvalidInputError as err:
        assert "THRESHOLD" in str(err) or "input" in str(err)
        return
    for arr in (c, i):
        assert arr.shape == (1,) and arr.dtype == np.float32
        assert np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1).all()


# ------------------------------------------------------------------------------------------ corpus


@pytest.mark.parametrize("case", image_cases(), ids=lambda c: c.name)
def test_decode_image_meets_corpus_expectation_when_input_is_hostile_or_odd(case):
    if case.valid:
        image = decode_image(case.data)
        assert image.shape == (*case.shape, 3) and image.dtype == np.uint8
        return
    with pytest.raises(InvalidImageError) as info:
        decode_image(case.data)
    message = str(info.value).lower()
    for fragment in case.error:
        assert fragment in message, (case.name, message)


def test_hostile_corpus_has_at_least_25_cases_when_built():
    cases = image_cases()
    assert len(cases) >= 25
    assert len({c.name for c in cases}) == len(cases)


# ------------------------------------------------------------------------------------------ fuzz (CI)


@_fuzz_settings(EXAMPLES)
@given(any_bytes)
def test_decode_image_raises_only_invalid_image_error_when_bytes_are_arbitrary(data):
    _check_decode(data)


@_fuzz_settings(EXAMPLES)
@given(mutated_images())
def test_decode_image_raises_only_invalid_image_error_when_valid_image_is_mutated(data):
    _check_decode(data)


@_fuzz_settings(EXAMPLES)
@given(boxes_arrays, st.tuples(st.integers(1, 50), st.integers(1, 50)))
def test_crop_bounds_returns_in_image_boxes_or_invalid_input_when_boxes_are_arbitrary(boxes, shape):
    _check_boxes(boxes, shape)


@_fuzz_settings(EXAMPLES // 4)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.just(4)), elements=coords))
def test_extract_person_crops_returns_fixed_size_crops_or_invalid_input_when_boxes_are_arbitrary(boxes):
    image = np.zeros((20, 30, 3), np.uint8)
    try:
        crops = extract_person_crops(image, boxes)
    except InvalidInputError:
        return
    assert crops.shape == (boxes.shape[0], ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3)


@_fuzz_settings(EXAMPLES)
@given(threshold_arrays, threshold_arrays)
def test_thresholds_are_in_unit_interval_or_invalid_input_when_overrides_are_arbitrary(conf, iou):
    _check_thresholds(conf, iou)


@_fuzz_settings(EXAMPLES // 4)
@given(boxes_arrays, st.sampled_from(SEEDS[:4]))
def test_reid_crops_model_function_refuses_with_invalid_input_when_request_is_arbitrary(boxes, image):
    try:
        out = reid_crops(np.array([image], dtype=object), boxes, max_pixels=MAX_PIXELS, max_persons=32)
    except InvalidInputError as err:
        assert str(err)
        return
    assert out[ct.CROPS].shape[1:] == (ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3)


# ------------------------------------------------------------------------------------------ fuzz (long)


@pytest.mark.slow
@_fuzz_settings(SLOW_EXAMPLES)
@given(st.one_of(any_bytes, mutated_images()))
def test_decode_image_raises_only_invalid_image_error_when_fuzzed_long(data):
    _check_decode(data)


@pytest.mark.slow
@_fuzz_settings(SLOW_EXAMPLES)
@given(boxes_arrays, st.tuples(st.integers(1, 50), st.integers(1, 50)), threshold_arrays, threshold_arrays)
def test_validators_accept_or_refuse_cleanly_when_fuzzed_long(boxes, shape, conf, iou):
    _check_boxes(boxes, shape)
    _check_thresholds(conf, iou)
