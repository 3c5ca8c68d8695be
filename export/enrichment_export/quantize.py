"""INT8 ONNX for the CPU target: static QDQ quantisation with onnxruntime, and an accuracy gate.

:func:`quantize_onnx` quantises an exported FP32 model (``enrichment-export onnx``) with
``onnxruntime.quantization.quantize_static``: QDQ format, per-channel int8 weights, uint8
activations, MinMax calibration on the user's own frames, prepared exactly as serving prepares
them (letterboxed 640x640 for the detectors, 256x128 person-shaped crops for OSNet). What stays in
float is the :class:`QuantizationRecipe` of each model (see ``docs/int8.md`` for the
measurements behind it):

- the YOLOv8 detect/pose head's last 1x1 convs, DFL and decode (``/model/model.22/`` nodes other
  than the 3x3 conv stacks): the decode concatenates 0-640 px boxes and 0-1 scores, and one uint8
  scale cannot hold both (whole-graph INT8 kept 0 of 49 detections of a trained detector); the 3x3
  conv stacks are quantised, which took pose INT8 from 1.06x to 1.40x FP32 speed;
- the in-graph preprocessing (uint8 cast, transpose, /255, ImageNet normalisation): it runs once
  per input and is cheaper in float than as quantise/dequantise pairs;
- OSNet's fc + L2 normalisation (``/model/fc/``, ``ReduceL2``, ``Clip``, ``Div_2``).

:func:`accuracy_gate` compares the INT8 model against FP32 on held-out frames (never the
calibration frames): for the detectors, recall and precision of the INT8 detections against the
FP32 ones (IoU >= 0.5, same class), the mean absolute score difference of matched pairs and, for
pose, the mean keypoint error in original-image pixels; for OSNet, the minimum and mean cosine
between INT8 and FP32 embeddings. :func:`export_int8` runs both and installs the INT8 file only
when the gate passes (or when forced), with the figures in the ONNX metadata.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enrichment_export.files import sha256_file
from enrichment_export.steps import format_bytes, timed_step
from enrichment_light.core import contract
from enrichment_light.core.errors import EnrichmentError, ModelFileError
from enrichment_light.core.files import atomic_output

LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MODELS = (contract.POSE_MODEL, contract.THREAT_MODEL, contract.REID_MODEL)
PRECISIONS = ("fp32", "int8")
YOLO_HEAD_PREFIX = "/model/model.22/"
# The head's 3x3 convolution stacks (cv2/cv3/cv4 .<scale>.0/.1): most of the head's arithmetic,
# and their outputs are still plain feature maps; only the last 1x1 conv of each branch and the
# box/score decode after it mix pixel and probability ranges.
YOLO_HEAD_CONV_STACKS = tuple(
    f"{YOLO_HEAD_PREFIX}{branch}.{scale}/{branch}.{scale}.{layer}/"
    for branch in ("cv2", "cv3", "cv4")
    for scale in range(3)
    for layer in range(2)
)
PREPROCESS_NODES = ("/Cast", "/Transpose", "/Div", "/Sub", "/Div_1")
OSNET_TAIL_PREFIXES = ("/model/fc/", "/ReduceL2", "/Clip", "/Div_2")
DEFAULT_MAX_CALIBRATION_FRAMES = 64
DEFAULT_GATE_CONF = 0.25
DEFAULT_GATE_IOU = 0.7
MATCH_IOU = 0.5
KEYPOINT_VISIBLE = 0.3
OSNET_CROPS_PER_FRAME = 6


class AccuracyGateError(EnrichmentError, RuntimeError):
    """The INT8 model is below the accuracy thresholds; nothing was installed."""


class CalibrationError(EnrichmentError, ValueError):
    """The calibration or held-out frames cannot be used (missing, unreadable, overlapping)."""


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class QuantizationRecipe:
    """What :func:`quantize_onnx` quantises and how.

    Attributes:
        op_types: ONNX op types to quantise (``()`` quantises every supported op).
        keep_float: Node names, or name prefixes ending in ``/``, that stay in float.
        per_channel: Per-output-channel weight scales.
        activation_type: ``"uint8"`` or ``"int8"`` activations.
        weight_type: ``"int8"`` or ``"uint8"`` weights.
        calibration_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        reduce_range: 7-bit weights (for CPUs without VNNI).
        float_depthwise: Keep depthwise convolutions (``group > 1``) in float.
        quantize_anyway: Node names or ``/``-ended prefixes quantised although :attr:`keep_float`
            matches them.
    """

    op_types: tuple[str, ...] = ("Conv",)
    keep_float: tuple[str, ...] = ()
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    calibration_method: str = "minmax"
    reduce_range: bool = False
    float_depthwise: bool = False
    quantize_anyway: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in ("uint8", "int8"):
                raise ValueError(f"QuantizationRecipe.{name} must be 'uint8' or 'int8', got {getattr(self, name)!r}")
        if self.calibration_method not in ("minmax", "entropy", "percentile"):
            raise ValueError(
                "QuantizationRecipe.calibration_method must be minmax, entropy or percentile, "
                f"got {self.calibration_method!r}"
            )

    def excluded(self, node_names: Iterable[str]) -> list[str]:
        """The nodes of `node_names` that :attr:`keep_float` keeps in float."""

        def hit(name: str, patterns: tuple[str, ...]) -> bool:
            return any(name == p or (p.endswith("/") and name.startswith(p)) for p in patterns)

        return [n for n in node_names if hit(n, self.keep_float) and not hit(n, self.quantize_anyway)]

    def describe(self) -> str:
        """One line for logs and metadata."""
        ops = ",".join(self.op_types) or "all"
        dw = " float_depthwise" if self.float_depthwise else ""
        return (
            f"QDQ{dw} ops={ops} per_channel={self.per_channel} act={self.activation_type} "
            f"weights={self.weight_type} calib={self.calibration_method} keep_float={list(self.keep_float)}"
        )


def default_recipe(model_name: str) -> QuantizationRecipe:
    """The measured default recipe of `model_name` (``docs/int8.md`` has the measurements)."""
    if model_name in (contract.POSE_MODEL, contract.THREAT_MODEL):
        return QuantizationRecipe(
            op_types=(), keep_float=(YOLO_HEAD_PREFIX, *PREPROCESS_NODES), quantize_anyway=YOLO_HEAD_CONV_STACKS
        )
    if model_name == contract.REID_MODEL:
        return QuantizationRecipe(op_types=(), keep_float=(*PREPROCESS_NODES, *OSNET_TAIL_PREFIXES))
    raise ValueError(f"model_name must be one of {list(MODELS)}, got {model_name!r}")


@dataclass(frozen=True)
class AccuracyThresholds:
    """Below these the INT8 export is refused (``docs/int8.md`` explains each value).

    Attributes:
        min_recall: Fraction of FP32 detections that INT8 finds too (IoU >= 0.5, same class).
        min_precision: Fraction of INT8 detections that FP32 finds too.
        max_mean_score_diff: Mean |score INT8 - score FP32| over matched detections.
        max_keypoint_error_px: Pose: mean distance of visible matched keypoints, original pixels.
        min_cosine: OSNet: smallest cosine between the INT8 and FP32 embedding of a crop.
    """

    min_recall: float = 0.95
    min_precision: float = 0.95
    max_mean_score_diff: float = 0.05
    max_keypoint_error_px: float = 4.0
    min_cosine: float = 0.99

    def __post_init__(self) -> None:
        for name in ("min_recall", "min_precision", "max_mean_score_diff", "min_cosine"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"AccuracyThresholds.{name} must be in [0, 1], got {value!r}")
        if not self.max_keypoint_error_px >= 0:
            raise ValueError(f"AccuracyThresholds.max_keypoint_error_px must be >= 0, got {self.max_keypoint_error_px}")


@dataclass(frozen=True)
class AccuracyReport:
    """INT8 against FP32 on held-out frames.

    Attributes:
        model_name: Contract model name.
        frames: Held-out frames compared (OSNet: held-out crops).
        passed: Every threshold met.
        failures: One line per threshold missed.
        fp32_detections: Detections of the FP32 model (detectors).
        int8_detections: Detections of the INT8 model (detectors).
        matched: INT8 detections matched to an FP32 one (IoU >= 0.5, same class).
        recall: ``matched / fp32_detections``.
        precision: ``matched / int8_detections``.
        mean_score_diff: Mean |score difference| of matched pairs.
        mean_keypoint_error_px: Pose: mean error of FP32-visible keypoints of matched pairs.
        min_cosine: OSNet: smallest INT8 vs FP32 cosine.
        mean_cosine: OSNet: mean INT8 vs FP32 cosine.
        conf: Score threshold the detections were taken at.
        thresholds: The thresholds applied.
    """

    model_name: str
    frames: int
    passed: bool
    failures: tuple[str, ...] = ()
    fp32_detections: int | None = None
    int8_detections: int | None = None
    matched: int | None = None
    recall: float | None = None
    precision: float | None = None
    mean_score_diff: float | None = None
    mean_keypoint_error_px: float | None = None
    min_cosine: float | None = None
    mean_cosine: float | None = None
    conf: float | None = None
    thresholds: AccuracyThresholds = field(default_factory=AccuracyThresholds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``None`` figures left out)."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["failures"] = list(self.failures)
        return out

    def summary(self) -> str:
        """One line of the figures, e.g. for the CLI."""
        unit = "crops" if self.min_cosine is not None else "frames"
        parts = [f"{self.model_name}: {self.frames} held-out {unit}"]
        if self.recall is not None:
            parts.append(
                f"recall {self.recall:.3f} precision {self.precision:.3f} "
                f"({self.matched}/{self.fp32_detections} FP32, {self.int8_detections} INT8)"
            )
        if self.mean_score_diff is not None:
            parts.append(f"mean |score diff| {self.mean_score_diff:.4f}")
        if self.mean_keypoint_error_px is not None:
            parts.append(f"mean keypoint error {self.mean_keypoint_error_px:.2f} px")
        if self.min_cosine is not None:
            parts.append(f"cosine min {self.min_cosine:.5f} mean {self.mean_cosine:.5f}")
        parts.append("PASS" if self.passed else "FAIL: " + "; ".join(self.failures))
        return ", ".join(parts)


@dataclass(frozen=True)
class Int8ExportResult:
    """What :func:`export_int8` produced.

    Attributes:
        model_name: Contract model name.
        path: The INT8 ONNX file written (a refusal raises instead).
        sha256: Its sha256.
        size_bytes: Its size.
        seconds: Wall time of calibration, quantisation and the gate.
        calibration_frames: Frames calibrated on (OSNet makes several crops of each).
        calibration_source: ``"user"`` or ``"packaged samples"``.
        report: The accuracy gate's report.
        forced: Installed although the gate failed.
        metadata: The ``metadata_props`` written into the file.
    """

    model_name: str
    path: Path
    sha256: str
    size_bytes: int
    seconds: float
    calibration_frames: int
    calibration_source: str
    report: AccuracyReport
    forced: bool
    metadata: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- frames


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files (``.jpg .jpeg .png .webp .bmp``) directly in `folder`, sorted by name.

    Raises:
        CalibrationError: Not a folder, or no image in it.
    """
    path = Path(folder)
    if not path.is_dir():
        raise CalibrationError(f"frames folder {str(path)!r} does not exist or is not a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(path)!r}")
    return files


