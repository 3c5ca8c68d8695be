"""Pure serving adapters (enrichment_light.serving): parameters, request checks, per-request errors, runner."""

from __future__ import annotations

import re
import types
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from enrichment_light.core import contract as ct
from enrichment_light.core import params
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.processing.detection import pad_pose, postprocess_pose
from enrichment_light.serving import pipeline
from enrichment_light.serving.onnxruntime_runner import OnnxRuntimeRunner
from enrichment_light.serving.triton import guard, to_responses


def _jpeg(h: int = 48, w: int = 64) -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _bytes_tensor(*items: bytes) -> np.ndarray:
    return np.array([[b] for b in items], dtype=np.object_)


# --------------------------------------------------------------------------------------------- params


def test_parameters_flattens_string_values_when_config_has_parameters():
    config = {"parameters": {"a": {"string_value": "1"}, "b": {"string_value": "x"}}}
    assert params.parameters(config) == {"a": "1", "b": "x"}
    assert params.parameters({}) == {}


@pytest.mark.parametrize(
    ("fn", "value", "message"),
    [
        (lambda p: params.get_float(p, "k", 0.5, low=0, high=1), "1.5", "in \\[0, 1\\]"),
        (lambda p: params.get_float(p, "k", 0.5), "abc", "must be a number"),
        (lambda p: params.get_float(p, "k", 0.5), "nan", "finite"),
        (lambda p: params.get_int(p, "k", 1, low=1), "0", ">= 1"),
        (lambda p: params.get_int(p, "k", 1), "1.5", "integer"),
        (lambda p: params.get_json(p, "k", None), "[1,", "JSON"),
        (lambda p: params.get_bool(p, "k", True), "maybe", "boolean"),
    ],
)
def test_params_raise_value_error_naming_key_when_value_is_invalid(fn, value, message):
    with pytest.raises(ValueError, match=message):
        fn({"k": value})


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [(None, True, True), ("", False, False), ("1", False, True), ("ON", False, True), (" yes ", False, True),
     ("0", True, False), ("off", True, False), ("False", True, False)],
)  # fmt: skip
def test_get_bool_reads_every_spelling_when_value_is_a_boolean_word(value, default, expected):
    p = {} if value is None else {"k": value}
    assert params.get_bool(p, "k", default) is expected


def test_pose_settings_read_prefixed_rules_when_built_from_enrich_parameters():
    s = pipeline.PoseSettings.from_parameters(
        {"pose_conf_threshold": "0.3", "pose_rule_running_ratio": "0.4", "pose_kpt_shape": "[17, 3]"}, "pose_"
    )
    assert s.conf == 0.3
    assert s.rules.running_ratio == 0.4
    with pytest.raises(ValueError, match="kpt_shape"):
        pipeline.PoseSettings.from_parameters({"kpt_shape": "[5, 3]"})


def test_threat_settings_resolve_taxonomy_and_list_unmapped_names_when_loaded():
    s = pipeline.ThreatSettings.from_parameters({"class_names": '["gun", "drone", "person"]'})
    assert s.mapping.threat_type.tolist()[0] == "gun"
    assert "drone" in s.mapping.unmapped
    with pytest.raises(ValueError, match="class_names"):
        pipeline.ThreatSettings.from_parameters({})


# --------------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("conf", "iou", "message"),
    [
        (np.array([[1.5]], np.float32), None, "CONF_THRESHOLD must be in"),
        (None, np.array([[np.nan]], np.float32), "IOU_THRESHOLD must be in"),
        (np.array([[0.5]], np.float64), None, "must be float32"),
        (np.array([[0.5, 0.5]], np.float32), None, "shape"),
    ],
)
def test_thresholds_raise_invalid_input_when_override_is_bad(conf, iou, message):
    with pytest.raises(InvalidInputError, match=message):
        pipeline.thresholds(conf, iou, 1, 0.5, 0.7)


def test_thresholds_use_defaults_when_overrides_are_absent():
    conf, iou = pipeline.thresholds(None, np.array([[0.4], [0.6]], np.float32), 2, 0.5, 0.7)
    assert conf.tolist() == [0.5, 0.5]
    np.testing.assert_allclose(iou, [0.4, 0.6])


