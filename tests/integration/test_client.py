"""EnrichmentClient and AsyncEnrichmentClient against the real embedded Triton server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from _client_fixtures import *  # noqa: F403

from enrichment_light.client import EnrichmentClient
from enrichment_light.client.aio import AsyncEnrichmentClient
from enrichment_light.client.results import EnrichmentResult, FrameAnalysis, ThreatResult
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import (
    InferenceTimeoutError,
    InvalidImageError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)
from enrichment_light.core.processing.image import decode_image
from enrichment_light.core.processing.reid import crop_bounds

pytestmark = pytest.mark.integration

# Random-init weights score every box low: a tiny threshold makes persons appear.
LOW_CONF = 0.01
MODES = [("grpc", "bytes"), ("http", "bytes"), ("grpc", "shm"), ("http", "shm")]


def _url(server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.fixture(scope="module", params=MODES, ids=[f"{p}-{t}" for p, t in MODES])
def client(request, enrichment_server):
    protocol, transport = request.param
    with EnrichmentClient(_url(enrichment_server, protocol), protocol=protocol, transport=transport) as c:
        c.wait_until_ready(60)
        yield c


@pytest.fixture(scope="module")
def reference(enrichment_server):
    """Results over gRPC with encoded bytes, the default path every other mode must equal."""
    with EnrichmentClient(enrichment_server.grpc_url) as c:
        yield c


def _poses_equal(a, b):
    assert len(a) == len(b)
    for pa, pb in zip(a, b, strict=True):
        assert pa.pose_class == pb.pose_class
        np.testing.assert_allclose(pa.bbox, pb.bbox, atol=1e-3)
        np.testing.assert_allclose([k.x for k in pa.keypoints], [k.x for k in pb.keypoints], atol=1e-3)


def test_estimate_poses_returns_every_person_equal_across_transports_when_called(client, reference, sample_paths):
    poses = client.estimate_poses(sample_paths[0], conf=LOW_CONF)
    assert len(poses) > 1  # every person, not only the first
    h, w = decode_image(sample_paths[0].read_bytes()).shape[:2]
    for p in poses:
        x1, y1, x2, y2 = p.bbox
        assert 0 <= x1 <= x2 <= w
        assert 0 <= y1 <= y2 <= h
        assert len(p.keypoints) == ct.NUM_KEYPOINTS
    _poses_equal(poses, reference.estimate_poses(sample_paths[0], conf=LOW_CONF))


def test_detect_threats_returns_typed_result_equal_across_transports(client, reference, sample_paths):
    result = client.detect_threats(sample_paths[1], conf=LOW_CONF)
    assert isinstance(result, ThreatResult)
    assert result.backend == "onnxruntime"
    ref = reference.detect_threats(sample_paths[1], conf=LOW_CONF)
    assert [(t.threat_type, t.severity) for t in result.threats] == [(t.threat_type, t.severity) for t in ref.threats]
    assert result.has_threat == bool(result.threats)


def test_extract_embeddings_equal_crop_embeddings_of_the_same_boxes(client, sample_paths):
    image = decode_image(sample_paths[0].read_bytes())
    boxes = np.array([[10, 10, 120, 300], [200.5, 100.2, 400.7, 600.9]], np.float32)
    from_image = client.extract_embeddings(sample_paths[0], boxes)
    bounds = crop_bounds(boxes, image.shape)
    crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in bounds.tolist()]
    from_crops = client.extract_embeddings_from_crops(crops)
    assert len(from_image) == len(from_crops) == 2
    for a, b in zip(from_image, from_crops, strict=True):
        assert np.linalg.norm(a.embedding) == pytest.approx(1.0, abs=1e-4)
        assert float(np.dot(a.embedding, b.embedding)) > 0.9999
    assert client.extract_embeddings(sample_paths[0], []) == []


def test_extract_embeddings_chunks_more_boxes_than_one_request_holds(client, sample_paths):
    boxes = np.tile(np.array([[0, 0, 64, 128]], np.float32), (ct.MAX_PERSONS_PER_FRAME + 2, 1))
    results = client.extract_embeddings(sample_paths[0], boxes)
    assert len(results) == ct.MAX_PERSONS_PER_FRAME + 2
    assert len({r.embedding_hash for r in results}) == 1


def _person_crops(image: np.ndarray, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    h, w = image.shape[:2]
    crops = []
    for _ in range(n):
        ch, cw = int(rng.integers(60, 420)), int(rng.integers(30, 160))
        y, x = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
        crops.append(image[y : y + ch, x : x + cw])
    return crops


def test_extract_embeddings_from_crops_equal_bare_onnxruntime_in_order_when_crops_span_several_requests(
    client, client_repository, sample_paths
):
    """37 different crops (3 requests of at most 16, resized on the client's threads) against the
    oracle: the served OSNet ONNX in process on ``resize_crops`` of the same crops."""
    import onnxruntime as ort

    from enrichment_light.client.plans import EMBED_REQUEST_CROPS
    from enrichment_light.core.processing.reid import resize_crops

    crops = _person_crops(decode_image(sample_paths[0].read_bytes()), 2 * EMBED_REQUEST_CROPS + 5)
    session = ort.InferenceSession(str(client_repository / ct.REID_MODEL / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    want = session.run(None, {ct.CROPS: resize_crops(crops)})[0]
    got = np.array([r.embedding for r in client.extract_embeddings_from_crops(crops)], np.float32)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(got[0] - got[-1]).max() > 1e-3  # distinct rows: the order is checked


def test_async_extract_embeddings_from_crops_equal_sync_client_when_crops_span_several_requests(
    enrichment_server, reference, sample_paths
):
    crops = _person_crops(decode_image(sample_paths[0].read_bytes()), 37)

    async def main():
        async with AsyncEnrichmentClient(enrichment_server.grpc_url) as c:
            return await c.extract_embeddings_from_crops(crops)

    got = asyncio.run(main())
    want = reference.extract_embeddings_from_crops(crops)
    assert len(got) == len(want) == 37
    np.testing.assert_allclose([r.embedding for r in got], [r.embedding for r in want], atol=1e-5)


def test_enrich_agrees_with_the_separate_calls(client, reference, sample_paths):
    result = client.enrich(sample_paths[1], conf=LOW_CONF)
    assert isinstance(result, EnrichmentResult)
    h, w = decode_image(sample_paths[1].read_bytes()).shape[:2]
    assert (result.image_height, result.image_width) == (h, w)
    _poses_equal([p.pose for p in result.persons], reference.estimate_poses(sample_paths[1], conf=LOW_CONF))
    boxes = [p.pose.bbox for p in result.persons[: ct.MAX_PERSONS_PER_FRAME]]
    separate = reference.extract_embeddings(sample_paths[1], boxes)
    for person, emb in zip(result.persons, separate, strict=False):
        assert person.reid is not None
        assert float(np.dot(person.reid.embedding, emb.embedding)) > 0.999
    ref_threats = reference.detect_threats(sample_paths[1], conf=LOW_CONF)
    assert len(result.threats.threats) == len(ref_threats.threats)


def _threats_equal(a, b):
    assert [(t.threat_type, t.class_name) for t in a.threats] == [(t.threat_type, t.class_name) for t in b.threats]
    np.testing.assert_allclose([t.bbox for t in a.threats], [t.bbox for t in b.threats], atol=1e-3)


def test_analyze_frame_equals_the_separate_calls_when_both_run_at_once(client, reference, sample_paths):
    for path in sample_paths:
        frame = client.analyze_frame(path, conf=LOW_CONF)
        assert isinstance(frame, FrameAnalysis)
        assert frame.poses  # LOW_CONF: random-init pose finds people
        _poses_equal(frame.poses, reference.estimate_poses(path, conf=LOW_CONF))
        _threats_equal(frame.threats, reference.detect_threats(path, conf=LOW_CONF))
    batch = client.analyze_frame_batch(sample_paths, conf=LOW_CONF)
    assert [len(f.poses) for f in batch] == [len(client.estimate_poses(p, conf=LOW_CONF)) for p in sample_paths]
    with pytest.raises(InvalidInputError, match="conf_threshold"):
        client.analyze_frame(sample_paths[0], conf=1.5)


def test_batch_methods_return_one_result_per_image_in_order(client, sample_paths):
    images = [sample_paths[0], sample_paths[1], sample_paths[0]]
    threats = client.detect_threats_batch(images, conf=LOW_CONF)
    poses = client.estimate_poses_batch(images, conf=LOW_CONF)
    enriched = client.enrich_batch(images, conf=LOW_CONF)
    embeddings = client.extract_embeddings_batch([(p, [[0, 0, 50, 100]]) for p in images])
    crops = client.extract_embeddings_from_crops_batch([[np.zeros((50, 20, 3), np.uint8)]] * 2)
    assert len(threats) == len(poses) == len(enriched) == len(embeddings) == 3
    assert len(crops) == 2
    _poses_equal(poses[0], poses[2])
    assert enriched[0].image_width != enriched[1].image_width  # bus.jpg and zidane.jpg differ


def test_client_accepts_arrays_bgr_and_bytes_with_the_same_result(client, sample_paths):
    data = sample_paths[0].read_bytes()
    rgb = decode_image(data)
    a = client.estimate_poses(data, conf=LOW_CONF)
    b = client.estimate_poses(rgb, conf=LOW_CONF)
    c = client.estimate_poses(np.ascontiguousarray(rgb[:, :, ::-1]), conf=LOW_CONF, bgr=True)
    _poses_equal(a, b)  # PNG is lossless: the server sees the same pixels
    _poses_equal(a, c)


def test_backend_info_reports_onnxruntime_and_manifest_entries(enrichment_server, client_repository):
    with EnrichmentClient(enrichment_server.grpc_url, manifest=client_repository) as c:
        info = c.backend_info()
    assert set(info) == set(ct.INFERENCE_MODELS)
    for entry in info.values():
        assert entry.backend == "onnxruntime"
        assert entry.runner == "python"
        assert entry.device == "cpu"
        assert entry.manifest["serving"] == "onnxruntime"


def test_health_lists_every_model_ready(enrichment_server):
    with EnrichmentClient(enrichment_server.http_url, protocol="http") as c:
        report = c.health()
    assert report["live"] and report["ready"]
    assert set(report["models"]) == set(ct.ALL_MODELS)
    assert all(m["ready"] for m in report["models"].values())


def test_shm_transport_unregisters_and_removes_regions_on_close(enrichment_server, sample_paths):
    c = EnrichmentClient(enrichment_server.grpc_url, transport="shm")
    c.estimate_poses(sample_paths[0])
    regions = c._core.shm.regions()
    assert regions
    import tritonclient.grpc as grpcclient

    raw = grpcclient.InferenceServerClient(enrichment_server.grpc_url)
    status = raw.get_system_shared_memory_status(as_json=True)
    assert {r.name for r in regions} <= set(status.get("regions", {}))
    c.close()
    status = raw.get_system_shared_memory_status(as_json=True)
    assert not {r.name for r in regions} & set(status.get("regions", {}))
    raw.close()
    for region in regions:
        assert not (Path("/dev/shm") / region.name).exists()


# --------------------------------------------------------------------------------------------- asyncio


@pytest.mark.parametrize(("protocol", "transport"), MODES, ids=[f"{p}-{t}" for p, t in MODES])
def test_async_client_matches_sync_client(enrichment_server, reference, sample_paths, protocol, transport):
    async def run():
        async with AsyncEnrichmentClient(
            _url(enrichment_server, protocol), protocol=protocol, transport=transport
        ) as c:
            await c.wait_until_ready(30)
            poses = await c.estimate_poses(sample_paths[0], conf=LOW_CONF)
            threats = await c.detect_threats(sample_paths[1], conf=LOW_CONF)
            emb = await c.extract_embeddings(sample_paths[0], [[0, 0, 50, 100]])
            crops = await c.extract_embeddings_from_crops([np.zeros((50, 20, 3), np.uint8)])
            enriched = await c.enrich(sample_paths[1], conf=LOW_CONF)
            frame = await c.analyze_frame(sample_paths[1], conf=LOW_CONF)
            frames = await c.analyze_frame_batch(sample_paths, conf=LOW_CONF)
            batch = await c.enrich_batch(sample_paths, conf=LOW_CONF)
            tb = await c.detect_threats_batch(sample_paths)
            pb = await c.estimate_poses_batch(sample_paths)
            eb = await c.extract_embeddings_batch([(sample_paths[0], [[0, 0, 50, 100]])])
            cb = await c.extract_embeddings_from_crops_batch([[np.zeros((50, 20, 3), np.uint8)]])
            info = await c.backend_info()
            return poses, threats, emb, crops, enriched, batch, tb, pb, eb, cb, info, frame, frames

    poses, threats, emb, crops, enriched, batch, tb, pb, eb, cb, info, frame, frames = asyncio.run(run())
    _poses_equal(poses, reference.estimate_poses(sample_paths[0], conf=LOW_CONF))
    assert len(threats.threats) == len(reference.detect_threats(sample_paths[1], conf=LOW_CONF).threats)
    assert emb[0].embedding_hash == reference.extract_embeddings(sample_paths[0], [[0, 0, 50, 100]])[0].embedding_hash
    assert len(crops) == 1
    assert len(enriched.persons) == len(batch[1].persons)
    assert len(batch) == len(tb) == len(pb) == 2
    assert len(eb) == len(cb) == 1
    assert info[ct.POSE_MODEL].backend == "onnxruntime"
    _poses_equal(frame.poses, reference.estimate_poses(sample_paths[1], conf=LOW_CONF))
    _threats_equal(frame.threats, reference.detect_threats(sample_paths[1], conf=LOW_CONF))
    assert [len(f.poses) for f in frames] == [len(reference.estimate_poses(p, conf=LOW_CONF)) for p in sample_paths]


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_raises_server_unavailable_when_server_is_down(closed_port_url, sample_paths, protocol):
    with EnrichmentClient(closed_port_url, protocol=protocol, retries=1, backoff_s=0.01, timeout_s=5) as c:
        with pytest.raises(ServerUnavailableError, match=closed_port_url) as info:
            c.detect_threats(sample_paths[0])
        assert info.value.__cause__ is not None
        assert not c.is_server_live()
        with pytest.raises(ServerUnavailableError):
            c.wait_until_ready(0.3)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_fails_over_to_second_url_when_first_is_down(enrichment_server, closed_port_url, sample_paths, protocol):
    good = _url(enrichment_server, protocol)
    with EnrichmentClient([closed_port_url, good], protocol=protocol, retries=0) as c:
        for _ in range(3):  # round-robin starts on each URL in turn; every call succeeds
            assert c.estimate_poses(sample_paths[0]) is not None


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_raises_invalid_input_with_server_words_when_image_is_corrupt(enrichment_server, protocol):
    with EnrichmentClient(_url(enrichment_server, protocol), protocol=protocol) as c:
        with pytest.raises(InvalidInputError, match=r"(?i)jpeg|corrupt|truncated|decode") as info:
            c.detect_threats(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
        assert info.value.__cause__ is not None  # raised from the tritonclient error
        with pytest.raises(InvalidInputError):
            c.enrich(b"not an image")
        with pytest.raises(InvalidInputError, match=r"(?i)jpeg|corrupt|truncated|decode"):
            c.analyze_frame(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # both requests fail; the first error is raised
        assert c.is_server_ready()


def test_client_raises_invalid_image_locally_when_shm_image_is_corrupt(enrichment_server):
    with EnrichmentClient(enrichment_server.grpc_url, transport="shm") as c:
        with pytest.raises(InvalidImageError):
            c.estimate_poses(b"not an image")
        with pytest.raises(InvalidImageError):
            c.analyze_frame(b"not an image")
        assert len(c._core.shm.regions()) == sum(len(v) for v in c._core.shm._free.values())


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_raises_inference_timeout_when_timeout_is_tiny(enrichment_server, sample_paths, protocol):
    url = _url(enrichment_server, protocol)
    with (
        EnrichmentClient(url, protocol=protocol, timeout_s=0.001, retries=0) as c,
        pytest.raises(InferenceTimeoutError),
    ):
        c.enrich(sample_paths[0])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_raises_model_not_ready_when_model_is_unloaded(explicit_server, sample_paths, protocol):
    with EnrichmentClient(_url(explicit_server, protocol), protocol=protocol) as c:
        c.wait_until_ready(60, models=[ct.THREAT_ENSEMBLE])
        c.unload_model(ct.THREAT_ENSEMBLE)
        try:
            assert not c.is_model_ready(ct.THREAT_ENSEMBLE)
            with pytest.raises(ModelNotReadyError, match="threat"):
                c.detect_threats(sample_paths[0])
            with pytest.raises(ModelNotReadyError):
                c.wait_until_ready(0.3, models=[ct.THREAT_ENSEMBLE])
        finally:
            c.load_model(ct.THREAT_ENSEMBLE)
        assert c.detect_threats(sample_paths[0]) is not None


def test_async_client_raises_server_unavailable_when_server_is_down(closed_port_url, sample_paths):
    async def run():
        async with AsyncEnrichmentClient(closed_port_url, retries=0) as c:
            await c.detect_threats(sample_paths[0])

    with pytest.raises(ServerUnavailableError):
        asyncio.run(run())
