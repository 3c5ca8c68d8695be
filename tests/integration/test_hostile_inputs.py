"""Hostile input against the served models, over gRPC and HTTP: nothing crashes, every bad request gets a clear error.

Two tables, each run over both protocols:

- the image corpus of ``tests/_hostile_corpus.py`` (bombs, truncated/corrupt JPEG/PNG/WebP, zero
  bytes, unsupported formats, plus odd but valid images: 1x1, grey, 16-bit, RGBA, palette, strips),
  sent as raw tritonclient requests to the ensembles and to ``enrich`` and ``reid_crops``, and
  through ``EnrichmentClient`` (which must raise ``InvalidInputError``);
- malformed requests (NaN/negative/inverted boxes, wrong dtypes, ranks and shapes, oversize batches,
  out-of-range thresholds, unicode strings, names and request parameters).

The last test checks that the server and every model are still ready and that no stub process
died or was replaced.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from _robustness_fixtures import *  # noqa: F403
from _robustness_fixtures import assert_all_ready, photos, stub_pids

from enrichment_light.client import EnrichmentClient
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _hostile_corpus import image_cases

pytestmark = pytest.mark.integration

CASES = image_cases()
IMAGE_MODELS = (ct.POSE_ENSEMBLE, ct.THREAT_ENSEMBLE, ct.ENRICH, ct.REID_CROPS)
BUS = photos()[0]
_BASELINE: dict[str, dict[int, str]] = {}


@pytest.fixture(scope="module")
def hostile_server(enrichment_server):
    _BASELINE.setdefault("stubs", stub_pids(enrichment_server))
    return enrichment_server


@pytest.fixture(scope="module")
def raw_clients(hostile_server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    made = {
        "grpc": (grpcclient, grpcclient.InferenceServerClient(hostile_server.grpc_url)),
        "http": (httpclient, httpclient.InferenceServerClient(hostile_server.http_url.split("//")[-1])),
    }
    yield made
    for _, client in made.values():
        client.close()


_DTYPES = {
    np.dtype(np.object_): "BYTES",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int32): "INT32",
}


def _infer(raw, model: str, inputs: dict[str, np.ndarray], **kw):
    module, client = raw
    tensors = []
    for name, array in inputs.items():
        t = module.InferInput(name, list(array.shape), _DTYPES[array.dtype])
        t.set_data_from_numpy(array)
        tensors.append(t)
    return client.infer(model, tensors, **kw)


def _expect_invalid(raw, model: str, inputs: dict[str, np.ndarray], fragments: tuple[str, ...], **kw) -> str:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as info:
        _infer(raw, model, inputs, **kw)
    err = info.value
    assert err.status() in ("StatusCode.INVALID_ARGUMENT", "400"), (err.status(), str(err))
    message = str(err).lower()
    for fragment in fragments:
        assert fragment.lower() in message, (fragment, str(err))
    return message


def _image_inputs(model: str, data: bytes | str, h: int = 1, w: int = 1) -> dict[str, np.ndarray]:
    if model == ct.REID_CROPS:
        return {ct.IMAGE_BYTES: np.array([data], np.object_), ct.PERSON_BOXES: np.array([[0, 0, w, h]], np.float32)}
    return {ct.IMAGE_BYTES: np.array([[data]], np.object_)}


# ------------------------------------------------------------------------------------------- image corpus


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_served_models_meet_corpus_expectation_when_image_is_hostile_or_odd(raw_clients, protocol, index):
    case = CASES[index]
    model = IMAGE_MODELS[index % len(IMAGE_MODELS)]
    raw = raw_clients[protocol]
    if not case.valid:
        _expect_invalid(raw, model, _image_inputs(model, case.data), case.error)
        return
    h, w = case.shape
    result = _infer(raw, model, _image_inputs(model, case.data, h, w))
    if model == ct.REID_CROPS:
        assert result.as_numpy(ct.CROPS).shape == (1, ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3)
        return
    count = ct.NUM_PERSONS if model == ct.ENRICH else ct.NUM_DETECTIONS
    n = int(result.as_numpy(count).reshape(-1)[0])
    if case.shape == (1, 1):
        assert n == 0, "a 1x1 frame cannot hold a detection"
    boxes = result.as_numpy(ct.BOXES)[0, :n]
    assert np.isfinite(boxes).all()
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= w).all(), boxes
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= h).all(), boxes
    if model == ct.ENRICH:
        info = result.as_numpy(ct.LETTERBOX_INFO)[0]
        assert tuple(info[:2].astype(int)) == (h, w)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_raises_invalid_input_error_when_image_in_corpus_is_invalid(hostile_server, protocol):
    url = hostile_server.grpc_url if protocol == "grpc" else hostile_server.http_url
    with EnrichmentClient(url, protocol=protocol, timeout_s=30, retries=0) as client:
        for i, case in enumerate(c for c in CASES if not c.valid):
            call = (client.estimate_poses, client.detect_threats, client.enrich)[i % 3]
            with pytest.raises(InvalidInputError) as info:
                call(case.data)
            message = str(info.value).lower()
            assert all(f in message for f in case.error), (case.name, str(info.value))


# ------------------------------------------------------------------------------------------- malformed requests

_BOX_IMAGE = np.array([BUS], np.object_)
_ONE = np.array([[BUS]], np.object_)


def _boxes(rows) -> dict[str, np.ndarray]:
    return {ct.IMAGE_BYTES: _BOX_IMAGE, ct.PERSON_BOXES: np.asarray(rows, np.float32)}


REQUESTS = [
    # (id, model, inputs, expected message fragments)
    ("box_nan", ct.REID_ENSEMBLE, _boxes([[np.nan, 0, 10, 10]]), ("person box 0", "not finite")),
    ("box_inf", ct.REID_CROPS, _boxes([[0, 0, np.inf, 10]]), ("person box 0", "not finite")),
    ("box_negative_outside", ct.REID_ENSEMBLE, _boxes([[-50, -50, -10, -10]]), ("empty after clamping",)),
    ("box_inverted", ct.REID_ENSEMBLE, _boxes([[100, 100, 10, 10]]), ("inverted",)),
    ("box_second_bad", ct.REID_ENSEMBLE, _boxes([[0, 0, 10, 10], [5, 5, 1, 1]]), ("person box 1", "inverted")),
    ("boxes_rank_3_cols", ct.REID_ENSEMBLE, _boxes(np.zeros((2, 3))), ("unexpected shape", "PERSON_BOXES")),
    ("boxes_fp64", ct.REID_ENSEMBLE,
     {ct.IMAGE_BYTES: _BOX_IMAGE, ct.PERSON_BOXES: np.zeros((1, 4), np.float64)}, ("PERSON_BOXES", "FP64", "FP32")),
    ("boxes_too_many", ct.REID_ENSEMBLE, _boxes(np.tile([[0, 0, 10, 10]], (33, 1))), ("1 to 32 boxes", "33")),
    ("boxes_none", ct.REID_ENSEMBLE, _boxes(np.zeros((0, 4))), ("1 to 32 boxes", "got 0")),
    ("image_as_uint8", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: np.frombuffer(BUS, np.uint8)[None, :64].copy()}, ("IMAGE_BYTES", "UINT8", "BYTES")),
    ("image_two_per_row", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: np.array([[BUS, BUS]], np.object_)}, ("unexpected shape", "IMAGE_BYTES")),
    ("image_empty_batch", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: np.empty((0, 1), np.object_)}, ("IMAGE_BYTES", "got 0")),
    ("images_rank_3", ct.POSE_MODEL,
     {ct.IMAGES: np.zeros((1, 640, 640), np.uint8)}, ("unexpected shape", "images")),
    ("images_fp32", ct.POSE_MODEL,
     {ct.IMAGES: np.zeros((1, 640, 640, 3), np.float32)}, ("images", "FP32", "UINT8")),
    ("images_side_not_stride_32", ct.THREAT_MODEL,
     {ct.IMAGES: np.zeros((1, 320, 330, 3), np.uint8)}, ("images", "multiples of 32")),
    ("images_side_above_640", ct.POSE_MODEL,
     {ct.IMAGES: np.zeros((1, 640, 1280, 3), np.uint8)}, ("images", "in [32, 640]")),
    ("crops_wrong_size", ct.REID_MODEL,
     {ct.CROPS: np.zeros((1, 128, 64, 3), np.uint8)}, ("unexpected shape", "crops")),
    ("batch_over_max_pose", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: np.array([[BUS]] * 9, np.object_)}, ("batch-size must be <= 8",)),
    ("batch_over_max_enrich", ct.ENRICH,
     {ct.IMAGE_BYTES: np.array([[BUS]] * 9, np.object_)}, ("batch-size must be <= 8",)),
    ("batch_over_max_osnet", ct.REID_MODEL,
     {ct.CROPS: np.zeros((33, 256, 128, 3), np.uint8)}, ("batch-size must be <= 32",)),
    ("conf_nan", ct.THREAT_ENSEMBLE,
     {ct.IMAGE_BYTES: _ONE, ct.CONF_THRESHOLD: np.array([[np.nan]], np.float32)}, ("CONF_THRESHOLD", "[0, 1]")),
    ("conf_above_one", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: _ONE, ct.CONF_THRESHOLD: np.array([[1.5]], np.float32)}, ("CONF_THRESHOLD", "[0, 1]")),
    ("iou_negative", ct.ENRICH,
     {ct.IMAGE_BYTES: _ONE, ct.IOU_THRESHOLD: np.array([[-0.1]], np.float32)}, ("IOU_THRESHOLD", "[0, 1]")),
    ("conf_wrong_shape", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: _ONE, ct.CONF_THRESHOLD: np.array([[0.5, 0.5]], np.float32)}, ("CONF_THRESHOLD", "shape")),
    ("conf_int32", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: _ONE, ct.CONF_THRESHOLD: np.array([[1]], np.int32)}, ("CONF_THRESHOLD", "INT32", "FP32")),
    ("unicode_string_as_image", ct.THREAT_ENSEMBLE,
     {ct.IMAGE_BYTES: np.array([["héllo wörld 😀 画像"]], np.object_)}, ("unknown image format",)),
    ("unicode_input_name", ct.POSE_ENSEMBLE,
     {ct.IMAGE_BYTES: _ONE, "ÜNKNOWN_😀": np.array([[0.5]], np.float32)}, ("unexpected inference input",)),
    ("letterbox_info_zero", ct.POSE_POSTPROCESS,
     {ct.RAW_OUTPUT: np.zeros((1, 56, 8400), np.float32), ct.LETTERBOX_INFO: np.zeros((1, 5), np.float32)},
     ("LETTERBOX_INFO", "orig_h")),
    ("raw_output_nan", ct.POSE_POSTPROCESS,
     {ct.RAW_OUTPUT: np.full((1, 56, 8400), np.nan, np.float32),
      ct.LETTERBOX_INFO: np.array([[480, 640, 1, 0, 80]], np.float32)}, ("non-finite",)),
    # On the cpu target pose is one fused Python model, which names the missing input (the three-step
    # ensemble of other targets is refused by Triton's scheduler with a message naming "ensemble 'pose'").
    ("image_missing", ct.POSE_ENSEMBLE,
     {ct.CONF_THRESHOLD: np.array([[0.5]], np.float32)}, ("missing input tensor", "IMAGE_BYTES")),
]  # fmt: skip


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(("model", "inputs", "fragments"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_served_models_refuse_with_invalid_arg_when_request_is_malformed(raw_clients, protocol, model, inputs,
                                                                         fragments):  # fmt: skip
    _expect_invalid(raw_clients[protocol], model, inputs, fragments)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_served_models_succeed_when_boxes_are_partly_outside_or_parameters_are_unicode(raw_clients, protocol):
    raw = raw_clients[protocol]
    emb = _infer(raw, ct.REID_ENSEMBLE, _boxes([[-10, -10, 50, 80]])).as_numpy(ct.EMBEDDINGS)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    result = _infer(raw, ct.POSE_ENSEMBLE, {ct.IMAGE_BYTES: _ONE}, parameters={"ünïcødé_key": "välue 😀 画像"})
    assert result.as_numpy(ct.NUM_DETECTIONS).shape == (1, 1)


def test_unknown_unicode_model_name_is_not_found_over_both_protocols(raw_clients):
    from tritonclient.utils import InferenceServerException

    for protocol, raw in raw_clients.items():
        with pytest.raises(InferenceServerException) as info:
            _infer(raw, "pöse😀", {ct.IMAGE_BYTES: _ONE})
        assert info.value.status() in ("StatusCode.NOT_FOUND", "404"), protocol
        assert "unknown model" in str(info.value).lower()


# ------------------------------------------------------------------------------------------- afterwards


def test_server_and_every_model_stay_ready_with_no_stub_restart_when_corpus_has_run(hostile_server):
    assert_all_ready(hostile_server)
    before = _BASELINE["stubs"]
    after = stub_pids(hostile_server)
    assert after == before, f"stub processes changed: before {before}, after {after}"