def load_frames(files: Sequence[str | os.PathLike[str]]) -> list[np.ndarray]:
    """Decode image files to RGB arrays with the serving decoder.

    Raises:
        CalibrationError: A file cannot be read or decoded (the message names it).
    """
    from enrichment_light.core.processing.image import decode_image

    frames = []
    for f in files:
        try:
            frames.append(decode_image(Path(f).read_bytes()))
        except (OSError, EnrichmentError) as err:
            raise CalibrationError(f"cannot use frame {str(f)!r}: {err}") from err
    return frames


def augment(image: np.ndarray, *, variants: int = 8, seed: int = 0, include_original: bool = True) -> list[np.ndarray]:
    """Deterministic photometric/geometric variants of one RGB frame (crop, flip, scale, brightness).

    Used to make more frames out of the packaged samples. With `include_original` the first of
    the `variants` frames is the frame itself; different seeds give different variants.
    """
    import cv2

    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    out = [image] if include_original else []
    while len(out) < variants:
        x = image
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        x = x[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            x = x[:, ::-1]
        scale = rng.uniform(0.5, 1.3)
        x = cv2.resize(x, (max(32, int(cw * scale)), max(32, int(ch * scale))), interpolation=cv2.INTER_LINEAR)
        gain, bias = rng.uniform(0.7, 1.3), rng.uniform(-25, 25)
        x = np.clip(x.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(x))
    return out


def person_windows(image: np.ndarray, *, count: int = OSNET_CROPS_PER_FRAME, seed: int = 0) -> list[np.ndarray]:
    """Person-shaped (2:1) windows of a frame, resized to 256x128 as serving resizes re-id crops.

    OSNet calibration needs crops, and a folder of frames has no boxes: windows at a few scales
    and positions cover people and background alike.
    """
    from enrichment_light.core.processing.reid import resize_crop

    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    out = []
    for _ in range(count):
        ch = int(min(h, 2 * w) * rng.uniform(0.3, 1.0))
        cw = max(1, ch // 2)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(resize_crop(np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw])))
    return out


def model_inputs(model_name: str, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames prepared as serving prepares them, one uint8 batch-1 array each.

    Detectors get the Ultralytics letterbox (640x640, pad 114); OSNet gets person-shaped crops
    (:func:`person_windows`, several per frame).
    """
    from enrichment_light.core.processing.image import letterbox

    if model_name == contract.REID_MODEL:
        return [c[None] for i, f in enumerate(frames) for c in person_windows(f, seed=i)]
    if model_name in (contract.POSE_MODEL, contract.THREAT_MODEL):
        return [letterbox(f)[0][None] for f in frames]
    raise ValueError(f"model_name must be one of {list(MODELS)}, got {model_name!r}")


def packaged_sample_frames() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration and held-out frames from the packaged samples, disjoint by source photo.

    Calibration: 8 variants of Ultralytics' ``bus.jpg``; held out: 8 variants of ``zidane.jpg``
    (the copies that ship with enrichment-light, so no ultralytics install is needed).

    Raises:
        CalibrationError: The sample photos are not installed.
    """
    from enrichment_light.core import package_data

    samples = {p.name: p for p in package_data.sample_images()}
    if not {"bus.jpg", "zidane.jpg"} <= set(samples):
        raise CalibrationError("no frames folder given and the packaged sample photos bus.jpg / zidane.jpg are missing")
    bus, zidane = load_frames([samples["bus.jpg"], samples["zidane.jpg"]])
    return augment(bus, seed=1), augment(zidane, seed=2)


# --------------------------------------------------------------------------------------------- quantise


class _FrameReader:
    """``CalibrationDataReader`` over prepared inputs, logging progress."""

    def __init__(self, input_name: str, inputs: Sequence[np.ndarray], what: str) -> None:
        self.input_name, self.inputs, self.what = input_name, list(inputs), what
        self.index = 0
        self.step = max(1, len(self.inputs) // 4)
        self.start = time.perf_counter()

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.inputs):
            return None
        item = self.inputs[self.index]
        self.index += 1
        if self.index % self.step == 0 or self.index == len(self.inputs):
            LOGGER.info(
                "%s: calibration %d/%d inputs (%.1fs)",
                self.what,
                self.index,
                len(self.inputs),
                time.perf_counter() - self.start,
            )
        return {self.input_name: item}

    def rewind(self) -> None:
        self.index = 0


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    *,
    model_name: str,
    recipe: QuantizationRecipe | None = None,
) -> Path:
    """Statically quantise an FP32 ONNX model to QDQ INT8 with onnxruntime.

    Args:
        fp32_path: The FP32 model from ``enrichment-export onnx``.
        output: The INT8 ``.onnx`` to write (atomically).
        calibration: Prepared uint8 inputs (see :func:`model_inputs`), batch 1 each.
        model_name: Contract model name (input name, default recipe).
        recipe: What to quantise; default :func:`default_recipe`.

    Returns:
        `output` as a Path.

    Raises:
        CalibrationError: No calibration input.
        ModelFileError: The FP32 file is missing.
    """
    import onnx
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = recipe or default_recipe(model_name)
    src = Path(fp32_path)
    if not src.is_file():
        raise ModelFileError(f"FP32 ONNX {str(src)!r} does not exist; export it first with `enrichment-export onnx`")
    if not calibration:
        raise CalibrationError(f"{model_name}: no calibration inputs")
    out = Path(output)
    spec = contract.model_spec(model_name)
    qtypes = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    methods = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="enrichment-int8-") as tmp:
        prepared, quantized = Path(tmp) / "model.pre.onnx", Path(tmp) / "model.int8.onnx"
        # onnxruntime's recommended pre-processing: shape inference, then graph optimisation.
        # (Symbolic inference cannot follow the dynamic batch through onnxslim's output; ONNX's can.)
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception as err:  # onnxruntime raises bare Exceptions here
            what = f"{model_name}: onnxruntime cannot prepare {str(src)!r} for quantisation"
            raise ModelFileError(f"{what}: {err}") from err
        graph = onnx.load(str(prepared)).graph
        exclude = recipe.excluded(n.name for n in graph.node)
        if recipe.float_depthwise:
            exclude += [n.name for n in graph.node if n.op_type == "Conv" and _group(n) > 1 and n.name not in exclude]
        LOGGER.info("%s: %s; %d nodes kept in float", model_name, recipe.describe(), len(exclude))
        reader = _FrameReader(spec.inputs[0].name, calibration, model_name)
        with timed_step(LOGGER, f"{model_name}: static INT8 quantisation on {len(calibration)} inputs"):
            q.quantize_static(
                str(prepared),
                str(quantized),
                reader,
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=list(recipe.op_types) or None,
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                activation_type=qtypes[recipe.activation_type],
                weight_type=qtypes[recipe.weight_type],
                nodes_to_exclude=exclude,
                calibrate_method=methods[recipe.calibration_method],
            )
        model = onnx.load(str(quantized))
        meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
        meta.update({"precision": "int8", "quantization": recipe.describe(), "fp32_sha256": sha256_file(src)})
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, meta)
        with atomic_output(out, suffix=".onnx") as dst:
            onnx.save(model, str(dst))
    return out


