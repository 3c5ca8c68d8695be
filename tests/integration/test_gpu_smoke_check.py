"""deploy/gpu_smoke_check.py (the client half of gpu-smoke.sh) against the real embedded CPU server.

The four requests must go through; the backend check must then fail, because on this server the
detectors run on onnxruntime in the Python backend, not as TensorRT plans.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from _client_fixtures import *  # noqa: F403

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "gpu_smoke_check.py"


def _load_check():
    spec = importlib.util.spec_from_file_location("gpu_smoke_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_smoke_check_sends_every_request_and_fails_backend_check_when_served_on_cpu(
    enrichment_server, client_repository, tmp_path, capsys
):
    manifest = json.loads((client_repository / "repository.json").read_text())
    assert manifest["models"]["yolov8n_pose"]["backend"] != "tensorrt"
    frame = tmp_path / "frame.png"
    code = _load_check().main(
        ["--url", enrichment_server.grpc_url, "--manifest", str(client_repository / "repository.json"),
         "--frame-out", str(frame), "--timeout-s", "60"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    for name in ("pose", "threat", "reid", "enrich"):
        assert f"ok {name}: " in out, out + err
    assert "ok reid: 1 embedding(s)" in out
    assert code == 1
    assert "FAILED yolov8n_pose: manifest backend is 'python', not 'tensorrt'" in err
    assert "yolov8n_threat: Triton serves it with 'onnxruntime'" in err
    assert frame.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
