"""OSNet in bf16 on the CPU target (OpenVINO), and its accuracy gate.

``build-repository --reid-precision bf16`` serves the FP32 OSNet ONNX through OpenVINO with bf16
arithmetic on CPUs that have it natively (AVX512_BF16 or AMX): ~1.4x the onnxruntime FP32 speed on
the 2-core EPYC, where INT8 OSNet was 2x *slower* (its 16-48-channel convolutions are too thin for
int8 kernels; docs/cpu-performance.md). Nothing is exported: the precision is a runtime setting.

The gate, like INT8's (:mod:`enrichment_export.quantize`), always runs before anything is written:
the compiled bf16 model against onnxruntime FP32 on held-out crops, minimum cosine >= 0.99 by
default. No calibration, so every frame given can be held out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from enrichment_export.quantize import (
    AccuracyReport,
    AccuracyThresholds,
    embedding_report,
    enforce_gate,
    image_files,
    load_frames,
    model_inputs,
    onnx_session,
    packaged_sample_frames,
)
from enrichment_export.steps import timed_step
from enrichment_light.core import contract as ct
from enrichment_light.core.openvino_session import OpenVinoSession

LOGGER = logging.getLogger(__name__)


def bf16_gate(
    fp32_path: str | os.PathLike[str],
    *,
    holdout_dir: str | os.PathLike[str] | None = None,
    frames: Sequence[np.ndarray] | None = None,
    thresholds: AccuracyThresholds | None = None,
    force: bool = False,
) -> AccuracyReport:
    """Compare OSNet under OpenVINO bf16 with onnxruntime FP32 on held-out crops; refuse below the thresholds.

    Args:
        fp32_path: The FP32 OSNet ONNX that will be served.
        holdout_dir: Folder of the user's frames (several person-shaped crops each).
        frames: RGB frames instead of a folder.
        thresholds: Only ``min_cosine`` applies (default 0.99).
        force: Return a failing report instead of raising.

    Returns:
        The report (``passed`` false only when forced).

    Raises:
        AccuracyGateError: Below the thresholds and not forced.
        RuntimeMissingError: OpenVINO is missing or the CPU has no native bf16.
        CalibrationError: Unusable frames.
    """
    thresholds = thresholds or AccuracyThresholds()
    if frames is None:
        if holdout_dir is not None:
            frames = load_frames(image_files(holdout_dir))
        else:
            calibration, held = packaged_sample_frames()
            frames = calibration + held  # bf16 calibrates on nothing: every frame is held out
            LOGGER.warning(
                "%s bf16: no --holdout folder: gating on variants of the packaged sample photos; pass --holdout "
                "DIR with frames from your cameras",
                ct.REID_MODEL,
            )
    crops = np.concatenate(model_inputs(ct.REID_MODEL, frames))
    name = ct.model_spec(ct.REID_MODEL).inputs[0].name
    with timed_step(LOGGER, f"{ct.REID_MODEL}: accuracy gate bf16 vs FP32 on {len(crops)} held-out crops"):
        reference = onnx_session(fp32_path).run(None, {name: crops})[0]
        candidate = OpenVinoSession(fp32_path, precision="bf16").run(None, {name: crops})[0]
        report = embedding_report(ct.REID_MODEL, reference, candidate, thresholds)
    refused = "nothing written; --force-accuracy serves it anyway"
    enforce_gate(report, precision="bf16", force=force, refused=refused, forced="serving it")
    return report


def describe(report: AccuracyReport, *, forced: bool) -> dict[str, object]:
    """The manifest fields of a bf16 OSNet: its runtime, the gate figures, whether it was forced."""
    return {
        "runtime": "openvino",
        "bf16_accuracy": report.to_dict(),
        "bf16_gate_forced": bool(forced and not report.passed),
    }