def _group(node: Any) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


# --------------------------------------------------------------------------------------------- gate


def onnx_session(path: str | os.PathLike[str], threads: int = 0) -> Any:
    """A bare onnxruntime CPU session of `path` (`threads` intra-op threads, 0: all cores): the gates' reference."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` xyxy boxes."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_detections(
    ref_boxes: np.ndarray,
    ref_classes: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    *,
    iou: float = MATCH_IOU,
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of detections to reference ones (by descending score).

    A detection matches the unmatched reference of the same class with the highest IoU, when that
    IoU is at least `iou`.

    Returns:
        ``(reference index, detection index)`` pairs.
    """
    if len(ref_boxes) == 0 or len(boxes) == 0:
        return []
    ious = _iou(np.asarray(boxes, np.float64), np.asarray(ref_boxes, np.float64))
    ious[np.asarray(classes)[:, None] != np.asarray(ref_classes)[None, :]] = -1.0
    taken: set[int] = set()
    pairs = []
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        row = ious[d].copy()
        row[list(taken)] = -1.0
        r = int(np.argmax(row))
        if row[r] >= iou:
            taken.add(r)
            pairs.append((r, int(d)))
    return pairs


def _detector_outputs(model_name: str, raw: np.ndarray, info: Any, conf: float, iou: float) -> Any:
    from enrichment_light.core.processing.detection import postprocess_detections, postprocess_pose

    if model_name == contract.POSE_MODEL:
        return postprocess_pose(raw, [info], conf=conf, iou=iou)[0]
    return postprocess_detections(raw, [info], conf=conf, iou=iou)[0]


