"""The client's I/O-free core: request plans, decoding of padded outputs, backend introspection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from enrichment_light.client.decoding import (
    ENRICH_POSE_NAMES,
    ENRICH_THREAT_NAMES,
    decode_enrich,
    decode_poses,
    decode_threats,
    reid_results,
)
from enrichment_light.client.inputs import encode_array
from enrichment_light.client.manifest import load_manifest, manifest_entry
from enrichment_light.client.model_config import backend_from_config
from enrichment_light.client.plans import CLIENT_MODELS, ClientCore, Request, side_by_side, threshold_tensors
from enrichment_light.client.results import FrameAnalysis, PoseClass, ReIDResult, Severity
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.processing.detection import pad_pose, pose_detections
from enrichment_light.core.processing.image import letterbox
from enrichment_light.core.processing.reid import embedding_hash
from enrichment_light.core.processing.threat import pad_threats, threat_detections
from enrichment_light.core.validators import object_array


def _core(**kw) -> ClientCore:
    opts = dict(
        protocol="grpc",
        timeout_s=5.0,
        retries=0,
        backoff_s=0.0,
        version=None,
        transport="bytes",
        array_format="png",
        manifest=None,
    )
    opts.update(kw)
    return ClientCore("127.0.0.1:1", **opts)


def _threat_padded() -> dict[str, np.ndarray]:
    dets = threat_detections(
        xyxy=np.array([[10, 20, 30, 40], [1, 2, 3, 4]], np.float32),
        scores=np.array([0.9, 0.6], np.float32),
        class_ids=np.array([43, 34], np.int32),
        threat_type=object_array(["knife", "baseball bat"]),
        severity=np.array([Severity.HIGH.rank, Severity.MEDIUM.rank], np.int32),
        class_name=object_array(["knife", "baseball bat"]),
    )
    return pad_threats(dets)


def _pose_padded(k: int = 2) -> dict[str, np.ndarray]:
    kpts = np.zeros((k, ct.NUM_KEYPOINTS, 3), np.float32)
    kpts[..., 2] = 0.8
    poses = pose_detections(
        xyxy=np.tile(np.array([[0, 0, 50, 100]], np.float32), (k, 1)),
        scores=np.linspace(0.9, 0.6, k).astype(np.float32),
        keypoints=kpts,
        pose_class=np.zeros(k, np.int32),
        pose_confidence=np.full(k, 0.8, np.float32),
        suspicious=np.zeros(k, bool),
    )
    return pad_pose(poses)


def test_decode_threats_returns_typed_result_from_padded_tensors():
    result = decode_threats(_threat_padded(), elapsed_ms=3.0, backend="onnxruntime", class_names=None)
    assert result.has_threat
    assert result.max_severity is Severity.HIGH
    assert [t.threat_type for t in result.threats] == ["knife", "baseball bat"]
    assert result.threats[0].bbox == [10.0, 20.0, 30.0, 40.0]
    assert result.backend == "onnxruntime"
    assert result.inference_time_ms == 3.0


def test_decode_threats_raises_invalid_input_when_count_exceeds_padding():
    padded = _threat_padded()
    padded[ct.NUM_DETECTIONS] = np.array([ct.MAX_DETECTIONS + 1], np.int32)
    with pytest.raises(InvalidInputError, match="malformed threat outputs"):
        decode_threats(padded, elapsed_ms=0.0, backend="x")


def test_decode_poses_returns_one_result_per_person():
    poses = decode_poses(_pose_padded(3))
    assert len(poses) == 3
    assert poses[0].pose_class is PoseClass.STANDING
    assert len(poses[0].keypoints) == ct.NUM_KEYPOINTS
    assert poses[0].score == pytest.approx(0.9)


def test_reid_results_hash_each_row_like_the_seed():
    emb = np.random.default_rng(1).normal(size=(2, ct.EMBEDDING_DIMENSION)).astype(np.float32)
    results = reid_results(emb)
    assert [r.embedding_hash for r in results] == [embedding_hash(e) for e in emb]
    assert results[0].embedding == pytest.approx(emb[0].tolist())
    assert results == [ReIDResult(embedding=e.tolist(), embedding_hash=embedding_hash(e)) for e in emb]


@pytest.mark.parametrize(("bad", "message"), [(np.nan, "finite"), (np.inf, "finite")])
def test_reid_results_refuse_rows_when_values_are_not_finite(bad, message):
    emb = np.zeros((3, ct.EMBEDDING_DIMENSION), np.float32)
    emb[2, 7] = bad
    with pytest.raises(ValueError, match=message):
        reid_results(emb)


def test_decode_enrich_joins_threats_poses_and_embeddings():
    threat, pose = _threat_padded(), _pose_padded(2)
    out = {}
    for key, name in ENRICH_THREAT_NAMES.items():
        out[name] = threat[key][None]
    for key, name in ENRICH_POSE_NAMES.items():
        out[name] = pose[key][None]
    emb = np.zeros((1, ct.MAX_DETECTIONS, ct.EMBEDDING_DIMENSION), np.float32)
    emb[0, :2, 0] = 1.0
    out[ct.EMBEDDINGS] = emb
    out[ct.LETTERBOX_INFO] = np.array([[480, 640, 1.0, 0, 80]], np.float32)
    result = decode_enrich(out, elapsed_ms=1.0, backend="python")
    assert (result.image_height, result.image_width) == (480, 640)
    assert len(result.persons) == 2
    assert all(p.reid is not None and p.reid.embedding[0] == 1.0 for p in result.persons)
    assert result.threats.max_severity is Severity.HIGH


@pytest.mark.parametrize(
    ("config", "backend", "runner", "device"),
    [
        ({"name": "m", "platform": "tensorrt_plan", "instance_group": [{"kind": "KIND_GPU"}]}, "tensorrt", "native",
         "gpu"),
        ({"name": "m", "platform": "onnxruntime_onnx"}, "onnxruntime", "native", "unknown"),
        ({"name": "m", "backend": "onnxruntime", "instance_group": [{"kind": "KIND_CPU"}]}, "onnxruntime", "native",
         "cpu"),
        ({"name": "m", "backend": "python", "parameters": {"onnx_file": {"string_value": "model.onnx"}}},
         "onnxruntime", "python", "unknown"),
        ({"name": "m", "backend": "python"}, "python", "python", "unknown"),
        ({"name": "m", "platform": "ensemble"}, "ensemble", "native", "unknown"),
        ({"config": {"name": "m", "platform": "tensorrt_plan"}}, "tensorrt", "native", "unknown"),  # gRPC JSON
    ],
)  # fmt: skip
def test_backend_from_config_reads_platform_backend_and_parameters(config, backend, runner, device):
    info = backend_from_config(config)
    assert (info.model, info.backend, info.runner, info.device) == ("m", backend, runner, device)


def test_backend_from_config_prefers_manifest_serving_for_python_runners():
    info = backend_from_config({"name": "m", "backend": "python"}, {"serving": "onnxruntime", "backend": "python"})
    assert info.backend == "onnxruntime"
    assert info.manifest["serving"] == "onnxruntime"


def test_load_manifest_reads_file_or_folder_and_tolerates_missing(tmp_path):
    manifest = {"target": "cpu", "models": {"yolov8n_pose": {"backend": "python", "serving": "onnxruntime"}}}
    (tmp_path / "repository.json").write_text(json.dumps(manifest))
    assert load_manifest(tmp_path) == manifest
    assert load_manifest(tmp_path / "repository.json") == manifest
    assert load_manifest(tmp_path / "nope") == {}
    assert load_manifest(None) == {}
    assert manifest_entry(manifest, "yolov8n_pose")["serving"] == "onnxruntime"
    assert manifest_entry(manifest, "other") == {}


def test_threshold_tensors_validate_range_and_shape():
    tensors = threshold_tensors(0.25, None)
    assert [t.name for t in tensors] == [ct.CONF_THRESHOLD]
    assert tensors[0].array.shape == (1, 1)
    with pytest.raises(InvalidInputError, match="conf_threshold"):
        threshold_tensors(1.5, None)


def test_plan_threats_sends_one_image_bytes_request_to_the_threat_ensemble():
    core = _core()
    core.configs[ct.THREAT_MODEL] = {"name": ct.THREAT_MODEL, "backend": "python"}
    core.configs[ct.THREAT_POSTPROCESS] = {
        "name": ct.THREAT_POSTPROCESS,
        "parameters": {"class_names": {"string_value": json.dumps(["knife", "baseball bat"])}},
    }
    png = encode_array(np.zeros((8, 8, 3), np.uint8))
    plan = core.plan_threats(png, conf=0.3, iou=None, bgr=False)
    assert next(plan) == []  # configs cached: no lookup
    (req,) = plan.send([])
    assert req.model == ct.THREAT_ENSEMBLE
    assert [t.name for t in req.inputs] == [ct.IMAGE_BYTES, ct.CONF_THRESHOLD]
    assert req.inputs[0].array.shape == (1, 1)
    assert req.inputs[0].array[0, 0] == png
    padded = {k: v[None] for k, v in _threat_padded().items()}
    with pytest.raises(StopIteration) as stop:
        plan.send([padded])
    result = stop.value.value
    assert [t.class_name for t in result.threats] == ["", ""]  # ids 43/34 beyond the 2 names given
    assert result.backend == "python"  # a Python-backend model without onnx_file


def _scripted_plan(name: str, steps: list[int], log: list[str]):
    """A plan that asks for `steps[k]` requests at step k and returns every output it received."""
    got = []
    try:
        for k, n in enumerate(steps):
            got.append((yield [Request(f"{name}{k}.{j}") for j in range(n)]))
        return name, got
    finally:
        log.append(f"closed {name}")


def test_side_by_side_sends_every_plans_requests_in_one_step_and_routes_outputs_when_plans_differ_in_length():
    log: list[str] = []
    plan = side_by_side(
        _scripted_plan("a", [1, 2], log), _scripted_plan("b", [0, 1], log), _scripted_plan("c", [], log)
    )
    first = next(plan)
    assert [r.model for r in first] == ["a0.0", "b1.0"]  # b's empty step is passed at once, not a round trip
    second = plan.send(["A0", "B1"])
    assert [r.model for r in second] == ["a1.0", "a1.1"]
    with pytest.raises(StopIteration) as stop:
        plan.send(["A1x", "A1y"])
    assert stop.value.value == [("a", [["A0"], ["A1x", "A1y"]]), ("b", [[], ["B1"]]), ("c", [])]
    assert sorted(log) == ["closed a", "closed b", "closed c"]


def test_side_by_side_closes_every_plan_when_closed_midway():
    log: list[str] = []
    plan = side_by_side(_scripted_plan("a", [1, 1], log), _scripted_plan("b", [1, 1], log))
    next(plan)
    plan.close()  # a driver closes the plan when a request failed
    assert sorted(log) == ["closed a", "closed b"]


def test_plan_frame_sends_pose_and_threat_requests_at_once_with_the_image_encoded_once():
    core = _core()
    core.configs[ct.THREAT_MODEL] = {"name": ct.THREAT_MODEL, "backend": "python"}
    core.configs[ct.THREAT_POSTPROCESS] = {"name": ct.THREAT_POSTPROCESS}
    rgb = np.random.default_rng(2).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    plan = core.plan_frame(rgb, conf=0.3, iou=0.6, bgr=False)
    pose_req, threat_req = next(plan)
    assert (pose_req.model, threat_req.model) == (ct.POSE_ENSEMBLE, ct.THREAT_ENSEMBLE)
    assert pose_req.inputs[0].array[0, 0] is threat_req.inputs[0].array[0, 0]  # one encoding
    assert [t.name for t in threat_req.inputs] == [ct.IMAGE_BYTES, ct.CONF_THRESHOLD, ct.IOU_THRESHOLD]
    with pytest.raises(StopIteration) as stop:
        plan.send([{k: v[None] for k, v in _pose_padded(3).items()}, {k: v[None] for k, v in _threat_padded().items()}])
    result = stop.value.value
    assert isinstance(result, FrameAnalysis)
    assert (len(result.poses), len(result.threats.threats)) == (3, 2)
    assert FrameAnalysis.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_plan_frame_refuses_bad_threshold_before_any_request():
    plan = _core().plan_frame(b"not read", conf=2.0, iou=None, bgr=False)
    with pytest.raises(InvalidInputError, match="conf_threshold"):
        next(plan)


def test_plan_embeddings_chunks_boxes_and_skips_the_call_for_no_boxes():
    core = _core()
    png = encode_array(np.zeros((8, 8, 3), np.uint8))
    plan = core.plan_embeddings(png, [], bgr=False)
    with pytest.raises(StopIteration) as stop:
        next(plan)
    assert stop.value.value == []
    boxes = np.tile(np.array([[0, 0, 4, 4]], np.float32), (ct.MAX_PERSONS_PER_FRAME + 3, 1))
    plan = core.plan_embeddings(png, boxes, bgr=False)
    reqs = next(plan)
    assert [r.model for r in reqs] == [ct.REID_ENSEMBLE, ct.REID_ENSEMBLE]
    assert [r.inputs[1].array.shape[0] for r in reqs] == [ct.MAX_PERSONS_PER_FRAME, 3]
    assert reqs[0].inputs[0].array.shape == (1,)  # reid is not batched (max_batch_size 0)


def test_plan_crops_resizes_locally_and_calls_osnet_directly():
    core = _core()
    crops = [np.zeros((100, 40, 3), np.uint8), np.zeros((30, 60, 3), np.uint8)]
    plan = core.plan_crops(crops, bgr=False)
    (req,) = next(plan)
    assert req.model == ct.REID_MODEL
    assert req.inputs[0].data().shape == (2, ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3)
    assert req.inputs[0].data().dtype == np.uint8


def test_plan_crops_sends_chunks_resized_when_sent_and_equal_to_resize_crops_when_crops_are_many():
    from enrichment_light.client.plans import EMBED_REQUEST_CROPS
    from enrichment_light.core.processing.reid import resize_crops

    rng = np.random.default_rng(5)
    crops = [rng.integers(0, 256, (int(rng.integers(20, 300)), int(rng.integers(10, 150)), 3), np.uint8)
             for _ in range(2 * EMBED_REQUEST_CROPS + 3)]  # fmt: skip
    plan = _core().plan_crops(crops, bgr=False)
    reqs = next(plan)
    assert [r.inputs[0].shape[0] for r in reqs] == [EMBED_REQUEST_CROPS, EMBED_REQUEST_CROPS, 3]
    assert all(r.inputs[0].array is None for r in reqs)  # not resized until sent
    sent = np.concatenate([r.inputs[0].data() for r in reqs])
    np.testing.assert_array_equal(sent, resize_crops(crops))
    embeddings = [np.full((r.inputs[0].shape[0], ct.EMBEDDING_DIMENSION), k, np.float32) for k, r in enumerate(reqs)]
    with pytest.raises(StopIteration) as done:
        plan.send([{ct.EMBEDDINGS: e} for e in embeddings])
    assert [r.embedding[0] for r in done.value.value] == [0.0] * 16 + [1.0] * 16 + [2.0] * 3  # in order


def test_shm_plan_crops_resizes_each_chunk_into_its_region_when_sent():
    import tritonclient.grpc as grpcclient

    from enrichment_light.client.plans import EMBED_REQUEST_CROPS, make_infer_inputs
    from enrichment_light.core.processing.reid import resize_crops

    rng = np.random.default_rng(6)
    crops = [rng.integers(0, 256, (int(rng.integers(20, 300)), int(rng.integers(10, 150)), 3), np.uint8)
             for _ in range(EMBED_REQUEST_CROPS + 5)]  # fmt: skip
    core = _core(transport="shm")
    try:
        plan = core.plan_crops(crops, bgr=False)
        reqs = next(plan)
        tensors = [r.inputs[0] for r in reqs]
        assert [t.shape[0] for t in tensors] == [EMBED_REQUEST_CROPS, 5]
        assert all(t.region is not None and not t.prepared for t in tensors)  # not resized until sent
        for t in tensors:
            (item,) = make_infer_inputs(grpcclient, [t], http=False)  # what the sending thread does
            assert item._get_tensor().parameters["shared_memory_region"].string_param == t.region.name
        np.testing.assert_array_equal(np.concatenate([_shm_read(t) for t in tensors]), resize_crops(crops))
        make_infer_inputs(grpcclient, tensors, http=False)  # a retry sends what is there, once resized
        embeddings = [np.full((t.shape[0], ct.EMBEDDING_DIMENSION), k, np.float32) for k, t in enumerate(tensors)]
        with pytest.raises(StopIteration) as done:
            plan.send([{ct.EMBEDDINGS: e} for e in embeddings])
        assert [r.embedding[0] for r in done.value.value] == [0.0] * EMBED_REQUEST_CROPS + [1.0] * 5
        assert sum(len(v) for v in core.shm._free.values()) == 2  # both regions back in the pool
    finally:
        core.shm.destroy_all()


def test_plan_crops_refuses_bad_crop_by_index_before_any_request_when_a_later_chunk_holds_it():
    crops = [np.zeros((50, 20, 3), np.uint8)] * 20 + [np.zeros((50, 20), np.float32)]
    with pytest.raises(InvalidInputError, match="crop 20: "):
        next(_core().plan_crops(crops, bgr=False))


def _shm_read(t) -> np.ndarray:
    from tritonclient.utils import triton_to_np_dtype

    dtype = np.dtype(triton_to_np_dtype(t.datatype))
    return np.ndarray(t.shape, dtype, buffer=t.region._shm.buf, offset=t.offset).copy()


@pytest.mark.parametrize(
    ("method", "tensor_model", "keys"),
    [("plan_poses", ct.POSE_TENSOR_ENSEMBLE, "pose"), ("plan_threats", ct.THREAT_TENSOR_ENSEMBLE, "threat")],
)
@pytest.mark.parametrize("mode", ["rect", "square", None])
def test_shm_plan_sends_letterboxed_tensor_and_info_to_the_tensor_ensemble_when_transport_is_shm(
    method, tensor_model, keys, mode
):
    core = _core(transport="shm")
    core.configs[ct.THREAT_MODEL] = {"name": ct.THREAT_MODEL, "backend": "python"}
    core.configs[ct.THREAT_POSTPROCESS] = {"name": ct.THREAT_POSTPROCESS}
    core.configs[ct.PREPROCESS] = {"name": ct.PREPROCESS}  # no letterbox parameter: square, as preprocess
    if mode is not None:
        core.configs[ct.PREPROCESS]["parameters"] = {"letterbox": {"string_value": mode}}
    rgb = np.random.default_rng(1).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    try:
        plan = getattr(core, method)(rgb, conf=0.3, iou=None, bgr=False)
        reqs = next(plan)
        if method == "plan_threats":
            assert reqs == []  # configs cached
            reqs = plan.send([])
        (req,) = reqs
        assert req.model == tensor_model
        assert req.outputs == tuple(t.name for t in ct.model_spec(tensor_model).outputs)
        images, info, conf = req.inputs
        assert (images.name, info.name, conf.name) == (ct.IMAGES, ct.LETTERBOX_INFO, ct.CONF_THRESHOLD)
        assert images.region is info.region is not None  # one region: pixels, then the info
        want_tensor, want_info = letterbox(rgb, auto=mode == "rect")  # as the server's preprocess in `mode`
        assert want_tensor.shape == ((384, 640, 3) if mode == "rect" else (640, 640, 3))
        assert images.offset == 0 and info.offset >= want_tensor.nbytes and info.offset % 8 == 0
        np.testing.assert_array_equal(_shm_read(images), want_tensor[None])
        np.testing.assert_array_equal(_shm_read(info), want_info.to_array()[None])
        assert conf.region is None and conf.array.tolist() == [[np.float32(0.3)]]
        padded = _pose_padded() if keys == "pose" else _threat_padded()
        with pytest.raises(StopIteration) as stop:
            plan.send([{k: v[None] for k, v in padded.items()}])
        result = stop.value.value
        assert len(result) == 2 if keys == "pose" else len(result.threats) == 2
        assert [len(v) for v in core.shm._free.values()] == [1]  # region back in the pool
    finally:
        core.shm.destroy_all()


def test_shm_enrich_embeds_detected_persons_and_decodes_like_the_enrich_model_when_transport_is_shm():
    core = _core(transport="shm")
    core.configs[ct.THREAT_MODEL] = {"name": ct.THREAT_MODEL, "backend": "python"}
    core.configs[ct.THREAT_POSTPROCESS] = {"name": ct.THREAT_POSTPROCESS}
    rgb = np.random.default_rng(2).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    try:
        plan = core.plan_enrich(rgb, conf=None, iou=None, bgr=False)
        (lookup,) = next(plan)  # preprocess's letterbox mode, once
        assert (lookup.kind, lookup.model) == ("config", ct.PREPROCESS)
        core.configs[ct.PREPROCESS] = {"name": ct.PREPROCESS}
        pose_req, threat_req = plan.send([core.configs[ct.PREPROCESS]])
        assert pose_req.inputs[0].shape == (1, 640, 640, 3)
        assert (pose_req.model, threat_req.model) == (ct.POSE_TENSOR_ENSEMBLE, ct.THREAT_TENSOR_ENSEMBLE)
        assert pose_req.inputs[0].region is threat_req.inputs[0].region  # both read the same pixels
        pose = _pose_padded(3)
        pose[ct.BOXES][1] = [200, 200, 300, 300]  # outside the 90x120 frame: no crop, zero embedding
        (osnet,) = plan.send([{k: v[None] for k, v in pose.items()}, {k: v[None] for k, v in _threat_padded().items()}])
        assert osnet.model == ct.REID_MODEL and osnet.inputs[0].shape[0] == 2
        emb = np.eye(2, ct.EMBEDDING_DIMENSION, dtype=np.float32)
        with pytest.raises(StopIteration) as stop:
            plan.send([{ct.EMBEDDINGS: emb}])
        result = stop.value.value
        assert (result.image_height, result.image_width) == (120, 90)
        assert len(result.persons) == 3 and len(result.threats.threats) == 2
        assert result.persons[0].reid.embedding == emb[0].tolist()
        assert not any(result.persons[1].reid.embedding)
        assert result.persons[2].reid.embedding == emb[1].tolist()
    finally:
        core.shm.destroy_all()


@pytest.mark.parametrize(
    ("parameters", "mode"),
    [({}, "square"), ({"letterbox": {"string_value": "square"}}, "square"),
     ({"letterbox": {"string_value": "rect"}}, "rect"), ({"letterbox": {"string_value": " RECT "}}, "rect")],
)  # fmt: skip
def test_client_core_letterboxes_like_the_servers_preprocess_when_it_names_a_mode(parameters, mode):
    core = _core(transport="shm")
    assert core.letterbox_mode() == "square"  # before the lookup
    core.configs[ct.PREPROCESS] = {"name": ct.PREPROCESS, "parameters": parameters}
    assert core.letterbox_mode() == mode


def test_client_default_models_include_tensor_ensembles_only_when_transport_is_shm():
    from enrichment_light.client.sync import EnrichmentClient

    with EnrichmentClient("127.0.0.1:1") as c:
        assert c._default_models() == CLIENT_MODELS
    with EnrichmentClient("127.0.0.1:1", transport="shm") as c:
        assert set(c._default_models()) - set(CLIENT_MODELS) == {ct.POSE_TENSOR_ENSEMBLE, ct.THREAT_TENSOR_ENSEMBLE}


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"transport": "tcp"}, "transport"),
        ({"array_format": "gif"}, "array_format"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"retries": -1}, "retries"),
    ],
)
def test_client_core_raises_value_error_when_options_are_bad(kw, words):
    with pytest.raises(ValueError, match=words):
        _core(**kw)


def test_client_core_reads_url_from_environment_when_none_given(monkeypatch):
    monkeypatch.setenv("ENRICHMENT_TRITON_URL", "example:9001")
    core = ClientCore(
        None,
        protocol="grpc",
        timeout_s=1.0,
        retries=0,
        backoff_s=0.0,
        version=None,
        transport="bytes",
        array_format="png",
        manifest=None,
    )
    assert core.urls == ["example:9001"]


def _two_request_plan(log: list[str]):
    try:
        yield [Request("fails-fast"), Request("slow")]
    finally:
        log.append("plan closed")  # where a plan releases its shared-memory regions


def test_sync_and_async_drivers_raise_a_failed_request_only_after_the_others_of_its_step_finish():
    import asyncio
    import time

    from enrichment_light.client import EnrichmentClient
    from enrichment_light.client.aio import AsyncEnrichmentClient

    def run(request, log):
        if request.model == "fails-fast":
            raise InvalidInputError("bad image")
        time.sleep(0.2)
        log.append("slow finished")
        return {}

    log: list[str] = []
    with EnrichmentClient("127.0.0.1:1") as client:
        client._execute = lambda r: run(r, log)
        with pytest.raises(InvalidInputError, match="bad image"):
            client._drive(_two_request_plan(log))
    assert log == ["slow finished", "plan closed"]

    async def main():
        async_log: list[str] = []

        async def execute(request):
            return await asyncio.to_thread(run, request, async_log)

        async with AsyncEnrichmentClient("127.0.0.1:1") as client:
            client._execute = execute
            with pytest.raises(InvalidInputError, match="bad image"):
                await client._drive(_two_request_plan(async_log))
        return async_log

    assert asyncio.run(main()) == ["slow finished", "plan closed"]
