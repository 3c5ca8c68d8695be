"""The shm transport against the real embedded Triton: the tensor-input ensembles give the bytes path's results.

``transport="shm"`` letterboxes on the client and sends the tensor and its ``LETTERBOX_INFO``
through system shared memory to ``pose_tensor`` / ``threat_tensor``; the bytes path sends the
encoded image to ``pose`` / ``threat`` / ``enrich``. Both end in the same server-side
postprocessors, so every field of the typed results must agree (timings aside). Bad tensors sent
to the tensor ensembles earn ``INVALID_ARG`` for that request only.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _client_fixtures import *  # noqa: F403

from enrichment_light.client.aio import AsyncEnrichmentClient
from enrichment_light.client.sync import EnrichmentClient
from enrichment_light.client.transport import ShmRegion, translate_error
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.processing.image import decode_image, letterbox

pytestmark = pytest.mark.integration

# Random-init weights score low: these thresholds make persons (pose) and threats (detect) appear.
LOW_CONF = 0.01
THREAT_CONF = 1e-4  # the random detector's class scores are about 1e-5 to 1.6e-4
PROTOCOLS = ["grpc", "http"]
# Not compared exactly: timings, and the hash of the float32 embedding bytes (OSNet's dynamic batcher
# groups the crops differently on the two paths, which moves the last bits; the vectors are compared).
SKIPPED = {"inference_time_ms", "embedding_hash"}


@pytest.fixture(scope="module")
def every_class_server(client_repository, triton_server_factory, tmp_path_factory):
    """A server on the shared ONNX files whose taxonomy reports every class as a threat.

    Random-init weights never rank knife or baseball bat first, so with the stock table the threat
    comparison would only ever compare empty lists.
    """
    from enrichment_export.repository import BuildOptions, build_repository

    out = tmp_path_factory.mktemp("every-class") / "repository"
    taxonomy = {"default_severity": "low", "threats": {"high": ["knife"], "medium": ["baseball bat"]}}
    build_repository(
        out,
        target="cpu",
        artifacts=client_repository.parent / f"{client_repository.name}-artifacts",
        options=BuildOptions(threat_taxonomy=taxonomy),
        allowed_roots=[tmp_path_factory.getbasetemp()],
    )
    return triton_server_factory(out)


def _url(server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def _assert_same(a, b, path: str = "result") -> None:
    """Recursive equality of ``to_dict`` trees; floats within 1e-4 (cosine-level for embeddings)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            if key not in SKIPPED:
                _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)}"
        if a and all(isinstance(x, float) for x in a):
            np.testing.assert_allclose(a, b, atol=1e-4, err_msg=path)
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, abs_tol=1e-4), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _inputs(sample_paths):
    """Each photo as a JPEG path (the server decodes it on the bytes path) and as a decoded RGB array."""
    return [*sample_paths, decode_image(sample_paths[1].read_bytes())]


