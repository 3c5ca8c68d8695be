"""OSNet in bf16 (OpenVINO) served by the embedded Triton, judged against bare onnxruntime FP32.

The repository is the shared client repository's ONNX files rebuilt with ``--reid-precision bf16``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _client_fixtures import *  # noqa: F403

from enrichment_export.bf16 import bf16_gate
from enrichment_export.quantize import load_frames, onnx_session
from enrichment_export.repository import BuildOptions, build_repository
from enrichment_light.client import AsyncEnrichmentClient, EnrichmentClient
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.openvino_session import OpenVinoSession, cpu_has_native_bf16
from enrichment_light.core.processing.reid import resize_crops

pytestmark = pytest.mark.integration
pytest.importorskip("openvino")
if not cpu_has_native_bf16():
    pytest.skip("no native bf16 on this CPU: the refusal is tested in tests/unit/test_bf16.py", allow_module_level=True)


@pytest.fixture(scope="module")
def bf16_server(client_repository, tmp_path_factory, triton_server_factory, sample_paths):
    artifacts = client_repository.parent / f"{client_repository.name}-artifacts"
    out = tmp_path_factory.mktemp("bf16") / "repository"
    held = tmp_path_factory.mktemp("held")
    for path in sample_paths:
        (held / path.name).write_bytes(path.read_bytes())
    options = BuildOptions(osnet_precision="bf16", bf16_holdout=held)
    result = build_repository(out, artifacts=artifacts, options=options, allowed_roots=[out.parent, held, artifacts])
    return result, triton_server_factory(result.out_dir)


@pytest.fixture(scope="module")
def crops(sample_paths):
    """24 person-sized crops of bus.jpg (60-160 x 140-420 px), RGB."""
    (frame,) = load_frames(sample_paths[:1])
    rng = np.random.default_rng(2)
    out = []
    for _ in range(24):
        h, w = int(rng.integers(140, 420)), int(rng.integers(60, 160))
        y, x = int(rng.integers(0, frame.shape[0] - h)), int(rng.integers(0, frame.shape[1] - w))
        out.append(frame[y : y + h, x : x + w])
    return out


def _cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_served_bf16_embeddings_match_bare_fp32_and_report_bf16(bf16_server, crops, protocol):
    result, server = bf16_server
    onnx = result.out_dir / ct.REID_MODEL / "1" / "model.onnx"
    resized = resize_crops(crops)
    fp32 = onnx_session(onnx).run(None, {ct.CROPS: resized})[0]
    bare_bf16 = OpenVinoSession(onnx, precision="bf16").run(None, {ct.CROPS: resized})[0]
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with EnrichmentClient(url, protocol=protocol) as client:
        served = np.stack([r.embedding for r in client.extract_embeddings_from_crops(crops)])
        info = client.backend_info([ct.REID_MODEL])[ct.REID_MODEL]
        health = client.health()["models"][ct.REID_MODEL]
    assert served.shape == (24, 512)
    assert _cosines(served, fp32).min() >= 0.99  # the INT8 allowance, met by bf16 with room
    assert _cosines(served, bare_bf16).min() >= 0.9999  # the same compiled model, split over two streams
    assert np.abs(served - fp32).max() > 0  # it is not FP32
    assert info.precision == "bf16" and health["precision"] == "bf16"


def test_served_bf16_refuses_bad_crop_and_keeps_serving(bf16_server, crops):
    _, server = bf16_server
    with EnrichmentClient(server.grpc_url) as client:
        with pytest.raises(InvalidInputError):
            client.extract_embeddings_from_crops([crops[0], np.zeros((0, 10, 3), np.uint8)])
        assert len(client.extract_embeddings_from_crops(crops[:3])) == 3


async def _embed_concurrently(url, crops):
    async with AsyncEnrichmentClient(url) as client:
        import asyncio

        return await asyncio.gather(*(client.extract_embeddings_from_crops(crops[k::4]) for k in range(4)))


def test_served_bf16_answers_concurrent_requests_in_order(bf16_server, crops):
    import asyncio

    _, server = bf16_server
    groups = asyncio.run(_embed_concurrently(server.grpc_url, crops))
    with EnrichmentClient(server.grpc_url) as client:
        for k, group in enumerate(groups):
            alone = client.extract_embeddings_from_crops(crops[k::4])
            assert _cosines([r.embedding for r in group], [r.embedding for r in alone]).min() >= 0.9999


def test_bf16_gate_on_the_packaged_photos_passes(bf16_server):
    result, _ = bf16_server
    report = bf16_gate(result.out_dir / ct.REID_MODEL / "1" / "model.onnx")
    assert report.passed and report.min_cosine >= 0.99 and report.frames >= 48
