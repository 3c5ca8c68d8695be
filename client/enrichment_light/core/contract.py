"""The tensor contract: the one source of truth for model names, tensor names, dtypes and shapes.

Configs (`config.pbtxt`), the exporters, the Python-backend models, the clients, the deployment
manifests and the tests all import this module. Shapes exclude the batch dimension when the model
has ``max_batch_size > 0``; ``-1`` marks a dimension that varies per request or per checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --- sizes ----------------------------------------------------------------------------------
DETECTOR_INPUT_SIZE = 640  # the letterbox target: the longer side (square mode: both sides)
# Rect letterbox (Ultralytics ``LetterBox(auto=True)``): each side is padded only up to a multiple of
# the stride, so a detector input is H x W with H, W multiples of 32 in [32, 640] (one of them 640).
DETECTOR_STRIDE = 32
DETECTOR_MIN_SIDE = DETECTOR_STRIDE
DETECTOR_MAX_SIDE = DETECTOR_INPUT_SIZE
# The TensorRT profile's opt shape: a 16:9 camera (1920x1080 -> 640x360 -> 384 x 640).
DETECTOR_OPT_HW = (384, 640)
LETTERBOX_MODES = ("rect", "square")  # preprocess/enrich config parameter ``letterbox``
DEFAULT_LETTERBOX = "rect"
LETTERBOX_PAD_VALUE = 114
NUM_ANCHORS_640 = 8400
NUM_KEYPOINTS = 17
KEYPOINT_DIMS = 3
POSE_RAW_CHANNELS = 4 + 1 + NUM_KEYPOINTS * KEYPOINT_DIMS  # 56
REID_INPUT_HEIGHT = 256
REID_INPUT_WIDTH = 128
EMBEDDING_DIMENSION = 512
MAX_DETECTIONS = 100  # padded output length of the postprocessors (EfficientNMS convention)
MAX_PERSONS_PER_FRAME = 32  # crops sent to OSNet per request
LETTERBOX_INFO_LEN = 5  # orig_h, orig_w, gain, pad_left, pad_top
DEFAULT_MAX_PIXELS = 40_000_000

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

# Skeleton edges (COCO order) used to draw poses.
SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

# --- ports ----------------------------------------------------------------------------------
HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002

# --- model names ----------------------------------------------------------------------------
PREPROCESS = "preprocess"
POSE_MODEL = "yolov8n_pose"
THREAT_MODEL = "yolov8n_threat"
REID_MODEL = "osnet_x0_25"
POSE_POSTPROCESS = "pose_postprocess"
THREAT_POSTPROCESS = "threat_postprocess"
REID_CROPS = "reid_crops"
POSE_ENSEMBLE = "pose"
THREAT_ENSEMBLE = "threat"
REID_ENSEMBLE = "reid"
ENRICH = "enrich"
# Tensor-input entry points (the client's shared-memory transport): an already letterboxed uint8
# tensor plus its LETTERBOX_INFO -> detector -> the same postprocessor as the bytes ensembles.
POSE_TENSOR_ENSEMBLE = "pose_tensor"
THREAT_TENSOR_ENSEMBLE = "threat_tensor"

INFERENCE_MODELS = (POSE_MODEL, THREAT_MODEL, REID_MODEL)
PYTHON_MODELS = (PREPROCESS, POSE_POSTPROCESS, THREAT_POSTPROCESS, REID_CROPS, ENRICH)
ENSEMBLES = (POSE_ENSEMBLE, THREAT_ENSEMBLE, REID_ENSEMBLE, POSE_TENSOR_ENSEMBLE, THREAT_TENSOR_ENSEMBLE)
ALL_MODELS = INFERENCE_MODELS + PYTHON_MODELS + ENSEMBLES

# --- tensor names -------------------------------------------------------------------------
IMAGE_BYTES = "IMAGE_BYTES"  # one encoded image (JPEG/PNG/WebP/BMP) per request
IMAGES = "images"  # letterboxed uint8 NHWC RGB
RAW_OUTPUT = "output0"  # raw YOLOv8 head output
CROPS = "crops"  # uint8 NHWC RGB person crops
EMBEDDINGS = "embeddings"  # L2-normalised float32
LETTERBOX_INFO = "LETTERBOX_INFO"
PERSON_BOXES = "PERSON_BOXES"  # float32 [K, 4] xyxy in original pixels
CONF_THRESHOLD = "CONF_THRESHOLD"  # optional per-request override
IOU_THRESHOLD = "IOU_THRESHOLD"  # optional per-request override
NUM_DETECTIONS = "NUM_DETECTIONS"
BOXES = "BOXES"
SCORES = "SCORES"
CLASS_IDS = "CLASS_IDS"
KEYPOINTS = "KEYPOINTS"
POSE_CLASS = "POSE_CLASS"  # int32 index into PoseClass order (see labels.POSE_CLASS_ORDER)
POSE_CONFIDENCE = "POSE_CONFIDENCE"
SUSPICIOUS = "SUSPICIOUS"
THREAT_TYPE = "THREAT_TYPE"  # BYTES
SEVERITY = "SEVERITY"  # int32 index into Severity order (see labels.SEVERITY_ORDER)
MAX_SEVERITY = "MAX_SEVERITY"
NUM_PERSONS = "NUM_PERSONS"
NUM_THREATS = "NUM_THREATS"
THREAT_BOXES = "THREAT_BOXES"
THREAT_SCORES = "THREAT_SCORES"
THREAT_CLASS_IDS = "THREAT_CLASS_IDS"
PERSON_SCORES = "PERSON_SCORES"

# numpy dtype -> Triton config dtype / wire dtype
_TRITON_DTYPES = {
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.object_): "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model: name, numpy dtype and shape without the batch dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    optional: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if self.dtype not in _TRITON_DTYPES:
            raise ValueError(f"tensor {self.name!r}: unsupported dtype {self.dtype}")
        if any(d == 0 or d < -1 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: dims must be positive or -1, got {self.shape}")

    @property
    def triton_dtype(self) -> str:
        """The wire dtype name, e.g. ``"UINT8"`` (tritonclient and the inference protocol)."""
        return _TRITON_DTYPES[self.dtype]

    @property
    def config_dtype(self) -> str:
        """The config.pbtxt dtype name, e.g. ``"TYPE_UINT8"`` (``TYPE_STRING`` for BYTES)."""
        wire = self.triton_dtype
        return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


@dataclass(frozen=True)
class ModelSpec:
    """A model's name, tensors and batching as every config and client must see them."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    kind: str  # "inference" | "python" | "ensemble"
    parameters: dict[str, str] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec:
        """Return the input called `name`."""
        return _find(self.inputs, name, self.name)

    def output(self, name: str) -> TensorSpec:
        """Return the output called `name`."""
        return _find(self.outputs, name, self.name)


