"""annotate: drawing poses, threats and enrichment results; saving images."""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest

from enrichment_light.client.annotate import (
    PERSON_COLOR,
    SEVERITY_COLORS,
    SKELETON_COLOR,
    SUSPICIOUS_COLOR,
    draw_enrichment,
    draw_pose,
    draw_threats,
    save_annotated,
)
from enrichment_light.client.results import (
    EnrichmentResult,
    Keypoint,
    PersonResult,
    PoseClass,
    PoseResult,
    ReIDResult,
    Severity,
    ThreatDetection,
    ThreatResult,
)
from enrichment_light.core.contract import KEYPOINT_NAMES
from enrichment_light.core.errors import InvalidInputError

H, W = 480, 640


def _image(value: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((H, W, 3), value, dtype=np.uint8)
    img[::7, ::5] = rng.integers(0, 30, size=img[::7, ::5].shape, dtype=np.uint8)  # some texture
    return img


def _threat(sev: Severity, bbox=(100, 100, 300, 260), name="knife") -> ThreatDetection:
    return ThreatDetection(threat_type=name, confidence=0.87, bbox=list(bbox), severity=sev)


def _pose(cls: PoseClass = PoseClass.STANDING, bbox=(200.0, 50.0, 400.0, 450.0), conf: float = 0.9) -> PoseResult:
    xs = np.linspace(250, 350, len(KEYPOINT_NAMES))
    ys = np.linspace(60, 440, len(KEYPOINT_NAMES))
    kps = [Keypoint(n, float(x), float(y), conf) for n, x, y in zip(KEYPOINT_NAMES, xs, ys, strict=True)]
    return PoseResult(keypoints=kps, pose_class=cls, confidence=conf, is_suspicious=cls.is_suspicious, bbox=bbox)


# --- severity colours -----------------------------------------------------------------------
def test_severity_colors_are_the_documented_legend():
    assert SEVERITY_COLORS[Severity.CRITICAL] == (255, 0, 0)
    assert SEVERITY_COLORS[Severity.HIGH] == (255, 165, 0)
    assert SEVERITY_COLORS[Severity.MEDIUM] == (255, 255, 0)
    assert SEVERITY_COLORS[Severity.LOW] == (0, 0, 255)


@pytest.mark.parametrize("severity", [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW])
def test_draw_threats_paints_box_edge_in_severity_color_when_threat(severity):
    img = _image()
    out = draw_threats(img, ThreatResult.from_threats([_threat(severity)]))
    expected = SEVERITY_COLORS[severity]
    # middle of the left, right and bottom edges (the label sits on the top edge)
    for y, x in ((180, 100), (180, 300), (260, 200)):
        assert tuple(int(c) for c in out[y, x]) == expected
    # inside the box, away from edges and label: untouched
    np.testing.assert_array_equal(out[200, 200], img[200, 200])


def test_draw_threats_changes_label_area_when_threat():
    img = _image()
    out = draw_threats(img, ThreatResult.from_threats([_threat(Severity.CRITICAL)]))
    assert not np.array_equal(out[80:100, 100:200], img[80:100, 100:200])


def test_draw_threats_draws_most_severe_on_top_when_boxes_overlap():
    img = _image()
    threats = [_threat(Severity.CRITICAL, name="gun"), _threat(Severity.LOW, name="thing")]
    out = draw_threats(img, ThreatResult.from_threats(threats))
    assert tuple(int(c) for c in out[180, 100]) == SEVERITY_COLORS[Severity.CRITICAL]


# --- invariants ----------------------------------------------------------------------------
def _all_draws(img: np.ndarray, *, empty: bool):
    threats = ThreatResult.from_threats([] if empty else [_threat(Severity.HIGH)])
    poses = [] if empty else [_pose(PoseClass.CROUCHING)]
    reid = ReIDResult(embedding=[1.0] + [0.0] * 511, embedding_hash="0123456789abcdef")
    result = EnrichmentResult(
        threats=threats, persons=[PersonResult(p, reid) for p in poses], image_height=H, image_width=W
    )
    return [draw_pose(img, poses), draw_threats(img, threats), draw_enrichment(img, result)]


@pytest.mark.parametrize("empty", [False, True])
def test_draw_functions_return_new_array_same_shape_and_leave_input_when_called(empty):
    img = _image()
    before = img.copy()
    for out in _all_draws(img, empty=empty):
        assert out.shape == img.shape and out.dtype == np.uint8
        assert out is not img and not np.shares_memory(out, img)
        if empty:
            np.testing.assert_array_equal(out, img)
        else:
            assert not np.array_equal(out, img)
    np.testing.assert_array_equal(img, before)


def test_draw_pose_paints_box_and_skeleton_when_person():
    img = _image()
    out = draw_pose(img, [_pose(PoseClass.STANDING)])
    assert tuple(int(c) for c in out[300, 200]) == PERSON_COLOR  # left edge of the box
    # skeleton: some pixels in cyan
    assert np.any(np.all(out == np.array(SKELETON_COLOR, dtype=np.uint8), axis=-1))


def test_draw_pose_marks_suspicious_in_magenta_when_suspicious():
    out = draw_pose(_image(), [_pose(PoseClass.HIDING)])
    assert tuple(int(c) for c in out[300, 200]) == SUSPICIOUS_COLOR


def test_draw_pose_skips_keypoints_when_below_threshold():
    img = _image()
    pose = _pose(PoseClass.STANDING, conf=0.2)
    out = draw_pose(img, [pose], keypoint_threshold=0.3)
    assert not np.any(np.all(out == np.array(SKELETON_COLOR, dtype=np.uint8), axis=-1))


def test_draw_pose_frames_keypoints_when_no_box():
    out = draw_pose(_image(), [_pose(PoseClass.STANDING, bbox=(0.0, 0.0, 0.0, 0.0))])
    assert np.any(np.all(out == np.array(PERSON_COLOR, dtype=np.uint8), axis=-1))


def test_draw_enrichment_adds_reid_label_when_person_has_embedding():
    img = _image()
    pose = _pose(PoseClass.STANDING)
    reid = ReIDResult(embedding=[1.0] + [0.0] * 511, embedding_hash="0123456789abcdef")
    with_reid = EnrichmentResult(ThreatResult(), [PersonResult(pose, reid)], H, W)
    without = EnrichmentResult(ThreatResult(), [PersonResult(pose, None)], H, W)
    a, b = draw_enrichment(img, with_reid), draw_enrichment(img, without)
    assert not np.array_equal(a[450:480, 200:320], b[450:480, 200:320])  # label below the box


def test_draw_handles_boxes_partly_outside_image_when_clipping():
    img = _image()
    out = draw_threats(img, ThreatResult.from_threats([_threat(Severity.CRITICAL, bbox=(-50, -50, 2000, 2000))]))
    assert tuple(int(c) for c in out[H // 2, 0]) == SEVERITY_COLORS[Severity.CRITICAL]
    out = draw_threats(img, ThreatResult.from_threats([_threat(Severity.CRITICAL, bbox=(5000, 5000, 6000, 6000))]))
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((10, 10, 3), dtype=np.float32),
        np.zeros((0, 10, 3), dtype=np.uint8),
        [[0, 0, 0]],
    ],
)
def test_draw_raises_when_image_invalid(bad):
    with pytest.raises(InvalidInputError, match="image"):
        draw_threats(bad, ThreatResult())


def test_draw_accepts_non_contiguous_input_when_view():
    img = _image()[:, ::-1]
    out = draw_threats(img, ThreatResult())
    np.testing.assert_array_equal(out, img)


# --- saving -------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".PNG"])
def test_save_annotated_writes_decodable_file_of_original_size_when_known_extension(tmp_path, ext):
    img = draw_threats(_image(), ThreatResult.from_threats([_threat(Severity.CRITICAL)]))
    img[300:340, 400:440] = (255, 0, 0)  # a red block survives JPEG chroma subsampling
    path = save_annotated(tmp_path / f"out{ext}", img)
    decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert decoded.shape == img.shape
    rgb = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if ext.lower() == ".png":
        np.testing.assert_array_equal(rgb, img)  # lossless and RGB order preserved
    else:
        assert rgb[320, 420, 0] > 200 and rgb[320, 420, 2] < 60  # still red, not blue
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{ext}"]


def test_save_annotated_raises_when_directory_missing(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        save_annotated(tmp_path / "missing" / "x.png", _image())


@pytest.mark.parametrize("name", ["x.gif", "x", "x.tiff"])
def test_save_annotated_raises_when_extension_unknown(tmp_path, name):
    with pytest.raises(InvalidInputError, match="extension"):
        save_annotated(tmp_path / name, _image())


def test_save_annotated_honours_umask_when_writing_atomically(tmp_path):
    old = os.umask(0o022)
    try:
        target = save_annotated(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
