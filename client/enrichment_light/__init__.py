"""enrichment-light: person re-id, pose and threat detection served by NVIDIA Triton."""

from enrichment_light.errors import (
    EnrichmentError,
    InferenceTimeoutError,
    InvalidImageError,
    InvalidInputError,
    InvalidModelPathError,
    ModelFileError,
    ModelNotReadyError,
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

__all__ = [
    "EnrichmentError",
    "EnrichmentResult",
    "InferenceTimeoutError",
    "InvalidImageError",
    "InvalidInputError",
    "InvalidModelPathError",
    "Keypoint",
    "ModelFileError",
    "ModelNotReadyError",
    "PersonResult",
    "PoseClass",
    "PoseResult",
    "ReIDResult",
    "ServerStartError",
    "ServerUnavailableError",
    "Severity",
    "ThreatDetection",
    "ThreatResult",
]
