"""Posture rules: golden cases from the original tests, scale/translation invariance, rule table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrichment_light.client.results import POSE_CLASS_ORDER, PoseClass
from enrichment_light.core.contract import KEYPOINT_NAMES
from enrichment_light.core.processing.pose_rules import (
    DEFAULT_POSE_RULES,
    PoseRules,
    classify_pose,
    classify_poses,
    pose_confidences,
    suspicious_mask,
)

# A person ~400 px tall; the golden values (nose, shoulders, hips, knees, ankles) are the original's.
STANDING = {
    "nose": (320, 50), "left_eye": (310, 45), "right_eye": (330, 45), "left_ear": (300, 50), "right_ear": (340, 50),
    "left_shoulder": (280, 100), "right_shoulder": (360, 100), "left_elbow": (270, 175), "right_elbow": (370, 175),
    "left_wrist": (265, 240), "right_wrist": (375, 240), "left_hip": (295, 250), "right_hip": (345, 250),
    "left_knee": (290, 350), "right_knee": (350, 350), "left_ankle": (280, 450), "right_ankle": (360, 450),
}  # fmt: skip
CROUCHING = {
    **STANDING,
    "nose": (320, 200), "left_eye": (310, 195), "right_eye": (330, 195), "left_ear": (300, 200),
    "right_ear": (340, 200), "left_shoulder": (280, 220), "right_shoulder": (360, 220), "left_elbow": (270, 250),
    "right_elbow": (370, 250), "left_wrist": (290, 280), "right_wrist": (350, 280), "left_hip": (295, 250),
    "right_hip": (345, 250), "left_knee": (280, 270), "right_knee": (360, 270), "left_ankle": (285, 350),
    "right_ankle": (355, 350),
}  # fmt: skip
REACHING_UP = {
    **STANDING,
    "nose": (320, 100), "left_eye": (310, 95), "right_eye": (330, 95), "left_ear": (300, 100),
    "right_ear": (340, 100), "left_elbow": (280, 70), "right_elbow": (360, 70), "left_wrist": (290, 30),
    "right_wrist": (350, 30),
}  # fmt: skip
RUNNING = {
    **STANDING,
    "left_knee": (220, 350), "right_knee": (420, 350), "left_ankle": (150, 450), "right_ankle": (490, 450),
}  # fmt: skip
CRAWLING = {  # horizontal body on hands and knees, head to the left
    "nose": (60, 300), "left_eye": (55, 290), "right_eye": (65, 290), "left_ear": (70, 290), "right_ear": (75, 295),
    "left_shoulder": (100, 300), "right_shoulder": (110, 310), "left_elbow": (100, 350), "right_elbow": (110, 360),
    "left_wrist": (95, 390), "right_wrist": (105, 395), "left_hip": (250, 310), "right_hip": (260, 320),
    "left_knee": (340, 380), "right_knee": (350, 390), "left_ankle": (450, 390), "right_ankle": (460, 395),
}  # fmt: skip

GOLDEN = {
    PoseClass.STANDING: (STANDING, (250, 20, 390, 470)),
    PoseClass.CROUCHING: (CROUCHING, (250, 180, 390, 365)),
    PoseClass.REACHING_UP: (REACHING_UP, (250, 15, 390, 470)),
    PoseClass.RUNNING: (RUNNING, (130, 20, 510, 470)),
    PoseClass.CRAWLING: (CRAWLING, (40, 280, 480, 400)),
}
FACE = ("nose", "left_eye", "right_eye")


def skeleton(points: dict[str, tuple[float, float]], conf: float = 0.9, hidden: tuple[str, ...] = ()) -> np.ndarray:
    return np.array([[*points[n], 0.05 if n in hidden else conf] for n in KEYPOINT_NAMES], dtype=np.float64)


def transform(kp: np.ndarray, box, scale: float, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    out = kp.copy()
    out[:, 0] = out[:, 0] * scale + dx
    out[:, 1] = out[:, 1] * scale + dy
    b = np.asarray(box, dtype=np.float64) * scale + np.array([dx, dy, dx, dy])
    return out, b


@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0, 0.3, 2.7])
@pytest.mark.parametrize("shift", [(0, 0), (1000, 0), (0, 1500), (-200, 3000)])
@pytest.mark.parametrize("expected", list(GOLDEN))
def test_classify_pose_golden_case_when_scaled_and_translated(expected, scale, shift):
    points, box = GOLDEN[expected]
    kp, b = transform(skeleton(points), box, scale, *shift)
    assert classify_pose(kp, b) is expected


@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0])
@pytest.mark.parametrize("expected", list(GOLDEN))
def test_classify_pose_golden_case_when_box_is_zero_or_absent(expected, scale):
    points, _ = GOLDEN[expected]
    kp, _ = transform(skeleton(points), (0, 0, 0, 0), scale, 37, 11)
    assert classify_pose(kp, np.zeros(4)) is expected
    assert classify_pose(kp) is expected


@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0])
def test_classify_pose_hiding_when_crouching_with_face_not_visible(scale):
    kp, b = transform(skeleton(CROUCHING, hidden=FACE), GOLDEN[PoseClass.CROUCHING][1], scale, 100, 100)
    assert classify_pose(kp, b) is PoseClass.HIDING


def test_classify_pose_crouching_when_only_one_eye_visible():
    kp = skeleton(CROUCHING, hidden=("nose", "left_eye"))
    assert classify_pose(kp, GOLDEN[PoseClass.CROUCHING][1]) is PoseClass.CROUCHING


def test_classify_pose_standing_not_hiding_when_face_hidden_but_upright():
    kp = skeleton(STANDING, hidden=FACE)
    assert classify_pose(kp, GOLDEN[PoseClass.STANDING][1]) is PoseClass.STANDING


def test_classify_pose_translation_no_longer_changes_class_when_nose_rule_applies():
    # The original's `nose.y > 0.85 * hip.y` flipped standing to crouching lower in the frame.
    kp, b = skeleton(STANDING), np.array(GOLDEN[PoseClass.STANDING][1], dtype=float)
    for dy in (0, 500, 5000, 50000):
        moved, mb = transform(kp, b, 1.0, 0, dy)
        assert classify_pose(moved, mb) is PoseClass.STANDING


# --- missing / degenerate input -> unknown -----------------------------------------------------


def test_classify_pose_unknown_when_no_keypoint_visible():
    assert classify_pose(skeleton(STANDING, conf=0.1), (250, 20, 390, 470)) is PoseClass.UNKNOWN


def test_classify_pose_unknown_when_all_zero():
    assert classify_pose(np.zeros((17, 3)), np.zeros(4)) is PoseClass.UNKNOWN


def test_classify_pose_unknown_when_torso_missing():
    hidden = tuple(n for n in KEYPOINT_NAMES if "shoulder" in n or "hip" in n)
    assert classify_pose(skeleton(STANDING, hidden=hidden), (250, 20, 390, 470)) is PoseClass.UNKNOWN


def test_classify_pose_unknown_when_single_keypoint_and_no_box():
    kp = np.zeros((17, 3))
    kp[5] = (100, 100, 0.9)
    assert classify_pose(kp) is PoseClass.UNKNOWN


def test_classify_poses_ignores_nan_and_inf_when_present():
    kp = skeleton(STANDING)
    kp[:, 2] = np.nan
    kp2 = skeleton(STANDING)
    kp2[0, :2] = np.inf  # nose unusable: the other rules still decide
    kp3 = skeleton(STANDING)
    box_nan = np.array([np.nan, 0, 1, 1])
    with np.errstate(all="raise"):
        out = classify_poses(np.stack([kp, kp2, kp3]), np.stack([np.zeros(4), (250, 20, 390, 470), box_nan]))
    assert [POSE_CLASS_ORDER[i] for i in out] == [PoseClass.UNKNOWN, PoseClass.STANDING, PoseClass.STANDING]


def test_classify_poses_returns_empty_int32_when_no_persons():
    out = classify_poses(np.zeros((0, 17, 3)), np.zeros((0, 4)))
    assert out.shape == (0,) and out.dtype == np.int32


@pytest.mark.parametrize(
    ("keypoints", "boxes", "match"),
    [
        (np.zeros((17, 3)), np.zeros((1, 4)), "keypoints must have shape"),
        (np.zeros((2, 17, 2)), np.zeros((2, 4)), "keypoints must have shape"),
        (np.zeros((2, 17, 3)), np.zeros((3, 4)), "boxes must have shape"),
        (np.zeros((2, 17, 3)), np.zeros((2, 5)), "boxes must have shape"),
    ],
)
def test_classify_poses_raises_when_shapes_are_wrong(keypoints, boxes, match):
    with pytest.raises(ValueError, match=match):
        classify_poses(keypoints, boxes)


def test_classify_poses_matches_classify_pose_when_batched():
    cases = [(skeleton(p), np.asarray(b, float)) for p, b in GOLDEN.values()]
    cases.append((skeleton(CROUCHING, hidden=FACE), np.asarray(GOLDEN[PoseClass.CROUCHING][1], float)))
    out = classify_poses(np.stack([k for k, _ in cases]), np.stack([b for _, b in cases]))
    assert out.dtype == np.int32
    assert [POSE_CLASS_ORDER[i] for i in out] == [classify_pose(k, b) for k, b in cases]
    assert [POSE_CLASS_ORDER[i] for i in out] == [*GOLDEN, PoseClass.HIDING]


# --- each rule and its threshold ---------------------------------------------------------------


def _upright(**overrides: tuple[float, float]) -> np.ndarray:
    return skeleton({**STANDING, **overrides})


BOX = (250, 0, 390, 400)  # L = 400, so 1 px = 0.0025 L


@pytest.mark.parametrize(
    ("name", "keypoints", "expected"),
    [
        ("wrist 41 px above nose (0.1025 L)", _upright(left_wrist=(265, 9)), PoseClass.REACHING_UP),
        ("wrist 39 px above nose (0.0975 L)", _upright(left_wrist=(265, 11)), PoseClass.STANDING),
        (
            "torso 79 px (0.1975 L)",
            _upright(left_hip=(295, 179), right_hip=(345, 179), left_knee=(290, 350), right_knee=(350, 350)),
            PoseClass.CROUCHING,
        ),
        (
            "torso 81 px (0.2025 L)",
            _upright(left_hip=(295, 181), right_hip=(345, 181), left_knee=(290, 350), right_knee=(350, 350)),
            PoseClass.STANDING,
        ),
        ("knee 59 px below hip (0.1475 L)", _upright(left_knee=(290, 309), right_knee=(350, 309)), PoseClass.CROUCHING),
        ("knee 61 px below hip (0.1525 L)", _upright(left_knee=(290, 311), right_knee=(350, 311)), PoseClass.STANDING),
        ("ankles 101 px apart (0.2525 L)", _upright(left_ankle=(270, 450), right_ankle=(371, 450)), PoseClass.RUNNING),
        ("ankles 99 px apart (0.2475 L)", _upright(left_ankle=(270, 450), right_ankle=(369, 450)), PoseClass.STANDING),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_classify_pose_rule_threshold_when_just_above_or_below(name, keypoints, expected):
    assert classify_pose(keypoints, BOX) is expected


def test_classify_pose_reaching_up_wins_when_also_crouching():
    kp = skeleton({**CROUCHING, "left_wrist": (290, 100)})
    assert classify_pose(kp, (250, 90, 390, 365)) is PoseClass.REACHING_UP


def test_classify_pose_running_not_crawling_when_upright():
    assert classify_pose(skeleton(RUNNING), GOLDEN[PoseClass.RUNNING][1]) is PoseClass.RUNNING


@pytest.mark.parametrize("field", ["reaching_up_ratio", "crouch_torso_ratio", "running_ratio"])
def test_classify_pose_thresholds_are_configurable_when_rules_passed(field):
    # A huge ratio disables the rule: the golden case falls through to the next class.
    expected = {
        "reaching_up_ratio": PoseClass.REACHING_UP,
        "crouch_torso_ratio": PoseClass.STANDING,
        "running_ratio": PoseClass.RUNNING,
    }[field]
    points, box = GOLDEN[expected]
    rules = PoseRules(**{field: 100.0})
    assert classify_pose(skeleton(points), box) is expected
    got = classify_pose(skeleton(points), box, rules=rules)
    if field == "crouch_torso_ratio":  # everything is "compressed" now
        assert got is PoseClass.CROUCHING
    else:
        assert got is not expected


def test_classify_pose_keypoint_conf_is_configurable():
    kp = skeleton(STANDING, conf=0.5)
    assert classify_pose(kp, BOX) is PoseClass.STANDING
    assert classify_pose(kp, BOX, rules=PoseRules(keypoint_conf=0.6)) is PoseClass.UNKNOWN


# --- properties --------------------------------------------------------------------------------


@st.composite
def plausible_people(draw):
    template = draw(st.sampled_from([STANDING, CROUCHING, REACHING_UP, RUNNING, CRAWLING]))
    jitter = st.integers(-40, 40)
    points = {n: (x + draw(jitter), y + draw(jitter)) for n, (x, y) in template.items()}
    conf = np.array([draw(st.sampled_from([0.1, 0.9, 0.9, 0.9])) for _ in KEYPOINT_NAMES])
    kp = skeleton(points)
    kp[:, 2] = conf
    if draw(st.booleans()):
        box = np.zeros(4)
    else:
        box = np.array([kp[:, 0].min() - 10, kp[:, 1].min() - 15, kp[:, 0].max() + 10, kp[:, 1].max() + 15])
    return kp, box


# Dyadic scales (k/16) and integer shifts keep every coordinate exact in float64, so the ratios
# compared against the thresholds are bit-identical: the property cannot flip at a boundary.
@settings(max_examples=300, deadline=None)
@given(
    person=plausible_people(),
    k=st.integers(4, 64),
    dx=st.integers(-5000, 5000),
    dy=st.integers(-5000, 5000),
)
def test_classify_pose_invariant_when_scaled_and_translated(person, k, dx, dy):
    kp, box = person
    moved_kp, moved_box = transform(kp, box, k / 16, dx, dy)
    if not box.any():
        moved_box = np.zeros(4)
    assert classify_pose(moved_kp, moved_box) is classify_pose(kp, box)


@settings(max_examples=100, deadline=None)
@given(person=plausible_people())
def test_classify_poses_never_crashes_when_keypoints_are_random(person):
    kp, box = person
    out = classify_poses(kp[None], box[None])
    assert 0 <= out[0] < len(POSE_CLASS_ORDER)


# --- suspicious mask, confidence, rules parsing ------------------------------------------------


def test_suspicious_mask_matches_pose_class_when_indexed():
    idx = np.arange(len(POSE_CLASS_ORDER), dtype=np.int32)
    assert suspicious_mask(idx).tolist() == [c.is_suspicious for c in POSE_CLASS_ORDER]
    assert suspicious_mask(np.zeros(0, np.int32)).shape == (0,)


@pytest.mark.parametrize("bad", [[-1], [len(POSE_CLASS_ORDER)]])
def test_suspicious_mask_raises_when_index_out_of_range(bad):
    with pytest.raises(ValueError, match="pose class indices"):
        suspicious_mask(np.array(bad))


def test_pose_confidences_is_mean_keypoint_confidence():
    kp = skeleton(STANDING, conf=0.5)[None].repeat(2, axis=0)
    kp[1, :, 2] = np.nan
    assert pose_confidences(kp).tolist() == [0.5, 0.0]


def test_pose_rules_from_mapping_parses_strings():
    rules = PoseRules.from_mapping({"keypoint_conf": "0.4", "running_ratio": " 0.5 "})
    assert rules.keypoint_conf == 0.4 and rules.running_ratio == 0.5
    assert rules.crouch_torso_ratio == DEFAULT_POSE_RULES.crouch_torso_ratio
    assert PoseRules.from_mapping(DEFAULT_POSE_RULES.to_mapping()) == DEFAULT_POSE_RULES


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"keypoint_confidence": "0.3"}, "unknown pose rule parameter 'keypoint_confidence'"),
        ({"running_ratio": "fast"}, "'running_ratio' must be a number, got 'fast'"),
        ({"running_ratio": "nan"}, "running_ratio must be a finite number"),
        ({"running_ratio": "0"}, "running_ratio must be > 0"),
        ({"crawling_ratio": "-0.1"}, "crawling_ratio must be > 0"),
        ({"keypoint_conf": "1.0"}, r"keypoint_conf must be in \[0, 1\)"),
        ({"keypoint_conf": "-0.1"}, r"keypoint_conf must be in \[0, 1\)"),
    ],
)
def test_pose_rules_from_mapping_raises_when_invalid(params, match):
    with pytest.raises(ValueError, match=match):
        PoseRules.from_mapping(params)


def test_pose_rules_is_frozen():
    with pytest.raises(AttributeError):
        DEFAULT_POSE_RULES.keypoint_conf = 0.5  # type: ignore[misc]
