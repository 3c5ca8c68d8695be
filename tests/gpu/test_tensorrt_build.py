"""Real TensorRT plans on a GPU: OSNet and both YOLO detectors, built, verified, and served by Triton.

Skipped without an NVIDIA GPU (tests/conftest.py gives the driver's own words), without TensorRT
(the message of :func:`tensorrt_plan.tensorrt_version`), and, for the Triton part, without a
``tritonserver`` that has the TensorRT backend (the PyPI wheel has only the Python backend).
The ONNX files are random-init exports (no weights download here); set
``ENRICHMENT_GPU_TEST_WEIGHTS_<MODEL>`` (e.g. ``..._YOLOV8N_THREAT=/models/best.pt``) to use trained ones.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from enrichment_export import tensorrt_plan as tp
from enrichment_light.core import contract

pytestmark = pytest.mark.gpu
TRITON_HOME = Path(os.environ.get("TRITON_HOME", "/opt/tritonserver"))
TENSORRT_BACKEND = TRITON_HOME / "backends" / "tensorrt" / "libtriton_tensorrt.so"


@pytest.fixture(scope="module")
def device():
    try:
        return tp.detect_device_info()
    except tp.DeviceUnavailableError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENRICHMENT_MODEL_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), os.getcwd()]))
        yield folder


@pytest.fixture(scope="module")
def onnx_files(workdir, device):
    ox = pytest.importorskip("enrichment_export.onnx_export", reason="exporting ONNX needs the [export] extra (torch)")
    out = {}
    for name in contract.INFERENCE_MODELS:
        weights = os.environ.get(f"ENRICHMENT_GPU_TEST_WEIGHTS_{name.upper()}")
        source = weights or ox.untrained_model(name)
        out[name] = ox.export_onnx(name, source, workdir / "onnx" / f"{name}.onnx").path
    return out


@pytest.mark.parametrize("model_name", contract.INFERENCE_MODELS)
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_ensure_plan_builds_verified_plan_when_gpu_and_tensorrt_present(
    onnx_files, workdir, device, model_name, precision
):
    request = tp.make_plan_request(
        model_name,
        onnx_files[model_name],
        device=device,
        cache_dir=workdir / f"cache-{precision}",
        precision=precision,
        profile=tp.BatchProfile(1, 4, 8),
        workspace_bytes=512 << 20,
    )
    start = time.perf_counter()
    outcome = tp.ensure_plan(request, device)
    seconds = time.perf_counter() - start
    assert outcome.action == "built" and outcome.verification.passed, outcome.verification
    print(f"{model_name} {precision}: built and verified in {seconds:.1f}s, {request.plan_path.stat().st_size} bytes")
    side = tp.read_sidecar(tp.sidecar_path(request.plan_path))
    assert side.tensorrt_version == device.tensorrt_version and side.precision == precision
    assert side.compute_capability == device.cc and request.timing_cache.is_file()
    # an independent batch of real photos, plan vs onnxruntime, per channel group
    x = tp.sample_batch(request, 3)
    got = tp.run_plan(request.plan_path.read_bytes(), x, request.input_name)
    want = tp.run_onnxruntime(request.onnx_path, x, request.input_name)
    for name, ref in want.items():
        _, problems = tp.compare_groups(model_name, got[name], ref, tp.GROUP_TOLERANCES[precision])
        assert not problems, problems
    assert tp.ensure_plan(request, device).action == "up-to-date"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_triton_serves_yolo_plans_with_tensorrt_backend(onnx_files, workdir, device):
    if not TENSORRT_BACKEND.is_file() or shutil.which("tritonserver") is None:
        pytest.skip(f"no tritonserver with the TensorRT backend ({TENSORRT_BACKEND} or tritonserver on PATH missing)")
    from enrichment_export import repository as rb

    plans = workdir / "plans"
    for name in rb.PLAN_MODELS:
        request = tp.make_plan_request(name, onnx_files[name], device=device, cache_dir=plans)
        tp.ensure_plan(request, device)
    out = workdir / "repo"
    result = rb.build_repository(
        out, target="tensorrt", artifacts=workdir / "onnx", plans=plans, device=device, fallback="none"
    )
    assert all(result.manifest["models"][n]["backend"] == "tensorrt" for n in rb.PLAN_MODELS)
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    cmd = ["tritonserver", f"--model-repository={out}", "--model-control-mode=explicit",
           *(f"--load-model={n}" for n in rb.PLAN_MODELS), "--disable-auto-complete-config",
           f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}"]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if all(client.is_model_ready(n) for n in rb.PLAN_MODELS):
                    break
            except Exception:
                pass
            time.sleep(1)
        assert server.poll() is None and all(client.is_model_ready(n) for n in rb.PLAN_MODELS), "Triton not ready"
        images = tp.load_samples()["images"]
        for name in rb.PLAN_MODELS:
            assert client.get_model_config(name)["platform"] == "tensorrt_plan"
            inp = httpclient.InferInput(contract.IMAGES, list(images.shape), "UINT8")
            inp.set_data_from_numpy(images)
            got = client.infer(name, [inp]).as_numpy(contract.RAW_OUTPUT)
            want = tp.run_onnxruntime(onnx_files[name], images, contract.IMAGES)[contract.RAW_OUTPUT]
            _, problems = tp.compare_groups(name, got, want, tp.GROUP_TOLERANCES["fp16"])
            assert not problems, f"{name} served by Triton: {problems}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