def _calls(client, image):
    return (
        client.detect_threats(image, conf=THREAT_CONF),
        client.estimate_poses(image, conf=LOW_CONF),
        client.enrich(image, conf=THREAT_CONF),  # threats, and more persons than one OSNet request holds
        client.enrich(image),  # the server's default thresholds
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shm_results_equal_bytes_results_when_the_same_image_is_sent(every_class_server, sample_paths, protocol):
    url = _url(every_class_server, protocol)
    with (
        EnrichmentClient(url, protocol=protocol) as over_bytes,
        EnrichmentClient(url, protocol=protocol, transport="shm") as over_shm,
    ):
        over_shm.wait_until_ready(60)
        for image in _inputs(sample_paths):
            want, got = _calls(over_bytes, image), _calls(over_shm, image)
            threats, poses, enriched, _ = got
            assert threats.threats and poses and enriched.persons and enriched.threats.threats  # real detections
            assert any(p.reid is not None and any(p.reid.embedding) for p in enriched.persons)
            for w, g in zip(want, got, strict=True):
                if isinstance(w, list):
                    _assert_same([p.to_dict() for p in w], [p.to_dict() for p in g])
                else:
                    _assert_same(w.to_dict(), g.to_dict())
        assert {r.name for r in over_shm._core.shm.regions()}  # the tensors really went through shm


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_shm_results_equal_bytes_results_when_the_same_image_is_sent(every_class_server, sample_paths, protocol):
    url = _url(every_class_server, protocol)

    async def run():
        async with (
            AsyncEnrichmentClient(url, protocol=protocol) as over_bytes,
            AsyncEnrichmentClient(url, protocol=protocol, transport="shm") as over_shm,
        ):
            await over_shm.wait_until_ready(60)
            out = []
            for c in (over_bytes, over_shm):
                out.append(
                    await asyncio.gather(
                        c.detect_threats_batch(sample_paths, conf=THREAT_CONF),
                        c.estimate_poses_batch(sample_paths, conf=LOW_CONF),
                        c.enrich_batch(sample_paths, conf=LOW_CONF),
                    )
                )
            return out

    (threats_b, poses_b, enrich_b), (threats_s, poses_s, enrich_s) = asyncio.run(run())
    assert all(r.threats for r in threats_s) and all(poses_s) and all(r.persons for r in enrich_s)
    _assert_same([r.to_dict() for r in threats_b], [r.to_dict() for r in threats_s])
    _assert_same([[p.to_dict() for p in r] for r in poses_b], [[p.to_dict() for p in r] for r in poses_s])
    _assert_same([r.to_dict() for r in enrich_b], [r.to_dict() for r in enrich_s])


# --------------------------------------------------------------------------------------------- bad tensors


def _module(protocol: str):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return grpcclient if protocol == "grpc" else httpclient


def _good_tensors(sample_paths) -> tuple[np.ndarray, np.ndarray]:
    tensor, info = letterbox(decode_image(sample_paths[0].read_bytes()))
    return tensor[None], info.to_array()[None]


def _infer(client, module, model: str, images: np.ndarray, info: np.ndarray):
    inputs = []
    for name, array in ((ct.IMAGES, images), (ct.LETTERBOX_INFO, info)):
        from tritonclient.utils import np_to_triton_dtype

        item = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    outputs = [module.InferRequestedOutput(t.name) for t in ct.model_spec(model).outputs]
    return client.infer(model, inputs, outputs=outputs)


_GOOD = object()


@pytest.mark.parametrize(
    ("images", "info", "words"),
    [
        (np.float32, _GOOD, "(?i)images.*(type|dtype|FP32|UINT8)|(type|dtype|FP32|UINT8).*images"),
        ((1, 640, 640, 4), _GOOD, "(?i)images.*shape|shape.*images"),
        # no stride-32 letterbox is 641 wide (Triton's dims check, or the detector's rule with dynamic H/W)
        ((1, 640, 641, 3), _GOOD, "(?i)images.*(shape|multiples of)|shape.*images"),
        (_GOOD, (1, 4), "(?i)LETTERBOX_INFO.*shape|shape.*LETTERBOX_INFO"),
        (_GOOD, [np.nan, 1080, 0.5, 0, 100], "LETTERBOX_INFO"),
        (_GOOD, [0, 810, 0.79, 0, 0], "LETTERBOX_INFO"),
        (_GOOD, [1080, 810, -0.5, 0, 0], "LETTERBOX_INFO"),
        (_GOOD, [1080, 810, 0.59, -3, 0], "LETTERBOX_INFO"),
    ],
    ids=[
        "images-fp32",
        "images-4-channels",
        "images-641-wide",
        "info-4-values",
        "info-nan",
        "info-zero-height",
        "info-neg-gain",
        "info-neg-pad",
    ],
)
@pytest.mark.parametrize("model", [ct.POSE_TENSOR_ENSEMBLE, ct.THREAT_TENSOR_ENSEMBLE])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tensor_ensemble_returns_invalid_arg_when_tensor_is_bad(
    enrichment_server, sample_paths, protocol, model, images, info, words
):
    from tritonclient.utils import InferenceServerException

    good_images, good_info = _good_tensors(sample_paths)
    if images is _GOOD:
        images = good_images
    elif isinstance(images, tuple):
        images = np.zeros(images, np.uint8)
    else:
        images = good_images.astype(images)
    if info is _GOOD:
        info = good_info
    elif isinstance(info, tuple):
        info = np.zeros(info, np.float32)
    else:
        info = np.array([info], np.float32)
    module = _module(protocol)
    with module.InferenceServerClient(_url(enrichment_server, protocol)) as raw:
        with pytest.raises(InferenceServerException, match=words) as caught:
            _infer(raw, module, model, images, info)
        assert caught.value.status() in ("StatusCode.INVALID_ARGUMENT", "400")
        assert isinstance(translate_error(caught.value, url="u", model=model), InvalidInputError)
        assert _infer(raw, module, model, good_images, good_info).as_numpy(ct.NUM_DETECTIONS) is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tensor_ensemble_serves_other_requests_when_one_concurrent_request_is_bad(
    enrichment_server, sample_paths, protocol
):
    from tritonclient.utils import InferenceServerException

    images, info = _good_tensors(sample_paths)
    bad_info = info.copy()
    bad_info[0, 2] = np.nan
    module = _module(protocol)
    url = _url(enrichment_server, protocol)

    def call(i: int):
        with module.InferenceServerClient(url) as raw:
            try:
                out = _infer(raw, module, ct.POSE_TENSOR_ENSEMBLE, images, bad_info if i == 2 else info)
                return out.as_numpy(ct.BOXES)
            except InferenceServerException as err:
                return err

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    assert isinstance(results[2], InferenceServerException)
    assert results[2].status() in ("StatusCode.INVALID_ARGUMENT", "400")
    good = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, np.ndarray) for r in good), good
    for r in good[1:]:
        np.testing.assert_allclose(r, good[0], atol=1e-4)


def test_tensor_ensemble_returns_invalid_arg_when_shm_letterbox_info_is_bad(enrichment_server, sample_paths):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    images, _ = _good_tensors(sample_paths)
    bad_info = np.array([[480, 640, 0.0, 0, 80]], np.float32)  # zero gain
    region = ShmRegion(images.nbytes + bad_info.nbytes, "test_bad_info")
    raw = grpcclient.InferenceServerClient(enrichment_server.grpc_url)
    try:
        region.write(images)
        region.write(bad_info, offset=images.nbytes)
        raw.register_system_shared_memory(region.name, region.key, region.byte_size)
        pixels = grpcclient.InferInput(ct.IMAGES, list(images.shape), "UINT8")
        pixels.set_shared_memory(region.name, images.nbytes)
        lb = grpcclient.InferInput(ct.LETTERBOX_INFO, list(bad_info.shape), "FP32")
        lb.set_shared_memory(region.name, bad_info.nbytes, offset=images.nbytes)
        with pytest.raises(InferenceServerException, match="LETTERBOX_INFO") as caught:
            raw.infer(ct.THREAT_TENSOR_ENSEMBLE, [pixels, lb])
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        raw.unregister_system_shared_memory(region.name)
        raw.close()
        region.destroy()
