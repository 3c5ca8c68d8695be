"""``pipeline._grouped`` (the postprocess batch path): a bad image makes only its own group fall back."""

from __future__ import annotations

import numpy as np

from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.serving import pipeline

_INFO = np.array([[480, 640, 1.0, 0, 80]], np.float32)  # a 480x640 frame in the square 640 letterbox


def _raw(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.random((1, ct.POSE_RAW_CHANNELS, 400), dtype=np.float32)
    raw[:, :2] *= 600
    raw[:, 2:4] = raw[:, 2:4] * 60 + 10
    return raw


def _item(seed: int, conf: float, info: np.ndarray = _INFO) -> pipeline.PostprocessInput:
    return pipeline.PostprocessInput(_raw(seed), info, np.array([[conf]], np.float32))


def test_grouped_postprocess_runs_only_the_failing_group_image_by_image_when_one_image_is_bad(monkeypatch):
    settings = pipeline.PoseSettings()
    real = pipeline.pose_outputs
    calls: list[tuple[float, int]] = []

    def spy(raw, info, conf, iou, s):
        calls.append((round(conf, 3), raw.shape[0]))
        return real(raw, info, conf, iou, s)

    monkeypatch.setattr(pipeline, "pose_outputs", spy)
    bad_info = np.full((1, ct.LETTERBOX_INFO_LEN), np.nan, np.float32)  # passes the per-request checks
    items = [_item(1, 0.5), _item(2, 0.9), _item(3, 0.5, bad_info), _item(4, 0.5), _item(5, 0.9)]
    results = pipeline.pose_postprocess_batch(items, settings)

    assert isinstance(results[2], InvalidInputError)
    assert "finite values" in str(results[2])
    # group conf 0.5 (3 images) fails as a whole, then runs one image at a time; group 0.9 runs once, batched
    assert sorted(calls) == sorted([(0.5, 3), (0.5, 1), (0.5, 1), (0.5, 1), (0.9, 2)])
    for k, (seed, conf) in zip((0, 1, 3, 4), ((1, 0.5), (2, 0.9), (4, 0.5), (5, 0.9)), strict=True):
        alone = real(_raw(seed), _INFO, conf, settings.iou, settings)[0]
        assert set(results[k]) == set(alone)
        for name, value in alone.items():
            np.testing.assert_array_equal(results[k][name][0], value, err_msg=f"{name} of request {k}")


def test_grouped_postprocess_fails_whole_request_when_one_of_its_images_is_bad():
    settings = pipeline.PoseSettings()
    bad_info = np.full((1, ct.LETTERBOX_INFO_LEN), np.nan, np.float32)
    two = pipeline.PostprocessInput(
        np.concatenate([_raw(1), _raw(2)]), np.concatenate([_INFO, bad_info]), np.array([[0.5], [0.5]], np.float32)
    )
    results = pipeline.pose_postprocess_batch([two, _item(3, 0.5)], settings)
    assert isinstance(results[0], InvalidInputError)
    alone = pipeline.pose_outputs(_raw(3), _INFO, 0.5, settings.iou, settings)[0]
    np.testing.assert_array_equal(results[1][ct.BOXES][0], alone[ct.BOXES])
