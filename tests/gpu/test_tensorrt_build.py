"""Real TensorRT build of an exported ONNX on a GPU (skipped without CUDA or TensorRT)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from enrichment_export import onnx_export as ox
from enrichment_export import tensorrt_plan as tp
from enrichment_light.core import contract

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def osnet_onnx(tmp_path_factory):
    pytest.importorskip("tensorrt")
    folder = tmp_path_factory.mktemp("trt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENRICHMENT_MODEL_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), os.getcwd()]))
        result = ox.export_osnet_onnx(ox.untrained_model(contract.REID_MODEL), folder / "osnet.onnx")
        yield result.path, folder


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_ensure_plan_builds_verified_plan_when_gpu_and_tensorrt_present(osnet_onnx, precision):
    onnx_path, folder = osnet_onnx
    device = tp.detect_device_info()
    request = tp.make_plan_request(
        contract.REID_MODEL,
        onnx_path,
        device=device,
        cache_dir=folder / f"cache-{precision}",
        precision=precision,
        profile=tp.BatchProfile(1, 4, 8),
        workspace_bytes=256 << 20,
    )
    outcome = tp.ensure_plan(request, device)
    assert outcome.action == "built" and outcome.verification.passed
    assert request.plan_path.name == tp.plan_filename(device.compute_capability)
    side = tp.read_sidecar(tp.sidecar_path(request.plan_path))
    assert side.tensorrt_version == device.tensorrt_version and side.precision == precision
    assert request.timing_cache.is_file()

    # Parity on an independent batch, plan vs ONNX Runtime, raw outputs.
    x = tp.sample_batch(request, 3, seed=123)
    got = tp.run_plan(request.plan_path.read_bytes(), x, request.input_name)[contract.EMBEDDINGS]
    want = tp.run_onnxruntime(onnx_path, x, request.input_name)[contract.EMBEDDINGS]
    atol, rtol = tp.TOLERANCES[precision]
    assert np.abs(got - want).max() <= atol + rtol * np.abs(want).max()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-2)

    again = tp.ensure_plan(request, device)
    assert again.action == "up-to-date"