def test_preprocess_batch_returns_error_only_for_bad_request_when_batch_is_mixed():
    results = pipeline.preprocess_batch(
        [_bytes_tensor(_jpeg()), _bytes_tensor(b""), _bytes_tensor(_jpeg(), _jpeg(100, 50))], max_pixels=10_000
    )
    assert results[0][ct.IMAGES].shape == (1, 640, 640, 3)
    assert isinstance(results[1], InvalidInputError)
    assert "empty image" in str(results[1])
    assert results[2][ct.LETTERBOX_INFO].tolist()[1][:2] == [100, 50]


def test_preprocess_batch_refuses_image_when_it_exceeds_max_pixels():
    (result,) = pipeline.preprocess_batch([_bytes_tensor(_jpeg(200, 200))], max_pixels=100)
    assert "too large" in str(result)


def test_preprocess_batch_refuses_bad_threshold_before_decoding_when_override_is_out_of_range(monkeypatch):
    decoded = []
    monkeypatch.setattr(pipeline, "decode_and_letterbox_all", lambda *a: decoded.append(a) or pytest.fail("decoded"))
    bad = pipeline.PreprocessInput(_bytes_tensor(_jpeg()), conf=np.array([[1.5]], np.float32))
    (result,) = pipeline.preprocess_batch([bad], max_pixels=10_000)
    assert isinstance(result, InvalidInputError)
    assert "CONF_THRESHOLD must be in [0, 1]" in str(result)
    assert decoded == []


def test_preprocess_batch_serves_good_request_when_batch_also_has_bad_iou():
    good = pipeline.PreprocessInput(_bytes_tensor(_jpeg()), iou=np.array([[0.4]], np.float32))
    bad = pipeline.PreprocessInput(_bytes_tensor(_jpeg()), iou=np.array([[np.nan]], np.float32))
    results = pipeline.preprocess_batch([good, bad], max_pixels=10_000)
    assert results[0][ct.IMAGES].shape[0] == 1
    assert "IOU_THRESHOLD must be in [0, 1]" in str(results[1])


def test_preprocess_batch_gives_minimal_rectangle_when_letterbox_mode_is_rect():
    (result,) = pipeline.preprocess_batch([_bytes_tensor(_jpeg(480, 640), _jpeg(480, 640))], max_pixels=10**6,
                                          letterbox_mode="rect")  # fmt: skip
    assert result[ct.IMAGES].shape == (2, 480, 640, 3)
    assert result[ct.LETTERBOX_INFO][0].tolist() == [480, 640, 1.0, 0, 0]


def test_preprocess_batch_falls_back_to_square_when_a_request_mixes_frame_shapes():
    (result,) = pipeline.preprocess_batch([_bytes_tensor(_jpeg(480, 640), _jpeg(640, 480))], max_pixels=10**6,
                                          letterbox_mode="rect")  # fmt: skip
    assert result[ct.IMAGES].shape == (2, 640, 640, 3)  # as Ultralytics: auto only when all shapes agree
    assert result[ct.LETTERBOX_INFO][:, 4].tolist() == [80, 0]


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 320, 330, 3), "multiples of 32"), ((1, 672, 640, 3), "in [32, 640]"), ((1, 640, 640), "shape")],
)
def test_check_detector_images_refuses_when_size_is_outside_the_contract(shape, message):
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        pipeline.check_detector_images(np.zeros(shape, np.uint8))


def test_check_detector_images_accepts_only_fixed_size_when_onnx_is_static():
    pipeline.check_detector_images(np.zeros((2, 640, 640, 3), np.uint8), (640, 640))
    with pytest.raises(InvalidInputError, match="fixed input size"):
        pipeline.check_detector_images(np.zeros((1, 640, 480, 3), np.uint8), (640, 640))


def test_letterbox_mode_from_parameters_refuses_when_value_is_unknown():
    assert pipeline.letterbox_mode_from_parameters({}) == "rect"
    assert pipeline.letterbox_mode_from_parameters({"letterbox": "Square"}) == "square"
    with pytest.raises(ValueError, match="'letterbox' must be one of"):
        pipeline.letterbox_mode_from_parameters({"letterbox": "stretch"})


