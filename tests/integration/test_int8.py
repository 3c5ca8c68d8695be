"""INT8 on the CPU target, judged with a real trained checkpoint, then served by the embedded Triton.

Frames: Ultralytics' ``bus.jpg`` and ``zidane.jpg``. Calibration uses the two photos and 11
augmented variants of each (seed 1); the held-out frames are 11 other variants of each (seed 7,
different crops, flips, scales and brightness, never the original photos), so the gate never sees
a calibration frame.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _client_fixtures import *  # noqa: F403
from _real_checkpoint import cache_dir, fall_detection_checkpoint

from enrichment_export import onnx_export, quantize
from enrichment_export.repository import build_repository
from enrichment_light.client import EnrichmentClient
from enrichment_light.core import contract as ct
from enrichment_light.core.processing.detection import postprocess_detections
from enrichment_light.core.processing.image import decode_image, letterbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def frames(sample_paths):
    bus, zidane = quantize.load_frames(sample_paths)
    calibration = quantize.augment(bus, variants=12, seed=1) + quantize.augment(zidane, variants=12, seed=1)
    held_out = quantize.augment(bus, variants=11, seed=7, include_original=False) + quantize.augment(
        zidane, variants=11, seed=7, include_original=False
    )
    return calibration, held_out


@pytest.fixture(scope="module")
def threat_models(tmp_path_factory, frames):
    """FP32 and gated INT8 ONNX of the real fall-detection checkpoint, and the INT8 export result."""
    pt = fall_detection_checkpoint()
    root = tmp_path_factory.mktemp("int8-threat")
    fp32 = onnx_export.export_onnx(ct.THREAT_MODEL, pt, root / "fp32.onnx", allowed_roots=[cache_dir()]).path
    calibration, held_out = frames
    result = quantize.export_int8(
        ct.THREAT_MODEL, fp32, root / "int8.onnx", calibration_frames=calibration, holdout_frames=held_out
    )
    return fp32, result


def test_export_int8_keeps_recall_and_precision_when_real_checkpoint_on_held_out_frames(threat_models):
    _, result = threat_models
    report = result.report
    print(report.summary())
    assert report.passed, report.summary()
    assert report.fp32_detections >= 20  # enough people in the held-out frames to judge on
    assert report.recall >= 0.95 and report.precision >= 0.95
    assert report.mean_score_diff <= 0.05
    meta = onnx_export.read_onnx_metadata(result.path)
    assert meta["precision"] == "int8"
    assert json.loads(meta["int8_accuracy"])["recall"] == pytest.approx(report.recall)
    assert json.loads(meta["int8_calibration"]) == {"frames": 24, "source": "user"}


def test_quantize_onnx_loses_the_detections_when_the_head_is_quantised_too(threat_models, frames, tmp_path):
    """The oracle for the recipe: whole-graph INT8 of the same checkpoint fails the same gate."""
    fp32, _ = threat_models
    calibration, held_out = frames
    naive = quantize.QuantizationRecipe(op_types=(), keep_float=())
    inputs = quantize.model_inputs(ct.THREAT_MODEL, calibration)
    path = quantize.quantize_onnx(fp32, tmp_path / "naive.onnx", inputs, model_name=ct.THREAT_MODEL, recipe=naive)
    report = quantize.accuracy_gate(ct.THREAT_MODEL, fp32, path, held_out)
    print(report.summary())
    assert not report.passed
    assert report.recall < 0.5


def test_export_int8_refuses_and_installs_nothing_when_thresholds_are_not_met(threat_models, frames, tmp_path):
    fp32, _ = threat_models
    calibration, held_out = frames
    out = tmp_path / "repo" / ct.THREAT_MODEL / "1" / "model.onnx"
    strict = quantize.AccuracyThresholds(max_mean_score_diff=0.0)
    with pytest.raises(quantize.AccuracyGateError, match=r"mean \|score diff\|.*nothing installed"):
        quantize.export_int8(
            ct.THREAT_MODEL, fp32, out, calibration_frames=calibration[:4], holdout_frames=held_out, thresholds=strict
        )
    assert not out.exists()


def test_build_repository_int8_is_served_and_reported_when_exported_int8(
    threat_models, frames, tmp_path, triton_server_factory, sample_paths
):
    _, threat = threat_models
    calibration, held_out = frames
    art = tmp_path / "artifacts"
    pose_fp32 = onnx_export.export_onnx(ct.POSE_MODEL, onnx_export.untrained_model(ct.POSE_MODEL), tmp_path / "p.onnx")
    # Random-init pose finds nothing, so its gate cannot pass: forced, for the plumbing only.
    pose = quantize.export_int8(
        ct.POSE_MODEL, pose_fp32.path, art / "pose.onnx", calibration_frames=calibration[:4],
        holdout_frames=held_out[:2], force=True,
    )  # fmt: skip
    assert pose.forced and not pose.report.passed
    reid = onnx_export.export_onnx(ct.REID_MODEL, onnx_export.untrained_model(ct.REID_MODEL), art / "reid.onnx")
    onnx = {ct.POSE_MODEL: pose.path, ct.THREAT_MODEL: threat.path, ct.REID_MODEL: reid.path}
    roots = [tmp_path, threat.path.parent]
    with pytest.raises(ValueError, match="--precision fp32 but these ONNX files are INT8"):
        build_repository(tmp_path / "refused", onnx=onnx, precision="fp32", allowed_roots=roots)
    result = build_repository(tmp_path / "repo", onnx=onnx, precision="int8", allowed_roots=roots)
    models = result.manifest["models"]
    assert [models[m]["precision"] for m in ct.INFERENCE_MODELS] == ["int8", "int8", "fp32"]
    assert models[ct.THREAT_MODEL]["int8_accuracy"]["passed"] is True
    assert models[ct.POSE_MODEL]["int8_gate_forced"] is True

    server = triton_server_factory(result.out_dir)
    image = sample_paths[0].read_bytes()
    with EnrichmentClient(server.grpc_url) as client:
        info = client.backend_info()
        assert {m: i.precision for m, i in info.items()} == {
            ct.POSE_MODEL: "int8", ct.THREAT_MODEL: "int8", ct.REID_MODEL: "fp32"
        }  # fmt: skip
        health = client.health()["models"]
        assert health[ct.THREAT_MODEL]["precision"] == "int8" and health[ct.POSE_ENSEMBLE]["precision"] == "-"
        served = client.detect_threats(image)
        letterbox_mode = client.model_config(ct.THREAT_ENSEMBLE)["parameters"]["letterbox"]["string_value"]
    with EnrichmentClient(server.http_url, protocol="http") as client:
        assert client.backend_info([ct.THREAT_MODEL])[ct.THREAT_MODEL].precision == "int8"

    # Oracle: the same INT8 file under bare onnxruntime and the reference postprocessing.
    lb, lb_info = letterbox(decode_image(image), auto=letterbox_mode == "rect")  # as the server letterboxes
    raw = quantize.onnx_session(threat.path).run(None, {ct.IMAGES: lb[None]})[0]
    expected = postprocess_detections(raw, [lb_info], conf=0.5, iou=0.7)[0]
    assert len(served.threats) == len(expected.scores) >= 3
    got = np.array(sorted(t.bbox for t in served.threats))
    want = np.array(sorted(expected.xyxy.tolist()))
    np.testing.assert_allclose(got, want, atol=1.0)
