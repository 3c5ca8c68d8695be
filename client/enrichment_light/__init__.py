"""enrichment-light: person re-id, pose and threat detection served by NVIDIA Triton."""

from enrichment_light.errors import (
    AccessDeniedError,
    EnrichmentError,
    InferenceTimeoutError,
    InvalidImageError,
    InvalidInputError,
    InvalidModelPathError,
    ModelFileError,
    ModelNotReadyError,
    ModelRestartingError,
    ServerStartError,
    ServerUnavailableError,
)
from enrichment_light.results import (
    EnrichmentResult,
    Keypoint,
    PersonResult,
    PoseClass,
    PoseResult,
    ReIDResult,
    Severity,
    ThreatDetection,
    ThreatResult,
)

__version__ = "0.1.0"

# Client classes load on first use: the Python-backend models on the server import this package
# and must not pay for the client (tritonclient, the thread pools) they never use.
_LAZY = {
    "EnrichmentClient": "enrichment_light.client",
    "AsyncEnrichmentClient": "enrichment_light.aio",
    "BackendInfo": "enrichment_light._core",
    "PersonReID": "enrichment_light.facades",
    "PoseEstimator": "enrichment_light.facades",
    "ThreatDetector": "enrichment_light.facades",
    "load_person_reid": "enrichment_light.facades",
    "load_pose_estimator": "enrichment_light.facades",
    "load_threat_detector": "enrichment_light.facades",
    "validate_model_path": "enrichment_light.paths",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'enrichment_light' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AccessDeniedError",
    "AsyncEnrichmentClient",
    "BackendInfo",
    "EnrichmentClient",
    "EnrichmentError",
    "EnrichmentResult",
    "InferenceTimeoutError",
    "InvalidImageError",
    "InvalidInputError",
    "InvalidModelPathError",
    "Keypoint",
    "ModelFileError",
    "ModelNotReadyError",
    "ModelRestartingError",
    "PersonReID",
    "PersonResult",
    "PoseClass",
    "PoseEstimator",
    "PoseResult",
    "ReIDResult",
    "ServerStartError",
    "ServerUnavailableError",
    "Severity",
    "ThreatDetection",
    "ThreatDetector",
    "ThreatResult",
    "load_person_reid",
    "load_pose_estimator",
    "load_threat_detector",
    "validate_model_path",
]