def _fused(requests, calls):
    def run(batches):
        calls.extend(b.shape for b in batches)
        return [np.zeros((b.shape[0], ct.POSE_RAW_CHANNELS, b.shape[1] * b.shape[2] * 21 // 1024), np.float32)
                for b in batches]  # fmt: skip

    return pipeline.fused_detect_batch(
        requests,
        run=run,
        postprocess=lambda posts: pipeline.pose_postprocess_batch(posts, pipeline.PoseSettings()),
        max_pixels=10**6,
    )


@pytest.mark.parametrize("concurrent_runs", [1, 3])
def test_runner_run_many_equals_one_run_per_request_when_requests_mix_shapes(tmp_path, concurrent_runs):
    path = _tiny_detector(tmp_path / "det.onnx")
    runner = OnnxRuntimeRunner(ct.POSE_MODEL, path, intra_op_threads=1, concurrent_runs=concurrent_runs)
    rng = np.random.default_rng(0)
    batches = [
        rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8) for n, h, w in ((1, 64, 32), (2, 32, 64), (1, 64, 32))
    ]
    got = runner.run_many(batches)
    for batch, out in zip(batches, got, strict=True):
        np.testing.assert_array_equal(out, runner.run(batch))


@pytest.fixture(scope="module")
def osnet_onnx(tmp_path_factory) -> Path:
    """The real OSNet-x0.25 graph (random init), exported as the repository builder does."""
    from enrichment_export.onnx_export import export_onnx, untrained_model

    path = tmp_path_factory.mktemp("osnet") / "model.onnx"
    export_onnx(ct.REID_MODEL, untrained_model(ct.REID_MODEL), path)
    return path


def _recorded(runner: OnnxRuntimeRunner) -> list[int]:
    """Rows of every ``session.run`` the runner makes (wraps ``runner.run``)."""
    rows: list[int] = []
    plain = runner.run

    def run(batch):
        rows.append(batch.shape[0])
        return plain(batch)

    runner.run = run  # type: ignore[method-assign]
    return rows


@pytest.mark.parametrize(("concurrent_runs", "sizes", "expected_rows"), [
    (2, (32,), [16, 16]),
    (2, (17,), [9, 8]),
    (4, (32,), [8, 8, 8, 8]),
    (3, (20, 1), [10, 10, 1]),
    (2, (1,), [1]),
    (2, (5, 3), [5, 3]),
])  # fmt: skip
def test_runner_run_many_splits_rows_and_equals_unsplit_run_when_fewer_requests_than_runs(
    osnet_onnx, concurrent_runs, sizes, expected_rows
):
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, 255, (n, 256, 128, 3), dtype=np.uint8) for n in sizes]
    reference = OnnxRuntimeRunner(ct.REID_MODEL, osnet_onnx, intra_op_threads=1)
    runner = OnnxRuntimeRunner(ct.REID_MODEL, osnet_onnx, intra_op_threads=1, concurrent_runs=concurrent_runs)
    rows = _recorded(runner)
    got = runner.run_many(batches)
    assert sorted(rows, reverse=True) == sorted(expected_rows, reverse=True)
    for batch, out in zip(batches, got, strict=True):
        want = reference.run(batch)
        assert out.shape == want.shape == (batch.shape[0], 512)
        np.testing.assert_allclose(out, want, rtol=0, atol=2e-5)  # the same rows, in order


def test_runner_run_requests_keeps_request_order_when_lone_batch_is_split(osnet_onnx):
    runner = OnnxRuntimeRunner.from_parameters(
        ct.REID_MODEL, osnet_onnx.parent, {"intra_op_threads": "1", "concurrent_runs": "2"}
    )
    rows = _recorded(runner)
    crops = np.stack([np.full((256, 128, 3), 8 * k, np.uint8) for k in range(32)])
    (result,) = runner.run_requests([crops])
    assert rows == [16, 16]
    assert np.abs(result[ct.EMBEDDINGS][0] - result[ct.EMBEDDINGS][-1]).max() > 1e-3  # rows differ: order matters
    singles = np.concatenate([runner.run(crops[k : k + 1]) for k in range(32)])
    np.testing.assert_allclose(result[ct.EMBEDDINGS], singles, rtol=0, atol=2e-5)


def test_runner_runs_whole_batch_when_split_batches_is_off(osnet_onnx):
    runner = OnnxRuntimeRunner.from_parameters(
        ct.REID_MODEL, osnet_onnx.parent, {"intra_op_threads": "1", "concurrent_runs": "2", "split_batches": "0"}
    )
    rows = _recorded(runner)
    runner.run_many([np.zeros((32, 256, 128, 3), np.uint8)])
    assert rows == [32]


def test_fused_detect_batch_refuses_bad_threshold_without_running_detector_when_request_is_alone():
    calls = []
    bad = pipeline.PreprocessInput(_bytes_tensor(_jpeg(480, 640)), conf=np.array([[2.0]], np.float32))
    (result,) = _fused([bad], calls)
    assert "CONF_THRESHOLD must be in [0, 1]" in str(result)
    assert calls == []