def embedding_report(
    model_name: str, reference: np.ndarray, candidate: np.ndarray, thresholds: AccuracyThresholds
) -> AccuracyReport:
    """Cosine of each row of `candidate` with the same row of `reference` (``[N, D]`` embeddings)."""
    a, b = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    min_cos, mean_cos = float(cos.min()), float(cos.mean())
    failures = [f"min cosine {min_cos:.4f} < {thresholds.min_cosine}"] if min_cos < thresholds.min_cosine else []
    return AccuracyReport(
        model_name, len(a), not failures, tuple(failures), min_cosine=min_cos, mean_cosine=mean_cos,
        thresholds=thresholds,
    )  # fmt: skip


def accuracy_gate(
    model_name: str,
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    frames: Sequence[np.ndarray],
    *,
    thresholds: AccuracyThresholds | None = None,
    conf: float = DEFAULT_GATE_CONF,
    iou: float = DEFAULT_GATE_IOU,
) -> AccuracyReport:
    """Compare an INT8 model against its FP32 source on held-out frames.

    Detectors: both models run on the letterboxed frames, then the serving postprocessing (NMS at
    `iou`, detections above `conf`, boxes in original pixels); INT8 detections are matched to
    FP32 ones (:func:`match_detections`). OSNet: both run on person-shaped crops of the frames.

    Args:
        model_name: Contract model name.
        fp32_path: The FP32 model (the reference).
        int8_path: The INT8 model.
        frames: Held-out RGB frames (never the calibration frames).
        thresholds: Pass/fail limits; default :class:`AccuracyThresholds`.
        conf: Detection score threshold of the comparison.
        iou: NMS IoU threshold.

    Returns:
        The :class:`AccuracyReport`. A detector whose FP32 model finds nothing on the frames
        fails: there is nothing to judge it on.
    """
    from enrichment_light.core.processing.image import letterbox

    thresholds = thresholds or AccuracyThresholds()
    if not frames:
        raise CalibrationError(f"{model_name}: no held-out frames for the accuracy gate")
    ref, test = onnx_session(fp32_path), onnx_session(int8_path)
    in_name = contract.model_spec(model_name).inputs[0].name
    failures: list[str] = []
    if model_name == contract.REID_MODEL:
        crops = np.concatenate(model_inputs(model_name, frames))
        a = ref.run(None, {in_name: crops})[0]
        return embedding_report(model_name, a, test.run(None, {in_name: crops})[0], thresholds)

    n_ref = n_test = 0
    score_diffs: list[float] = []
    kpt_errors: list[float] = []
    matched = 0
    for frame in frames:
        lb, info = letterbox(frame)
        x = lb[None]
        d_ref = _detector_outputs(model_name, ref.run(None, {in_name: x})[0], info, conf, iou)
        d_test = _detector_outputs(model_name, test.run(None, {in_name: x})[0], info, conf, iou)
        ref_cls = getattr(d_ref, "class_ids", np.zeros(len(d_ref.scores), np.int32))
        test_cls = getattr(d_test, "class_ids", np.zeros(len(d_test.scores), np.int32))
        pairs = match_detections(d_ref.xyxy, ref_cls, d_test.xyxy, d_test.scores, test_cls)
        n_ref, n_test, matched = n_ref + len(d_ref.scores), n_test + len(d_test.scores), matched + len(pairs)
        for r, t in pairs:
            score_diffs.append(abs(float(d_ref.scores[r]) - float(d_test.scores[t])))
            if model_name == contract.POSE_MODEL:
                kr, kt = d_ref.keypoints[r], d_test.keypoints[t]
                visible = kr[:, 2] > KEYPOINT_VISIBLE
                kpt_errors.extend(np.linalg.norm(kr[visible, :2] - kt[visible, :2], axis=1).tolist())
    recall = matched / n_ref if n_ref else 0.0
    precision = matched / n_test if n_test else (1.0 if n_ref == 0 else 0.0)
    mean_diff = float(np.mean(score_diffs)) if score_diffs else None
    kpt_err = float(np.mean(kpt_errors)) if kpt_errors else None
    if n_ref == 0:
        failures.append(
            f"the FP32 model finds nothing above conf {conf} on the {len(frames)} held-out frames: "
            "there is nothing to judge INT8 on (use frames that show the objects)"
        )
    else:
        if recall < thresholds.min_recall:
            failures.append(f"recall {recall:.3f} < {thresholds.min_recall}")
        if precision < thresholds.min_precision:
            failures.append(f"precision {precision:.3f} < {thresholds.min_precision}")
        if mean_diff is not None and mean_diff > thresholds.max_mean_score_diff:
            failures.append(f"mean |score diff| {mean_diff:.4f} > {thresholds.max_mean_score_diff}")
        if kpt_err is not None and kpt_err > thresholds.max_keypoint_error_px:
            failures.append(f"mean keypoint error {kpt_err:.2f} px > {thresholds.max_keypoint_error_px}")
    return AccuracyReport(
        model_name,
        len(frames),
        not failures,
        tuple(failures),
        fp32_detections=n_ref,
        int8_detections=n_test,
        matched=matched,
        recall=recall,
        precision=precision,
        mean_score_diff=mean_diff,
        mean_keypoint_error_px=kpt_err,
        conf=conf,
        thresholds=thresholds,
    )


