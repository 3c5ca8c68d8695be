"""Pure, vectorised NumPy/OpenCV processing shared by the Triton Python-backend models and the client.

Submodules: ``image`` (decode, letterbox), ``detection`` (NMS, scaling, EfficientNMS padding),
``pose_rules`` (posture classes), ``threat`` (name-based taxonomy), ``reid`` (crops, cosine maths).
"""

from enrichment_light.core.processing.detection import (
    Detections,
    PoseDetections,
    nms,
    pad_detections,
    pad_pose,
    postprocess_detections,
    postprocess_pose,
    scale_boxes,
    scale_keypoints,
    unpad_detections,
    unpad_pose,
)
from enrichment_light.core.processing.image import (
    SUPPORTED_FORMATS,
    LetterboxInfo,
    decode_image,
    image_format,
    image_size,
    letterbox,
)
from enrichment_light.core.processing.pose_rules import (
    DEFAULT_POSE_RULES,
    PoseRules,
    classify_pose,
    classify_poses,
    pose_confidences,
    suspicious_mask,
)
from enrichment_light.core.processing.reid import (
    DEFAULT_SIMILARITY_THRESHOLD,
    cosine_similarity,
    cosine_similarity_matrix,
    embedding_hash,
    extract_person_crops,
    is_same_person,
    l2_normalize,
)
from enrichment_light.core.processing.threat import (
    ThreatDetections,
    ThreatMapping,
    ThreatTaxonomy,
    ThreatTaxonomyError,
    select_threats,
)

__all__ = [
    "DEFAULT_POSE_RULES",
    "DEFAULT_SIMILARITY_THRESHOLD",
    "SUPPORTED_FORMATS",
    "Detections",
    "LetterboxInfo",
    "PoseDetections",
    "PoseRules",
    "ThreatDetections",
    "ThreatMapping",
    "ThreatTaxonomy",
    "ThreatTaxonomyError",
    "classify_pose",
    "classify_poses",
    "cosine_similarity",
    "cosine_similarity_matrix",
    "decode_image",
    "embedding_hash",
    "extract_person_crops",
    "image_format",
    "image_size",
    "is_same_person",
    "l2_normalize",
    "letterbox",
    "nms",
    "pad_detections",
    "pad_pose",
    "pose_confidences",
    "postprocess_detections",
    "postprocess_pose",
    "scale_boxes",
    "scale_keypoints",
    "select_threats",
    "suspicious_mask",
    "unpad_detections",
    "unpad_pose",
]
