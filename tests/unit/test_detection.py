"""Detection/pose postprocessing against Ultralytics' own NMS and scaling, plus padding helpers.

Oracle: ``ultralytics.utils.nms.non_max_suppression`` then ``ops.scale_boxes`` /
``ops.scale_coords`` on the same raw tensors (``torch.from_numpy``), with torchvision's stable tie
order (see ``tests/_ultralytics_oracle.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _ultralytics_oracle import stable_nms_function

from enrichment_light.client.decoding import decode_poses, pose_results_of
from enrichment_light.client.results import POSE_CLASS_ORDER, PoseResult
from enrichment_light.core.contract import (
    BOXES,
    CLASS_IDS,
    KEYPOINTS,
    MAX_DETECTIONS,
    NUM_DETECTIONS,
    POSE_CLASS,
    POSE_CONFIDENCE,
    SCORES,
    SUSPICIOUS,
    model_spec,
)
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.processing import pose_rules
from enrichment_light.core.processing.detection import (
    POSE_FIELDS,
    Detections,
    nms,
    pad_detections,
    pad_pose,
    pad_rows,
    pose_detections,
    postprocess_detections,
    postprocess_pose,
    split_batch,
    unpad_detections,
    unpad_pose,
)
from enrichment_light.core.processing.image import LetterboxInfo

A = 8400


@pytest.fixture(scope="module")
def oracle():
    from ultralytics.utils import nms as unms
    from ultralytics.utils import ops

    original, stable_nms = stable_nms_function()

    def run(raw, shapes, *, conf=0.25, iou=0.7, max_det=300, agnostic=False, nc=0, pose=False, stable=True,
            img1_shapes=None):  # fmt: skip
        unms.TorchNMS.nms = staticmethod(stable_nms if stable else original)
        preds = unms.non_max_suppression(
            torch.from_numpy(raw.copy()), conf, iou, agnostic=agnostic, max_det=max_det, nc=nc, max_time_img=1e4
        )
        out = []
        for raw_pred, shape, img1 in zip(preds, shapes, img1_shapes or [(640, 640)] * len(shapes), strict=True):
            pred = raw_pred.clone()
            pred[:, :4] = ops.scale_boxes(img1, pred[:, :4], shape)
            kpts = None
            if pose:
                kpts = ops.scale_coords(img1, pred[:, 6:].view(pred.shape[0], 17, 3), shape).numpy()
            out.append((pred.numpy(), kpts))
        return out

    yield run
    unms.TorchNMS.nms = original


def make_raw(
    rng: np.random.Generator,
    batch: int,
    nc: int,
    *,
    above: int,
    extra: int = 0,
    anchors: int = A,
    score_levels: int | None = None,
    edge: bool = False,
) -> np.ndarray:
    """Random head output with `above` anchors per image scoring above 0.25 (unique unless score_levels)."""
    lo, hi = (-150.0, 790.0) if edge else (0.0, 640.0)
    xy = rng.uniform(lo, hi, (batch, 2, anchors))
    wh = rng.uniform(2.0, 400.0 if edge else 250.0, (batch, 2, anchors))
    cls = rng.uniform(0.0, 0.2, (batch, nc, anchors))
    for b in range(batch):
        idx = rng.choice(anchors, above, replace=False)
        if score_levels:
            scores = rng.choice(np.linspace(0.3, 0.9, score_levels), above)
        else:
            scores = 0.26 + 0.7 * rng.permutation(above) / max(above, 1)  # distinct in float32
        cls[b, rng.integers(0, nc, above), idx] = scores
    parts = [xy, wh, cls]
    if extra:
        kpts = rng.uniform(-50.0, 690.0, (batch, extra, anchors))
        kpts[:, 2::3] = rng.uniform(0.0, 1.0, (batch, extra // 3, anchors))
        parts.append(kpts)
    return np.concatenate(parts, axis=1).astype(np.float32)


def infos_for(shapes):
    return [LetterboxInfo.for_shape(h, w) for h, w in shapes]


def assert_detections_match(ours: list[Detections], reference) -> None:
    assert len(ours) == len(reference)
    for det, (ref, _) in zip(ours, reference, strict=True):
        assert len(det) == ref.shape[0]
        np.testing.assert_allclose(det.xyxy, ref[:, :4], atol=1e-3, rtol=0)
        np.testing.assert_array_equal(det.scores, ref[:, 4])
        np.testing.assert_array_equal(det.class_ids, ref[:, 5].astype(np.int32))


DETECT_CASES = [
    # id, batch, nc, agnostic, above, shapes
    ("single_class", 1, 1, False, 60, [(1080, 1920)]),
    ("coco_class_aware", 1, 80, False, 300, [(480, 640)]),
    ("coco_agnostic", 1, 80, True, 300, [(480, 640)]),
    ("three_classes_batch5", 5, 3, False, 150, [(1080, 1920), (1920, 1080), (1, 5000), (333, 777), (640, 640)]),
    ("three_classes_agnostic_batch5", 5, 3, True, 150, [(100, 50), (720, 1280), (5000, 3), (479, 641), (17, 19)]),
    ("thousands_above_conf", 1, 2, False, 3000, [(1080, 1920)]),
]


@pytest.mark.parametrize(
    ("batch", "nc", "agnostic", "above", "shapes"), [c[1:] for c in DETECT_CASES], ids=[c[0] for c in DETECT_CASES]
)
def test_postprocess_detections_matches_ultralytics_when_candidates_vary(
    oracle, batch, nc, agnostic, above, shapes
) -> None:
    rng = np.random.default_rng(batch * 1000 + nc * 10 + above + agnostic)
    raw = make_raw(rng, batch, nc, above=above)
    ours = postprocess_detections(raw, infos_for(shapes), conf=0.25, iou=0.7, agnostic=agnostic)
    assert_detections_match(ours, oracle(raw, shapes, agnostic=agnostic))
    # No ties here, so stock Ultralytics (unstable sort) agrees too.
    assert_detections_match(ours, oracle(raw, shapes, agnostic=agnostic, stable=False))


def test_postprocess_detections_returns_empty_when_no_candidate_is_above_conf(oracle) -> None:
    raw = make_raw(np.random.default_rng(1), 2, 4, above=0)
    ours = postprocess_detections(raw, infos_for([(480, 640), (640, 480)]))
    assert [len(d) for d in ours] == [0, 0]
    assert ours[0].xyxy.shape == (0, 4) and ours[0].scores.dtype == np.float32
    assert_detections_match(ours, oracle(raw, [(480, 640), (640, 480)]))


def test_postprocess_detections_excludes_score_equal_to_conf_when_filtering(oracle) -> None:
    raw = make_raw(np.random.default_rng(2), 1, 2, above=0)
    raw[0, 4, :5] = np.float32(0.25)  # not strictly above conf
    raw[0, 5, 5:8] = np.float32(0.2500001)
    ours = postprocess_detections(raw, infos_for([(640, 640)]), conf=0.25)
    assert len(ours[0]) == 3
    assert_detections_match(ours, oracle(raw, [(640, 640)]))


@pytest.mark.parametrize("agnostic", [False, True])
def test_postprocess_detections_orders_ties_by_anchor_when_scores_are_equal(oracle, agnostic: bool) -> None:
    rng = np.random.default_rng(3)
    raw = make_raw(rng, 2, 3, above=800, score_levels=4)
    shapes = [(720, 1280), (1280, 720)]
    ours = postprocess_detections(raw, infos_for(shapes), agnostic=agnostic)
    assert_detections_match(ours, oracle(raw, shapes, agnostic=agnostic))
    assert sum(len(d) for d in ours) > 0
    for det in ours:
        assert np.all(np.diff(det.scores) <= 0)


def test_postprocess_detections_keeps_lower_anchor_when_equal_scores_overlap() -> None:
    raw = np.zeros((1, 5, 10), np.float32)
    raw[0, :4, 3] = raw[0, :4, 7] = [320, 320, 100, 100]  # identical boxes, equal scores
    raw[0, 4, [3, 7]] = 0.8
    det = postprocess_detections(raw, infos_for([(640, 640)]))[0]
    assert len(det) == 1
    np.testing.assert_allclose(det.xyxy, [[270, 270, 370, 370]])


def test_postprocess_detections_clips_to_image_when_boxes_cross_the_edge(oracle) -> None:
    rng = np.random.default_rng(4)
    raw = make_raw(rng, 2, 2, above=400, edge=True)
    shapes = [(1080, 1920), (300, 200)]
    ours = postprocess_detections(raw, infos_for(shapes))
    assert_detections_match(ours, oracle(raw, shapes))
    for det, (h, w) in zip(ours, shapes, strict=True):
        assert det.xyxy[:, [0, 2]].min() >= 0 and det.xyxy[:, [0, 2]].max() <= w
        assert det.xyxy[:, [1, 3]].min() >= 0 and det.xyxy[:, [1, 3]].max() <= h
        assert (det.xyxy[:, [0, 2]] == w).any() or (det.xyxy[:, [0, 1]] == 0).any()


@pytest.mark.parametrize(("conf", "iou", "max_det"), [(0.5, 0.45, 300), (0.1, 0.9, 7), (0.25, 0.0, 300), (0.9, 1.0, 1)])
def test_postprocess_detections_matches_ultralytics_when_thresholds_change(oracle, conf, iou, max_det) -> None:
    raw = make_raw(np.random.default_rng(5), 2, 5, above=500)
    shapes = [(480, 640), (1000, 10)]
    ours = postprocess_detections(raw, infos_for(shapes), conf=conf, iou=iou, max_det=max_det)
    assert_detections_match(ours, oracle(raw, shapes, conf=conf, iou=iou, max_det=max_det))
    assert all(len(d) <= max_det for d in ours)


def test_postprocess_detections_accepts_letterbox_info_array_when_given_wire_tensor(oracle) -> None:
    raw = make_raw(np.random.default_rng(6), 3, 2, above=100)
    shapes = [(480, 640), (777, 333), (1, 1)]
    wire = np.stack([i.to_array() for i in infos_for(shapes)])
    assert_detections_match(postprocess_detections(raw, wire), oracle(raw, shapes))


def test_postprocess_detections_accepts_float16_when_raw_is_half(oracle) -> None:
    raw = make_raw(np.random.default_rng(7), 1, 3, above=200).astype(np.float16)
    ours = postprocess_detections(raw, infos_for([(480, 640)]))
    assert_detections_match(ours, oracle(raw.astype(np.float32), [(480, 640)]))


# --- pose -----------------------------------------------------------------------------------


POSE_CASES = [
    ("batch1_few", 1, 40, [(1080, 1920)], False),
    ("batch5_non_square", 5, 120, [(1080, 1920), (1920, 1080), (333, 777), (64, 48), (2000, 30)], False),
    ("thousands_above_conf", 1, 2500, [(720, 1280)], False),
    ("edges", 2, 200, [(480, 640), (100, 1000)], True),
]


@pytest.mark.parametrize(
    ("batch", "above", "shapes", "edge"), [c[1:] for c in POSE_CASES], ids=[c[0] for c in POSE_CASES]
)
def test_postprocess_pose_matches_ultralytics_when_candidates_vary(oracle, batch, above, shapes, edge) -> None:
    rng = np.random.default_rng(batch * 100 + above)
    raw = make_raw(rng, batch, 1, above=above, extra=51, edge=edge)
    ours = postprocess_pose(raw, infos_for(shapes), conf=0.25, iou=0.7, max_det=300)
    reference = oracle(raw, shapes, nc=1, pose=True)
    for det, (ref, ref_kpts), (h, w) in zip(ours, reference, shapes, strict=True):
        assert isinstance(det, Detections) and len(det) == ref.shape[0]
        np.testing.assert_allclose(det.xyxy, ref[:, :4], atol=1e-3, rtol=0)
        np.testing.assert_array_equal(det.scores, ref[:, 4])
        np.testing.assert_allclose(det.keypoints[..., :2], ref_kpts[..., :2], atol=1e-3, rtol=0)
        np.testing.assert_array_equal(det.keypoints[..., 2], ref_kpts[..., 2])  # confidences untouched
        assert det.keypoints[..., 0].max(initial=0) <= w and det.keypoints[..., 1].max(initial=0) <= h
        assert det.keypoints[..., :2].min(initial=0) >= 0  # Ultralytics clips keypoints too
        expected_classes = pose_rules.classify_poses(ref_kpts, ref[:, :4])
        np.testing.assert_array_equal(det.pose_class, expected_classes)
        np.testing.assert_array_equal(det.suspicious, pose_rules.suspicious_mask(expected_classes))
        np.testing.assert_allclose(det.pose_confidence, ref_kpts[..., 2].mean(axis=1), atol=1e-6)


RECT_SHAPES = [(1080, 810), (720, 1280), (1080, 1920), (333, 777), (2000, 30), (479, 641)]


@pytest.mark.parametrize("shape", RECT_SHAPES, ids=[f"{h}x{w}" for h, w in RECT_SHAPES])
def test_postprocess_pose_matches_ultralytics_rect_path_when_letterbox_is_a_stride_32_rectangle(oracle, shape):
    info = LetterboxInfo.for_shape(*shape, auto=True)
    img1 = info.output_shape(auto=True)  # the rect letterbox Ultralytics' predictor feeds, e.g. 640x480
    anchors = img1[0] * img1[1] * 21 // 1024
    rng = np.random.default_rng(shape[0] + shape[1])
    raw = make_raw(rng, 1, 1, above=min(150, anchors), extra=51, anchors=anchors)
    raw[:, [0, 2]] *= img1[1] / 640  # keep the candidates inside the rect
    raw[:, [1, 3]] *= img1[0] / 640
    (det,) = postprocess_pose(raw, [info], conf=0.25, iou=0.7, max_det=300)
    ((ref, ref_kpts),) = oracle(raw, [shape], nc=1, pose=True, img1_shapes=[img1])
    assert len(det) == ref.shape[0] > 0
    np.testing.assert_allclose(det.xyxy, ref[:, :4], atol=1e-3, rtol=0)
    np.testing.assert_array_equal(det.scores, ref[:, 4])
    np.testing.assert_allclose(det.keypoints[..., :2], ref_kpts[..., :2], atol=1e-3, rtol=0)


@pytest.mark.parametrize("shape", RECT_SHAPES, ids=[f"{h}x{w}" for h, w in RECT_SHAPES])
def test_postprocess_detections_matches_ultralytics_rect_path_when_letterbox_is_a_stride_32_rectangle(oracle, shape):
    info = LetterboxInfo.for_shape(*shape, auto=True)
    img1 = info.output_shape(auto=True)
    anchors = img1[0] * img1[1] * 21 // 1024
    raw = make_raw(np.random.default_rng(shape[1]), 1, 4, above=min(200, anchors), anchors=anchors)
    ours = postprocess_detections(raw, [info], conf=0.25, iou=0.7)
    assert_detections_match(ours, oracle(raw, [shape], nc=4, img1_shapes=[img1]))


def test_postprocess_pose_returns_empty_when_no_person_is_above_conf() -> None:
    raw = make_raw(np.random.default_rng(8), 3, 1, above=0, extra=51)
    ours = postprocess_pose(raw, infos_for([(10, 10)] * 3))
    assert [len(p) for p in ours] == [0, 0, 0]
    assert ours[0].keypoints.shape == (0, 17, 3) and pose_results_of(ours[0]) == []


def test_postprocess_pose_orders_ties_by_anchor_when_scores_are_equal(oracle) -> None:
    raw = make_raw(np.random.default_rng(9), 1, 1, above=600, extra=51, score_levels=3)
    shapes = [(1080, 1920)]
    det = postprocess_pose(raw, infos_for(shapes))[0]
    ref, ref_kpts = oracle(raw, shapes, nc=1, pose=True)[0]
    assert len(det) == ref.shape[0]
    np.testing.assert_allclose(det.xyxy, ref[:, :4], atol=1e-3, rtol=0)
    np.testing.assert_allclose(det.keypoints[..., :2], ref_kpts[..., :2], atol=1e-3, rtol=0)


def test_postprocess_pose_uses_given_rules_when_rules_are_passed() -> None:
    raw = make_raw(np.random.default_rng(10), 1, 1, above=30, extra=51)
    info = infos_for([(640, 640)])
    default = postprocess_pose(raw, info)[0]
    strict = pose_rules.PoseRules(keypoint_conf=0.999)  # nothing visible -> unknown
    custom = postprocess_pose(raw, info, rules=strict)[0]
    unknown = POSE_CLASS_ORDER.index(pose_rules.PoseClass.UNKNOWN)
    assert (custom.pose_class == unknown).all()
    np.testing.assert_array_equal(custom.xyxy, default.xyxy)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"conf": 1.5}, "conf threshold must be a number in"),
        ({"conf": -0.1}, "conf threshold must be a number in"),
        ({"iou": float("nan")}, "iou threshold must be a number in"),
        ({"iou": "0.5"}, "iou threshold must be a number in"),
        ({"max_det": 0}, "max_det must be a positive integer"),
        ({"max_det": 2.5}, "max_det must be a positive integer"),
    ],
    ids=["conf_high", "conf_negative", "iou_nan", "iou_str", "max_det_zero", "max_det_float"],
)
def test_postprocess_detections_refuses_when_option_is_invalid(kwargs, fragment) -> None:
    raw = np.zeros((1, 6, 10), np.float32)
    with pytest.raises(InvalidInputError, match=fragment):
        postprocess_detections(raw, infos_for([(10, 10)]), **kwargs)


@pytest.mark.parametrize(
    ("raw", "infos", "fragment"),
    [
        (np.zeros((6, 10), np.float32), [(10, 10)], r"must have shape \[N, C, anchors\]"),
        (np.zeros((1, 4, 10), np.float32), [(10, 10)], "needs 4 box \\+ at least 1 class channel"),
        (np.zeros((1, 6, 10), np.int32), [(10, 10)], "must be floating point"),
        (np.zeros((2, 6, 10), np.float32), [(10, 10)], "got 1 letterbox infos for a batch of 2"),
    ],
    ids=["2d", "no_classes", "int", "infos_mismatch"],
)
def test_postprocess_detections_refuses_when_input_is_malformed(raw, infos, fragment) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        postprocess_detections(raw, infos_for(infos))


def test_postprocess_pose_refuses_when_channels_are_not_56() -> None:
    with pytest.raises(InvalidInputError, match="raw pose output must have 56 channels"):
        postprocess_pose(np.zeros((1, 84, 10), np.float32), infos_for([(10, 10)]))


def test_postprocess_detections_refuses_when_info_array_has_wrong_shape() -> None:
    with pytest.raises(InvalidInputError, match=r"letterbox info must have shape \[2, 5\]"):
        postprocess_detections(np.zeros((2, 6, 10), np.float32), np.zeros((3, 5), np.float32))


# --- nms ------------------------------------------------------------------------------------


def test_nms_matches_torchnms_when_boxes_are_random_and_many() -> None:
    from ultralytics.utils.nms import TorchNMS

    rng = np.random.default_rng(11)
    xy = rng.uniform(0, 640, (3000, 2)).astype(np.float32)
    wh = rng.uniform(5, 120, (3000, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.permutation(3000).astype(np.float32) / 3000
    for threshold in (0.3, 0.7):
        expected = TorchNMS.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, threshold), expected)  # > matrix limit
        np.testing.assert_array_equal(
            nms(boxes[:500], scores[:500], threshold),
            TorchNMS.nms(torch.from_numpy(boxes[:500]), torch.from_numpy(scores[:500]), threshold).numpy(),
        )
        np.testing.assert_array_equal(nms(boxes, scores, threshold, max_keep=10), expected[:10])


def test_nms_returns_empty_when_there_are_no_boxes() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)


# --- padding --------------------------------------------------------------------------------


def _pose_detections(k: int, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 500, (k, 2))
    kpts = rng.uniform(0, 600, (k, 17, 3))
    kpts[..., 2] = rng.uniform(0, 1, (k, 17))
    classes = rng.integers(0, len(POSE_CLASS_ORDER), k)
    return pose_detections(
        xyxy=np.concatenate([xy, xy + 50], axis=1),
        scores=np.sort(rng.uniform(0.3, 1, k))[::-1],
        keypoints=kpts,
        pose_class=classes,
        pose_confidence=kpts[..., 2].mean(axis=1),
        suspicious=pose_rules.suspicious_mask(classes),
    )


def test_pad_pose_matches_contract_when_padded() -> None:
    padded = pad_pose(_pose_detections(3))
    spec = model_spec("pose_postprocess")
    for out in spec.outputs:
        assert padded[out.name].dtype == out.dtype, out.name
        assert padded[out.name].shape == out.shape, out.name
    assert padded[NUM_DETECTIONS].tolist() == [3]
    assert not padded[SCORES][3:].any() and (padded[POSE_CLASS][3:] == -1).all() and not padded[SUSPICIOUS][3:].any()


def test_unpad_pose_round_trips_when_padded_then_unpadded() -> None:
    poses = _pose_detections(5)
    back = unpad_pose(pad_pose(poses))
    for name in ("xyxy", "scores", "keypoints", "pose_class", "pose_confidence", "suspicious"):
        np.testing.assert_array_equal(getattr(back, name), getattr(poses, name))


def test_pad_pose_keeps_best_rows_when_more_than_max_det() -> None:
    poses = _pose_detections(MAX_DETECTIONS + 20)
    padded = pad_pose(poses)
    assert padded[NUM_DETECTIONS].tolist() == [MAX_DETECTIONS]
    np.testing.assert_array_equal(padded[SCORES], poses.scores[:MAX_DETECTIONS])


def test_pose_results_builds_typed_results_when_outputs_are_padded() -> None:
    poses = _pose_detections(4)
    results = decode_poses(pad_pose(poses))
    assert len(results) == 4 and all(isinstance(r, PoseResult) for r in results)
    first = results[0]
    assert first.pose_class is POSE_CLASS_ORDER[poses.pose_class[0]]
    assert first.is_suspicious == bool(poses.suspicious[0])
    assert first.keypoints[0].name == "nose" and first.keypoints[16].name == "right_ankle"
    assert first.keypoints[5].x == pytest.approx(float(poses.keypoints[0, 5, 0]))
    assert first.bbox == pytest.approx(tuple(poses.xyxy[0].tolist()))
    assert first.score == pytest.approx(float(poses.scores[0]))
    assert first.confidence == pytest.approx(float(poses.pose_confidence[0]))
    assert PoseResult.from_dict(first.to_dict()) == first


def test_pose_results_is_empty_when_count_is_zero() -> None:
    assert decode_poses(pad_pose(Detections.empty(*POSE_FIELDS))) == []


def test_pad_detections_round_trips_when_padded_then_unpadded() -> None:
    det = Detections(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([0.9, 0.4]), np.array([3, 0]))
    padded = pad_detections(det)
    assert padded[NUM_DETECTIONS].tolist() == [2] and padded[BOXES].shape == (MAX_DETECTIONS, 4)
    assert padded[CLASS_IDS].dtype == np.int32 and (padded[CLASS_IDS][2:] == -1).all()
    back = unpad_detections(padded)
    np.testing.assert_array_equal(back.xyxy, det.xyxy)
    np.testing.assert_array_equal(back.scores, det.scores)
    np.testing.assert_array_equal(back.class_ids, det.class_ids)
    assert len(unpad_detections(pad_detections(Detections.empty(), 5))) == 0


def test_split_batch_yields_one_dict_per_image_when_outputs_are_batched() -> None:
    batched = {
        name: np.stack([pad_pose(_pose_detections(k, k))[name] for k in (0, 2, 7)])
        for name in pad_pose(_pose_detections(1))
    }
    per_image = split_batch(batched)
    assert [len(unpad_pose(p)) for p in per_image] == [0, 2, 7]
    assert per_image[1][KEYPOINTS].shape == (MAX_DETECTIONS, 17, 3)
    assert per_image[2][POSE_CONFIDENCE].shape == (MAX_DETECTIONS,)


def test_split_batch_refuses_when_batch_sizes_differ() -> None:
    with pytest.raises(InvalidInputError, match="must share one batch size"):
        split_batch({NUM_DETECTIONS: np.zeros((2, 1)), SCORES: np.zeros((3, 100))})


@pytest.mark.parametrize(
    ("count", "fragment"),
    [(-1, r"must be in \[0, 100\]"), (101, r"must be in \[0, 100\]")],
)
def test_unpad_pose_refuses_when_count_is_out_of_range(count: int, fragment: str) -> None:
    padded = pad_pose(_pose_detections(2))
    padded[NUM_DETECTIONS] = np.array([count], np.int32)
    with pytest.raises(InvalidInputError, match=fragment):
        unpad_pose(padded)


def test_pad_rows_pads_with_fill_when_short() -> None:
    out = pad_rows(np.ones((2, 3), np.int32), 4, fill=-1)
    assert out.tolist() == [[1, 1, 1], [1, 1, 1], [-1, -1, -1], [-1, -1, -1]]
    assert pad_rows(np.arange(5), 3).tolist() == [0, 1, 2]


def test_detections_reads_data_keys_as_items_and_attributes_when_pose_fields_are_set() -> None:
    poses = _pose_detections(3)
    assert poses["pose_class"] is poses.pose_class is poses.data["pose_class"]
    assert poses["pose_confidence"] is poses.pose_confidence
    with pytest.raises(AttributeError, match="no field or data key 'severity'"):
        _ = poses.severity


def test_detections_selects_rows_of_every_field_when_indexed_by_mask() -> None:
    poses = _pose_detections(4)
    picked = poses[poses.scores > np.median(poses.scores)]
    assert len(picked) == 2
    np.testing.assert_array_equal(picked.keypoints, poses.keypoints[:2])
    np.testing.assert_array_equal(picked.xyxy, poses.xyxy[:2])


@pytest.mark.parametrize(
    ("data", "message"),
    [({"keypoints": np.zeros((2, 17, 2))}, r"data\['keypoints'\] must have shape \(2, 17, 3\)"),
     ({"pose_class": np.array([0, 99])}, r"data\['pose_class'\] must index 0..6, got 0..99"),
     ({"severity": np.array([5, 1])}, r"data\['severity'\] must index 0..4"),
     ({"extra": np.zeros(3)}, r"data\['extra'\] must have 2 rows")],
)  # fmt: skip
def test_detections_raises_naming_the_key_when_data_is_invalid(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros(2), data)
