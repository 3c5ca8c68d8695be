"""Padded server outputs (EfficientNMS convention) -> the public result dataclasses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from enrichment_light.client.results import (
    POSE_CLASS_ORDER,
    SEVERITY_ORDER,
    EnrichmentResult,
    Keypoint,
    PersonResult,
    PoseResult,
    ReIDResult,
    ThreatDetection,
    ThreatResult,
)
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.processing.detection import Detections
from enrichment_light.core.processing.threat import unpad_threats

# --------------------------------------------------------------------------------------------
# Decoding padded outputs (EfficientNMS convention: fixed-size arrays plus a count)
# --------------------------------------------------------------------------------------------


def first_image(out: Mapping[str, np.ndarray], names: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The first image of batched outputs, renamed ``{contract name: output name}``."""
    return {key: np.asarray(out[name])[0] for key, name in names.items()}


THREAT_KEYS = (ct.NUM_DETECTIONS, ct.BOXES, ct.SCORES, ct.CLASS_IDS, ct.THREAT_TYPE, ct.SEVERITY)
POSE_KEYS = (ct.NUM_DETECTIONS, ct.BOXES, ct.SCORES, ct.KEYPOINTS, ct.POSE_CLASS, ct.POSE_CONFIDENCE, ct.SUSPICIOUS)
#: ``enrich`` output names for the threat and pose tensors, keyed by the ensembles' names.
ENRICH_THREAT_NAMES = {
    ct.NUM_DETECTIONS: ct.NUM_THREATS,
    ct.BOXES: ct.THREAT_BOXES,
    ct.SCORES: ct.THREAT_SCORES,
    ct.CLASS_IDS: ct.THREAT_CLASS_IDS,
    ct.THREAT_TYPE: ct.THREAT_TYPE,
    ct.SEVERITY: ct.SEVERITY,
}
ENRICH_POSE_NAMES = {
    **{k: k for k in POSE_KEYS},
    ct.NUM_DETECTIONS: ct.NUM_PERSONS,
    ct.SCORES: ct.PERSON_SCORES,
}


def pose_results_of(poses: Detections) -> list[PoseResult]:
    """One :class:`~enrichment_light.client.results.PoseResult` per person, in score order.

    Confidences are clipped to ``[0, 1]`` (the model's sigmoid outputs can only leave that
    range by rounding), so the results' validation never rejects real model output.
    """
    out: list[PoseResult] = []
    kpts = poses.keypoints.astype(np.float64)
    kconf = np.clip(np.nan_to_num(kpts[..., 2]), 0.0, 1.0)
    scores = np.clip(poses.scores.astype(np.float64), 0.0, 1.0)
    pose_conf = np.clip(np.nan_to_num(poses.pose_confidence.astype(np.float64)), 0.0, 1.0)
    for i in range(len(poses)):
        keypoints = [
            Keypoint(name, float(kpts[i, k, 0]), float(kpts[i, k, 1]), float(kconf[i, k]))
            for k, name in enumerate(ct.KEYPOINT_NAMES)
        ]
        pose_class = POSE_CLASS_ORDER[int(poses.pose_class[i])]
        out.append(
            PoseResult(
                keypoints=keypoints,
                pose_class=pose_class,
                confidence=float(pose_conf[i]),
                is_suspicious=pose_class.is_suspicious,
                bbox=tuple(float(v) for v in poses.xyxy[i]),
                score=float(scores[i]),
            )
        )
    return out


def threat_result_of(threats: Detections, *, inference_time_ms: float = 0.0, backend: str = "unknown") -> ThreatResult:
    """The typed, seed-compatible :class:`~enrichment_light.client.results.ThreatResult` of `threats`."""
    detections = [
        ThreatDetection(
            threat_type=str(threats.threat_type[i]),
            confidence=float(threats.scores[i]),
            bbox=[float(v) for v in threats.xyxy[i]],
            severity=SEVERITY_ORDER[int(threats.severity[i])],
            class_name=str(threats.class_name[i]),
        )
        for i in range(len(threats))
    ]
    return ThreatResult.from_threats(detections, inference_time_ms=inference_time_ms, backend=backend)


def decode_threats(
    padded: Mapping[str, np.ndarray],
    *,
    elapsed_ms: float,
    backend: str,
    class_names: Sequence[str] | None = None,
) -> ThreatResult:
    """Padded threat tensors of one image (no batch axis) -> :class:`ThreatResult`."""
    try:
        dets = unpad_threats(padded, class_names=class_names)
    except ValueError as err:
        raise InvalidInputError(f"malformed threat outputs from the server: {err}") from err
    return threat_result_of(dets, inference_time_ms=elapsed_ms, backend=backend)


def decode_poses(padded: Mapping[str, np.ndarray]) -> list[PoseResult]:
    """Padded pose tensors of one image (no batch axis) -> one :class:`PoseResult` per person."""
    from enrichment_light.core.processing.detection import unpad_pose

    return pose_results_of(unpad_pose(padded))


def reid_results(embeddings: np.ndarray) -> list[ReIDResult]:
    """One :class:`ReIDResult` per row of a float32 ``[K, 512]`` array."""
    return ReIDResult.from_rows(np.asarray(embeddings, dtype=np.float32).reshape(-1, ct.EMBEDDING_DIMENSION))


def decode_enrich(
    out: Mapping[str, np.ndarray], *, elapsed_ms: float, backend: str, class_names: Sequence[str] | None = None
) -> EnrichmentResult:
    """Batched ``enrich`` outputs (first image) -> :class:`EnrichmentResult`."""
    from enrichment_light.core.processing.image import LetterboxInfo

    threats = decode_threats(
        first_image(out, ENRICH_THREAT_NAMES), elapsed_ms=elapsed_ms, backend=backend, class_names=class_names
    )
    poses = decode_poses(first_image(out, ENRICH_POSE_NAMES))
    embeddings = reid_results(np.asarray(out[ct.EMBEDDINGS])[0][: len(poses)])
    info = LetterboxInfo.from_array(np.asarray(out[ct.LETTERBOX_INFO])[0])
    return EnrichmentResult(
        threats=threats,
        persons=[PersonResult(pose, reid) for pose, reid in zip(poses, embeddings, strict=False)],
        image_height=info.orig_h,
        image_width=info.orig_w,
        inference_time_ms=elapsed_ms,
    )
