"""Padded server outputs (EfficientNMS convention) -> the public result dataclasses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from enrichment_light.client.results import EnrichmentResult, PersonResult, PoseResult, ReIDResult, ThreatResult
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError

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


def decode_threats(
    padded: Mapping[str, np.ndarray],
    *,
    elapsed_ms: float,
    backend: str,
    class_names: Sequence[str] | None = None,
) -> ThreatResult:
    """Padded threat tensors of one image (no batch axis) -> :class:`ThreatResult`."""
    from enrichment_light.core.processing.threat import ThreatDetections

    try:
        dets = ThreatDetections.from_padded(padded, class_names=class_names)
    except ValueError as err:
        raise InvalidInputError(f"malformed threat outputs from the server: {err}") from err
    return dets.to_result(inference_time_ms=elapsed_ms, backend=backend)


def decode_poses(padded: Mapping[str, np.ndarray]) -> list[PoseResult]:
    """Padded pose tensors of one image (no batch axis) -> one :class:`PoseResult` per person."""
    from enrichment_light.core.processing.detection import pose_results

    return pose_results(padded)


def reid_results(embeddings: np.ndarray) -> list[ReIDResult]:
    """One :class:`ReIDResult` per row of a float32 ``[K, 512]`` array."""
    from enrichment_light.core.processing.reid import embedding_hash

    emb = np.asarray(embeddings, dtype=np.float32).reshape(-1, ct.EMBEDDING_DIMENSION)
    return [ReIDResult(embedding=row.tolist(), embedding_hash=embedding_hash(row)) for row in emb]


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