def _find(specs: tuple[TensorSpec, ...], name: str, model: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"model {model!r} has no tensor {name!r}; it has {[s.name for s in specs]}")


_F32, _I32, _U8, _BOOL, _BYTES = np.float32, np.int32, np.uint8, np.bool_, np.object_
_DET = MAX_DETECTIONS


def _thresholds() -> tuple[TensorSpec, ...]:
    return (
        TensorSpec(CONF_THRESHOLD, _F32, (1,), optional=True),
        TensorSpec(IOU_THRESHOLD, _F32, (1,), optional=True),
    )


_IMAGE_IN = TensorSpec(IMAGE_BYTES, _BYTES, (1,))
_LB_INFO = TensorSpec(LETTERBOX_INFO, _F32, (LETTERBOX_INFO_LEN,))
_DETECTOR_IN = TensorSpec(IMAGES, _U8, (-1, -1, 3))  # H, W: see DETECTOR_STRIDE (square mode: 640 x 640)
_POSE_OUTPUTS = (
    TensorSpec(NUM_DETECTIONS, _I32, (1,)),
    TensorSpec(BOXES, _F32, (_DET, 4)),
    TensorSpec(SCORES, _F32, (_DET,)),
    TensorSpec(KEYPOINTS, _F32, (_DET, NUM_KEYPOINTS, KEYPOINT_DIMS)),
    TensorSpec(POSE_CLASS, _I32, (_DET,)),
    TensorSpec(POSE_CONFIDENCE, _F32, (_DET,)),
    TensorSpec(SUSPICIOUS, _BOOL, (_DET,)),
)
_THREAT_OUTPUTS = (
    TensorSpec(NUM_DETECTIONS, _I32, (1,)),
    TensorSpec(BOXES, _F32, (_DET, 4)),
    TensorSpec(SCORES, _F32, (_DET,)),
    TensorSpec(CLASS_IDS, _I32, (_DET,)),
    TensorSpec(THREAT_TYPE, _BYTES, (_DET,)),
    TensorSpec(SEVERITY, _I32, (_DET,)),
    TensorSpec(MAX_SEVERITY, _I32, (1,)),
)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            # The optional thresholds are only validated here (before any decode), so that a bad
            # override fails the request before the detector runs; the postprocessor applies them.
            PREPROCESS,
            inputs=(_IMAGE_IN, *_thresholds()),
            outputs=(_DETECTOR_IN, _LB_INFO),
            max_batch_size=8,
            kind="python",
        ),
        ModelSpec(
            POSE_MODEL,
            inputs=(_DETECTOR_IN,),
            outputs=(TensorSpec(RAW_OUTPUT, _F32, (POSE_RAW_CHANNELS, -1)),),
            max_batch_size=8,
            kind="inference",
        ),
        ModelSpec(
            THREAT_MODEL,
            inputs=(_DETECTOR_IN,),
            outputs=(TensorSpec(RAW_OUTPUT, _F32, (-1, -1)),),  # [4 + nc, anchors]
            max_batch_size=8,
            kind="inference",
        ),
        ModelSpec(
            REID_MODEL,
            inputs=(TensorSpec(CROPS, _U8, (REID_INPUT_HEIGHT, REID_INPUT_WIDTH, 3)),),
            outputs=(TensorSpec(EMBEDDINGS, _F32, (EMBEDDING_DIMENSION,)),),
            max_batch_size=MAX_PERSONS_PER_FRAME,
            kind="inference",
        ),
        ModelSpec(
            POSE_POSTPROCESS,
            inputs=(TensorSpec(RAW_OUTPUT, _F32, (POSE_RAW_CHANNELS, -1)), _LB_INFO, *_thresholds()),
            outputs=_POSE_OUTPUTS,
            max_batch_size=8,
            kind="python",
        ),
        ModelSpec(
            THREAT_POSTPROCESS,
            inputs=(TensorSpec(RAW_OUTPUT, _F32, (-1, -1)), _LB_INFO, *_thresholds()),
            outputs=_THREAT_OUTPUTS,
            max_batch_size=8,
            kind="python",
        ),
        ModelSpec(
            # One image + K boxes -> K crops. Not batchable across requests (K varies), so
            # max_batch_size=0; OSNet behind it batches the crops dynamically.
            REID_CROPS,
            inputs=(TensorSpec(IMAGE_BYTES, _BYTES, (1,)), TensorSpec(PERSON_BOXES, _F32, (-1, 4))),
            outputs=(TensorSpec(CROPS, _U8, (-1, REID_INPUT_HEIGHT, REID_INPUT_WIDTH, 3)),),
            max_batch_size=0,
            kind="python",
        ),
        ModelSpec(
            POSE_ENSEMBLE,
            inputs=(_IMAGE_IN, *_thresholds()),
            outputs=_POSE_OUTPUTS,
            max_batch_size=8,
            kind="ensemble",
        ),
        ModelSpec(
            THREAT_ENSEMBLE,
            inputs=(_IMAGE_IN, *_thresholds()),
            outputs=_THREAT_OUTPUTS,
            max_batch_size=8,
            kind="ensemble",
        ),
        # The tensor-input twins: preprocess's outputs (images, LETTERBOX_INFO) come with the request.
        *(
            ModelSpec(
                name,
                inputs=(_DETECTOR_IN, _LB_INFO, *_thresholds()),
                outputs=outputs,
                max_batch_size=8,
                kind="ensemble",
            )
            for name, outputs in ((POSE_TENSOR_ENSEMBLE, _POSE_OUTPUTS), (THREAT_TENSOR_ENSEMBLE, _THREAT_OUTPUTS))
        ),
        ModelSpec(
            REID_ENSEMBLE,
            inputs=(TensorSpec(IMAGE_BYTES, _BYTES, (1,)), TensorSpec(PERSON_BOXES, _F32, (-1, 4))),
            outputs=(TensorSpec(EMBEDDINGS, _F32, (-1, EMBEDDING_DIMENSION)),),
            max_batch_size=0,
            kind="ensemble",
        ),
        ModelSpec(
            # BLS: decode once, run pose + threat concurrently, crop persons, embed them.
            ENRICH,
            inputs=(_IMAGE_IN, *_thresholds()),
            outputs=(
                TensorSpec(NUM_THREATS, _I32, (1,)),
                TensorSpec(THREAT_BOXES, _F32, (_DET, 4)),
                TensorSpec(THREAT_SCORES, _F32, (_DET,)),
                TensorSpec(THREAT_CLASS_IDS, _I32, (_DET,)),
                TensorSpec(THREAT_TYPE, _BYTES, (_DET,)),
                TensorSpec(SEVERITY, _I32, (_DET,)),
                TensorSpec(MAX_SEVERITY, _I32, (1,)),
                TensorSpec(NUM_PERSONS, _I32, (1,)),
                TensorSpec(BOXES, _F32, (_DET, 4)),
                TensorSpec(PERSON_SCORES, _F32, (_DET,)),
                TensorSpec(KEYPOINTS, _F32, (_DET, NUM_KEYPOINTS, KEYPOINT_DIMS)),
                TensorSpec(POSE_CLASS, _I32, (_DET,)),
                TensorSpec(POSE_CONFIDENCE, _F32, (_DET,)),
                TensorSpec(SUSPICIOUS, _BOOL, (_DET,)),
                TensorSpec(EMBEDDINGS, _F32, (_DET, EMBEDDING_DIMENSION)),
                TensorSpec(LETTERBOX_INFO, _F32, (LETTERBOX_INFO_LEN,)),
            ),
            max_batch_size=8,
            kind="python",
        ),
    )
}


def model_spec(name: str) -> ModelSpec:
    """Return the contract for model `name`, or raise KeyError naming the known models."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
