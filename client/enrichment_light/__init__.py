"""enrichment-light: person re-id, pose and threat detection served by NVIDIA Triton."""

from enrichment_light import _compat
from enrichment_light import client as _client
from enrichment_light.client.results import (
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
from enrichment_light.core.errors import (
    AccessDeniedError,
    EnrichmentError,
    InferenceTimeoutError,
    InvalidImageError,
    InvalidInputError,
    InvalidModelPathError,
    ModelFileError,
    ModelNotReadyError,
    ModelRestartingError,
    RuntimeMissingError,
    ServerStartError,
    ServerUnavailableError,
)

__version__ = "0.1.0"

# Client classes load on first use: the Python-backend models on the server import this package
# and must not pay for the client (tritonclient, the thread pools) they never use.
_LAZY = {"validate_model_path": "enrichment_light.core.paths"}
_LAZY.update(
    (name, "enrichment_light.client") for name in _client.__all__ if name not in ("CLIENT_MODELS", "GalleryMatch")
)

# Modules that moved in 0.2 (``enrichment_light.contract`` -> ``enrichment_light.core.contract``, ...)
# stay importable under their old paths for one release, with a DeprecationWarning.
_compat.install()


__getattr__ = _compat.lazy_exports(__name__, _LAZY)

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
    "PersonGallery",
    "PersonReID",
    "PersonResult",
    "PoseClass",
    "PoseEstimator",
    "PoseResult",
    "ReIDResult",
    "RuntimeMissingError",
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