def enforce_gate(report: AccuracyReport, *, precision: str, force: bool, refused: str, forced: str) -> None:
    """Log `report`; below the thresholds raise, or with `force` warn and go on.

    Args:
        report: The gate's report.
        precision: ``INT8`` or ``bf16``, for the messages.
        force: ``--force-accuracy`` was given.
        refused: What the refusal says happened and how to override it.
        forced: What happens anyway when forced (``installing``, ``serving it``).

    Raises:
        AccuracyGateError: Below the thresholds and not forced.
    """
    LOGGER.info("%s", report.summary())
    if report.passed:
        return
    if not force:
        raise AccuracyGateError(
            f"{report.model_name}: {precision} refused, below the accuracy thresholds: {'; '.join(report.failures)} "
            f"({refused})"
        )
    LOGGER.warning("%s: %s accuracy gate failed but --force-accuracy given: %s", report.model_name, precision, forced)


# --------------------------------------------------------------------------------------------- export


def _split_user_frames(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Hold out every 4th file (sorted by name) when no held-out folder is given."""
    if len(files) < 2:
        raise CalibrationError(
            f"only {len(files)} image(s) to calibrate on and no --holdout folder: give at least 2 frames "
            "(every 4th is held out for the accuracy gate) or a separate --holdout folder"
        )
    held = files[3::4] or files[-1:]
    return [f for f in files if f not in held], held


def export_int8(
    model_name: str,
    fp32_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    calibration_dir: str | os.PathLike[str] | None = None,
    holdout_dir: str | os.PathLike[str] | None = None,
    recipe: QuantizationRecipe | None = None,
    thresholds: AccuracyThresholds | None = None,
    force: bool = False,
    max_calibration_frames: int = DEFAULT_MAX_CALIBRATION_FRAMES,
    conf: float = DEFAULT_GATE_CONF,
    calibration_frames: Sequence[np.ndarray] | None = None,
    holdout_frames: Sequence[np.ndarray] | None = None,
) -> Int8ExportResult:
    """Calibrate, quantise, gate and (when the gate passes, or `force`) install an INT8 model.

    Frames, in order of preference: `calibration_frames` / `holdout_frames` given as arrays;
    image folders `calibration_dir` / `holdout_dir` (without `holdout_dir`, every 4th calibration
    file is held out); else the packaged samples (a warning is logged).

    Args:
        model_name: Contract model name.
        fp32_path: The FP32 ONNX exported for `model_name`.
        output: Where the INT8 ONNX goes (e.g. ``<repo>/<model>/1/model.onnx``); untouched when
            the gate refuses.
        calibration_dir: The user's frames.
        holdout_dir: Held-out frames for the gate (no file may also be a calibration file).
        recipe: What to quantise (default :func:`default_recipe`).
        thresholds: Gate thresholds (default :class:`AccuracyThresholds`).
        force: Install even when the gate fails (the figures are still recorded).
        max_calibration_frames: Most frames used for calibration (evenly spaced).
        conf: Detection score threshold of the gate.
        calibration_frames: RGB frames to calibrate on, instead of a folder.
        holdout_frames: RGB held-out frames, instead of a folder.

    Returns:
        The :class:`Int8ExportResult`.

    Raises:
        AccuracyGateError: The gate failed and `force` is false; nothing was written.
        CalibrationError: Unusable frames or folders.
    """
    if model_name not in MODELS:
        raise ValueError(f"model_name must be one of {list(MODELS)}, got {model_name!r}")
    if max_calibration_frames < 1:
        raise ValueError(f"max_calibration_frames must be >= 1, got {max_calibration_frames}")
    out = Path(output)
    if out.suffix != ".onnx":
        raise ValueError(f"output must be a .onnx file path, got {str(out)!r}")
    start = time.perf_counter()
    source = "user"
    if calibration_frames is None:
        if calibration_dir is None:
            source = "packaged samples"
            calib, held = packaged_sample_frames()
            LOGGER.warning(
                "%s: no --calibration folder: calibrating on variants of the packaged sample photo bus.jpg "
                "and gating on variants of zidane.jpg; INT8 accuracy on your cameras is unknown: pass "
                "--calibration DIR with frames from them",
                model_name,
            )
        else:
            calib_files = image_files(calibration_dir)
            if holdout_dir is None:
                calib_files, held_files = _split_user_frames(calib_files)
            else:
                held_files = image_files(holdout_dir)
                overlap = {p.resolve() for p in calib_files} & {p.resolve() for p in held_files}
                same = {sha256_file(p) for p in calib_files} & {sha256_file(p) for p in held_files}
                if overlap or same:
                    raise CalibrationError(
                        f"{len(overlap) or len(same)} held-out frame(s) are also calibration frames: the gate must "
                        "run on frames the calibration never saw"
                    )
            if len(calib_files) > max_calibration_frames:
                idx = np.linspace(0, len(calib_files) - 1, max_calibration_frames).round().astype(int)
                calib_files = [calib_files[i] for i in sorted(set(idx.tolist()))]
            calib, held = load_frames(calib_files), load_frames(held_files)
    else:
        calib = list(calibration_frames)[:max_calibration_frames]
        if holdout_frames is None:
            raise CalibrationError("calibration_frames needs holdout_frames (the gate never uses calibration frames)")
        held = list(holdout_frames)
    if holdout_frames is not None:
        held = list(holdout_frames)
    inputs = model_inputs(model_name, calib)
    LOGGER.info(
        "%s: calibrating on %d frame(s) from %s (%d model inputs); %d held-out frame(s) for the accuracy gate",
        model_name,
        len(calib),
        source,
        len(inputs),
        len(held),
    )
    with tempfile.TemporaryDirectory(prefix="enrichment-int8-") as tmp:
        candidate = Path(tmp) / "model.int8.onnx"
        quantize_onnx(fp32_path, candidate, inputs, model_name=model_name, recipe=recipe)
        with timed_step(LOGGER, f"{model_name}: accuracy gate INT8 vs FP32 on {len(held)} held-out frame(s)"):
            report = accuracy_gate(model_name, fp32_path, candidate, held, thresholds=thresholds, conf=conf)
        refused = "nothing installed; --force-accuracy installs it anyway"
        enforce_gate(report, precision="INT8", force=force, refused=refused, forced="installing")
        metadata = _write_gate_metadata(candidate, report, source=source, calibration_frames=len(calib), forced=force)
        with atomic_output(out, suffix=".onnx") as dst:
            shutil.copyfile(candidate, dst)
    size = out.stat().st_size
    seconds = time.perf_counter() - start
    LOGGER.info("%s: INT8 export in %.1fs, saved as '%s' (%s)", model_name, seconds, out, format_bytes(size))
    return Int8ExportResult(
        model_name, out, sha256_file(out), size, seconds, len(calib), source, report, bool(force and not report.passed),
        metadata,
    )  # fmt: skip


def _write_gate_metadata(
    path: Path, report: AccuracyReport, *, source: str, calibration_frames: int, forced: bool
) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update(
        {
            "precision": "int8",
            "int8_accuracy": json.dumps(report.to_dict(), sort_keys=True),
            "int8_calibration": json.dumps({"frames": calibration_frames, "source": source}),
            "int8_gate_forced": "true" if forced and not report.passed else "false",
        }
    )
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return meta


# --------------------------------------------------------------------------------------------- speed


@dataclass(frozen=True)
class SpeedComparison:
    """Interleaved FP32 vs INT8 timing of one model under bare onnxruntime.

    Attributes:
        model_name: Contract model name.
        batch: Batch size.
        rounds: Timed runs of each model.
        fp32_ms: Median FP32 latency.
        int8_ms: Median INT8 latency.
        speedup: ``fp32_ms / int8_ms``.
        threads: onnxruntime intra-op threads (0: all cores).
    """

    model_name: str
    batch: int
    rounds: int
    fp32_ms: float
    int8_ms: float
    speedup: float
    threads: int


def compare_speed(
    model_name: str,
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    batch_input: np.ndarray,
    *,
    rounds: int = 20,
    warmup: int = 3,
    threads: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> SpeedComparison:
    """Median latency of FP32 and INT8, runs interleaved (FP32, INT8, FP32, ...) in one process.

    Args:
        model_name: Contract model name.
        fp32_path: FP32 ONNX.
        int8_path: INT8 ONNX.
        batch_input: The uint8 input batch.
        rounds: Timed runs of each.
        warmup: Untimed runs of each first.
        threads: onnxruntime intra-op threads (0: all cores).
        clock: Time source.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    in_name = contract.model_spec(model_name).inputs[0].name
    sessions = {"fp32": onnx_session(fp32_path, threads), "int8": onnx_session(int8_path, threads)}
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for i in range(warmup + rounds):
        for key, sess in sessions.items():
            t0 = clock()
            sess.run(None, {in_name: batch_input})
            if i >= warmup:
                times[key].append((clock() - t0) * 1000.0)
    fp32, int8 = float(np.median(times["fp32"])), float(np.median(times["int8"]))
    return SpeedComparison(model_name, int(batch_input.shape[0]), rounds, fp32, int8, fp32 / int8, threads)


def iter_reports(results: Iterable[Int8ExportResult]) -> Iterator[str]:
    """Summary lines of several exports (CLI output)."""
    for r in results:
        forced = " (FORCED past the gate)" if r.forced else ""
        yield (
            f"{r.model_name:16s} {r.path}  int8 sha256 {r.sha256[:16]}  calibration {r.calibration_frames} frames "
            f"({r.calibration_source}){forced}\n    {r.report.summary()}"
        )