def test_fused_detect_batch_runs_each_valid_request_when_requests_mix_shapes():
    calls = []
    reqs = [pipeline.PreprocessInput(_bytes_tensor(_jpeg(h, w))) for h, w in ((480, 640), (640, 480), (480, 640))]
    reqs.append(pipeline.PreprocessInput(_bytes_tensor(b"")))
    results = _fused(reqs, calls)
    assert sorted(calls) == [(1, 480, 640, 3), (1, 480, 640, 3), (1, 640, 480, 3)]
    assert [r[ct.NUM_DETECTIONS].tolist() for r in results[:3]] == [[[0]]] * 3
    assert "empty image" in str(results[3])


# --------------------------------------------------------------------------------------------- postprocess


def _raw_with_person(score: float) -> np.ndarray:
    raw = np.zeros((1, ct.POSE_RAW_CHANNELS, 50), np.float32)
    raw[0, :5, 3] = [320, 320, 100, 300, score]
    raw[0, 5:, 3] = np.tile([320, 320, 0.9], ct.NUM_KEYPOINTS)
    return raw


def test_pose_postprocess_batch_applies_per_request_conf_when_overrides_differ():
    info = np.array([[640, 640, 1, 0, 0]], np.float32)
    items = [
        pipeline.PostprocessInput(_raw_with_person(0.4), info),  # default conf 0.5: dropped
        pipeline.PostprocessInput(_raw_with_person(0.4), info, np.array([[0.3]], np.float32)),
        pipeline.PostprocessInput(_raw_with_person(0.4), np.zeros((1, 4), np.float32)),
    ]
    results = pipeline.pose_postprocess_batch(items, pipeline.PoseSettings())
    assert results[0][ct.NUM_DETECTIONS].tolist() == [[0]]
    assert results[1][ct.NUM_DETECTIONS].tolist() == [[1]]
    want = pad_pose(postprocess_pose(_raw_with_person(0.4), info, conf=0.3, max_det=ct.MAX_DETECTIONS)[0])
    for name, value in want.items():
        np.testing.assert_array_equal(results[1][name][0], value)
    assert isinstance(results[2], InvalidInputError)
    assert "LETTERBOX_INFO" in str(results[2])


def test_threat_postprocess_batch_reports_error_when_class_count_mismatches():
    settings = pipeline.ThreatSettings.from_parameters({"class_names": '["gun", "knife"]'})
    info = np.array([[640, 640, 1, 0, 0]], np.float32)
    good = np.zeros((1, 6, 50), np.float32)
    good[0, :4, 0], good[0, 4, 0] = [100, 100, 20, 20], 0.9
    results = pipeline.threat_postprocess_batch(
        [pipeline.PostprocessInput(good, info), pipeline.PostprocessInput(np.zeros((1, 7, 50), np.float32), info)],
        settings,
    )
    assert results[0][ct.THREAT_TYPE][0, 0] == b"gun"
    assert results[0][ct.MAX_SEVERITY].tolist() == [[4]]
    assert "class channels" in str(results[1])


def test_reid_crops_raise_invalid_input_when_boxes_are_bad():
    image = np.array([_jpeg(100, 100)], np.object_)
    out = pipeline.reid_crops(image, np.array([[0, 0, 50, 80]], np.float32), max_pixels=10**6, max_persons=32)
    assert out[ct.CROPS].shape == (1, ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3)
    for boxes, message in [
        (np.zeros((0, 4), np.float32), "1 to 32"),
        (np.array([[0, 0, 10, 10]], np.float64), "float32"),
        (np.array([[500, 500, 600, 600]], np.float32), "person box 0"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            pipeline.reid_crops(image, boxes, max_pixels=10**6, max_persons=32)


def test_chunks_cover_range_when_size_does_not_divide():
    assert pipeline.chunks(70, 32) == [slice(0, 32), slice(32, 64), slice(64, 70)]
    assert pipeline.chunks(0, 32) == []


# --------------------------------------------------------------------------------------------- runner


def _tiny_osnet(path: Path) -> Path:
    nodes = [
        helper.make_node("Cast", [ct.CROPS], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "ax"], ["u"]),
        helper.make_node("Mul", ["u", "ones"], [ct.EMBEDDINGS]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(ct.CROPS, TensorProto.UINT8, ["n", 256, 128, 3])],
        [helper.make_tensor_value_info(ct.EMBEDDINGS, TensorProto.FLOAT, ["n", 512])],
        initializer=[
            helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
            helper.make_tensor("ones", TensorProto.FLOAT, [1, 512], [1.0] * 512),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _tiny_detector(path: Path) -> Path:
    """uint8 [n, H, W, 3] (dynamic H, W) -> float [n, 56, H*W]: a per-pixel linear map of the colours."""
    nodes = [
        helper.make_node("Cast", [ct.IMAGES], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Reshape", ["t", "shape"], ["r"]),
        helper.make_node("MatMul", ["w", "r"], [ct.RAW_OUTPUT]),
    ]
    w = np.random.default_rng(1).normal(size=(ct.POSE_RAW_CHANNELS, 3)).astype(np.float32)
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info(ct.IMAGES, TensorProto.UINT8, ["n", "h", "w", 3])],
        [helper.make_tensor_value_info(ct.RAW_OUTPUT, TensorProto.FLOAT, ["n", ct.POSE_RAW_CHANNELS, "a"])],
        initializer=[
            helper.make_tensor("shape", TensorProto.INT64, [3], [0, 3, -1]),
            helper.make_tensor("w", TensorProto.FLOAT, list(w.shape), w.ravel().tolist()),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnxruntime_runner_splits_batch_and_isolates_bad_request_when_requests_are_mixed(tmp_path):
    runner = OnnxRuntimeRunner.from_parameters(
        ct.REID_MODEL, tmp_path, {"onnx_file": _tiny_osnet(tmp_path / "model.onnx").name, "intra_op_threads": "1"}
    )
    a = np.full((2, 256, 128, 3), 10, np.uint8)
    b = np.full((1, 256, 128, 3), 20, np.uint8)
    results = runner.run_requests([a, np.zeros((1, 64, 64, 3), np.uint8), b, None])
    assert results[0][ct.EMBEDDINGS].shape == (2, 512)
    np.testing.assert_allclose(results[2][ct.EMBEDDINGS], 20.0)
    assert "shape" in str(results[1])
    assert "missing input" in str(results[3])


def test_onnxruntime_runner_rejects_onnx_file_when_name_leaves_version_folder(tmp_path):
    with pytest.raises(ValueError, match="onnx_file"):
        OnnxRuntimeRunner.from_parameters(ct.REID_MODEL, tmp_path, {"onnx_file": "../x.onnx"})


def test_onnxruntime_runner_raises_when_tensor_names_differ_from_contract(tmp_path):
    with pytest.raises(ValueError, match="expected input 'images'"):
        OnnxRuntimeRunner(ct.POSE_MODEL, _tiny_osnet(tmp_path / "m.onnx"))


# --------------------------------------------------------------------------------------------- triton glue


class _FakeError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, msg, code):
        self.msg, self.code = msg, code


def _fake_pb():
    return types.SimpleNamespace(
        TritonError=_FakeError,
        InferenceResponse=lambda output_tensors=None, error=None: ("response", output_tensors, error),
        Tensor=lambda name, value: (name, value),
    )


def test_to_responses_maps_invalid_input_to_invalid_arg_and_others_to_internal():
    pb = _fake_pb()
    responses = to_responses(pb, [{"A": np.zeros(1)}, InvalidInputError("bad image"), RuntimeError("boom")])
    assert responses[0][1][0][0] == "A"
    assert (responses[1][2].code, responses[1][2].msg) == ("INVALID_ARG", "bad image")
    assert responses[2][2].code == "INTERNAL"
    assert "RuntimeError: boom" in responses[2][2].msg


def test_guard_returns_invalid_input_error_instead_of_raising():
    def fail():
        raise InvalidInputError("nope")

    assert isinstance(guard(fail), InvalidInputError)
    assert guard(lambda: 3) == 3


@pytest.mark.parametrize(("value", "arena"), [(None, True), ("1", True), ("0", False), ("false", False)])
def test_onnxruntime_runner_sets_cpu_mem_arena_when_parameter_given(tmp_path, value, arena):
    params = {"onnx_file": _tiny_osnet(tmp_path / "model.onnx").name}
    if value is not None:
        params["enable_cpu_mem_arena"] = value
    runner = OnnxRuntimeRunner.from_parameters(ct.REID_MODEL, tmp_path, params)
    assert runner.session.get_session_options().enable_cpu_mem_arena is arena
