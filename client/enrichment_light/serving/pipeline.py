"""The serving pipeline as pure functions over NumPy arrays, one call per Triton ``execute``.

Each ``*_batch`` function takes the inputs of every request that Triton handed to ``execute``
and returns one entry per request: a ``{tensor name: array}`` dict, or the
:class:`~enrichment_light.core.errors.InvalidInputError` that request earned. A bad request never fails
the others. Arrays keep the request's own batch dimension (a request may carry several images).

The same functions are the in-process reference of the integration tests' end-to-end parity
check (server results must equal them run locally on the same ONNX).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.params import get_float, get_int, get_json, subset
from enrichment_light.core.processing.detection import pad_pose, postprocess_detections, postprocess_pose
from enrichment_light.core.processing.image import LetterboxInfo, decode_image, letterbox
from enrichment_light.core.processing.pose_rules import DEFAULT_POSE_RULES, PoseRules
from enrichment_light.core.processing.reid import crop_persons, detected_person_crops
from enrichment_light.core.processing.threat import ThreatMapping, ThreatTaxonomy, pad_threats, select_threats

Outputs = dict[str, np.ndarray]
Result = Outputs | InvalidInputError


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PoseSettings:
    """Defaults of the pose postprocessing, from config parameters."""

    conf: float = 0.5
    iou: float = 0.7
    rules: PoseRules = DEFAULT_POSE_RULES
    max_det: int = ct.MAX_DETECTIONS

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], prefix: str = "") -> PoseSettings:
        """Read ``conf_threshold``, ``iou_threshold``, ``kpt_shape`` and ``rule_*`` (after `prefix`)."""
        p = subset(params, prefix)
        kpt_shape = get_json(p, "kpt_shape", [ct.NUM_KEYPOINTS, ct.KEYPOINT_DIMS])
        if list(kpt_shape) != [ct.NUM_KEYPOINTS, ct.KEYPOINT_DIMS]:
            raise ValueError(f"kpt_shape must be [{ct.NUM_KEYPOINTS}, {ct.KEYPOINT_DIMS}], got {kpt_shape}")
        return cls(
            conf=get_float(p, "conf_threshold", cls.conf, low=0.0, high=1.0),
            iou=get_float(p, "iou_threshold", cls.iou, low=0.0, high=1.0),
            rules=PoseRules.from_mapping(subset(p, "rule_")),
        )


@dataclass(frozen=True)
class ThreatSettings:
    """Defaults of the threat postprocessing and the taxonomy resolved against the class names."""

    conf: float
    iou: float
    mapping: ThreatMapping
    max_det: int = ct.MAX_DETECTIONS

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], prefix: str = "") -> ThreatSettings:
        """Read ``conf_threshold``, ``iou_threshold``, ``class_names`` and ``threat_taxonomy``.

        The taxonomy (inline JSON, else the packaged table) is resolved here, once; unmapped
        class names are logged as a warning by :meth:`ThreatTaxonomy.resolve` and listed in
        ``mapping.unmapped``.
        """
        p = subset(params, prefix)
        names = get_json(p, "class_names", None)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"config parameter {prefix}class_names must be a JSON list of names, got {names!r}")
        table = get_json(p, "threat_taxonomy", None)
        taxonomy = ThreatTaxonomy.load() if table is None else ThreatTaxonomy.from_dict(table, source="config")
        return cls(
            conf=get_float(p, "conf_threshold", 0.5, low=0.0, high=1.0),
            iou=get_float(p, "iou_threshold", 0.7, low=0.0, high=1.0),
            mapping=taxonomy.resolve(names),
        )


def max_pixels_from_parameters(params: Mapping[str, str]) -> int:
    """The ``max_pixels`` decode limit."""
    return get_int(params, "max_pixels", ct.DEFAULT_MAX_PIXELS, low=1)


def letterbox_mode_from_parameters(params: Mapping[str, str]) -> str:
    """The ``letterbox`` mode: ``rect`` (default) or ``square``.

    Raises:
        ValueError: Any other value.
    """
    mode = (params.get("letterbox") or ct.DEFAULT_LETTERBOX).strip().lower()
    if mode not in ct.LETTERBOX_MODES:
        raise ValueError(f"config parameter 'letterbox' must be one of {list(ct.LETTERBOX_MODES)}, got {mode!r}")
    return mode


# --------------------------------------------------------------------------------------------- inputs


def check_tensor(name: str, array: np.ndarray | None, dtype: Any, shape: Sequence[int]) -> np.ndarray:
    """Check a request tensor (with its batch axis) against the contract shape (``-1``: any).

    Raises:
        InvalidInputError: Missing, wrong dtype or wrong shape; the message names the tensor.
    """
    if array is None:
        raise InvalidInputError(f"missing input tensor {name!r}")
    want = np.dtype(dtype)
    if array.dtype != want:
        raise InvalidInputError(f"input {name!r} must be {want}, got {array.dtype}")
    if array.ndim != len(shape) or any(s not in (-1, a) for s, a in zip(shape, array.shape, strict=True)):
        raise InvalidInputError(f"input {name!r} must have shape {list(shape)}, got {list(array.shape)}")
    return array


def image_list(data: np.ndarray | None) -> list[bytes]:
    """The encoded images of one request's ``IMAGE_BYTES`` tensor (``[n, 1]`` BYTES).

    Raises:
        InvalidInputError: Wrong shape or a non-bytes element.
    """
    arr = check_tensor(ct.IMAGE_BYTES, data, np.object_, (-1, 1))
    if arr.shape[0] == 0:
        raise InvalidInputError(f"input {ct.IMAGE_BYTES!r} holds no image")
    out = []
    for item in arr.reshape(-1):
        if not isinstance(item, (bytes, bytearray, memoryview)):
            kind = type(item).__name__
            raise InvalidInputError(f"input {ct.IMAGE_BYTES!r} must hold encoded image bytes, got {kind}")
        out.append(bytes(item))
    return out


def thresholds(
    conf: np.ndarray | None, iou: np.ndarray | None, n: int, default_conf: float, default_iou: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image thresholds of one request: the optional overrides, else the config defaults.

    Raises:
        InvalidInputError: An override of the wrong shape, not finite, or outside ``[0, 1]``.
    """
    out = []
    for name, value, default in ((ct.CONF_THRESHOLD, conf, default_conf), (ct.IOU_THRESHOLD, iou, default_iou)):
        if value is None:
            out.append(np.full(n, default, np.float32))
            continue
        arr = check_tensor(name, value, np.float32, (n, 1)).reshape(n)
        if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
            raise InvalidInputError(f"{name} must be in [0, 1], got {arr.tolist()}")
        out.append(arr)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------- preprocess


def decode_and_letterbox(data: bytes, max_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image and letterbox it square: ``(original RGB, letterboxed [640,640,3], info [5])``."""
    image = decode_image(data, max_pixels=max_pixels)
    boxed, info = letterbox(image, ct.DETECTOR_INPUT_SIZE)
    return image, boxed, info.to_array()


def decode_and_letterbox_all(
    images: Sequence[bytes], max_pixels: int, mode: str = ct.DEFAULT_LETTERBOX
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Decode and letterbox the images of one request: ``[(original RGB, letterboxed, info [5])]``.

    In ``rect`` mode each image gets the minimal stride-32 rectangle (Ultralytics
    ``LetterBox(auto=True)``) when all images of the request share that rectangle, so that they
    stack into one tensor; otherwise the request falls back to the square 640 x 640 letterbox, as
    Ultralytics' predictor does for a batch of different shapes (``auto=same_shapes``). One camera
    gives one shape, so its requests get the rect and batch together in Triton's dynamic batcher.
    """
    decoded = [decode_image(b, max_pixels=max_pixels) for b in images]
    auto = mode == "rect"
    if auto:
        shapes = {LetterboxInfo.for_shape(*im.shape[:2], auto=True).output_shape(auto=True) for im in decoded}
        auto = len(shapes) == 1
    out = []
    for image in decoded:
        boxed, info = letterbox(image, ct.DETECTOR_INPUT_SIZE, auto=auto)
        out.append((image, boxed, info.to_array()))
    return out


def check_detector_images(array: np.ndarray | None, static_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Check a detector's ``images`` tensor: uint8 ``[n, H, W, 3]`` with H, W multiples of 32 in [32, 640].

    Args:
        array: The request's tensor.
        static_hw: The only accepted ``(H, W)`` when the ONNX file has a fixed input size.

    Raises:
        InvalidInputError: Wrong dtype, rank or size (names the tensor and the rule).
    """
    arr = check_tensor(ct.IMAGES, array, np.uint8, (-1, -1, -1, 3))
    h, w = arr.shape[1:3]
    if static_hw is not None:
        if (h, w) != tuple(static_hw):
            raise InvalidInputError(
                f"input {ct.IMAGES!r} must have shape [-1, {static_hw[0]}, {static_hw[1]}, 3] (this model was "
                f"exported with a fixed input size), got {list(arr.shape)}"
            )
        return arr
    lo, hi, stride = ct.DETECTOR_MIN_SIDE, ct.DETECTOR_MAX_SIDE, ct.DETECTOR_STRIDE
    if not all(lo <= side <= hi and side % stride == 0 for side in (h, w)):
        raise InvalidInputError(
            f"input {ct.IMAGES!r} must be [n, H, W, 3] with H and W multiples of {stride} in [{lo}, {hi}], "
            f"got {list(arr.shape)}"
        )
    return arr


@dataclass(frozen=True)
class PreprocessInput:
    """The inputs of one ``preprocess`` request (arrays with the request's batch axis)."""

    image_bytes: np.ndarray | None
    conf: np.ndarray | None = None
    iou: np.ndarray | None = None


def preprocess_batch(
    requests: Sequence[PreprocessInput | np.ndarray | None], *, max_pixels: int, letterbox_mode: str = "square"
) -> list[Result]:
    """``preprocess``: ``IMAGE_BYTES`` -> ``images`` (uint8 ``[n,H,W,3]``) and ``LETTERBOX_INFO``.

    ``H x W`` is 640 x 640 in ``square`` mode and the minimal stride-32 rectangle in ``rect`` mode
    (see :func:`decode_and_letterbox_all`).

    The optional ``CONF_THRESHOLD`` / ``IOU_THRESHOLD`` overrides are validated first, before any
    decode, so that a bad one costs microseconds instead of a decode plus a detector run (the
    postprocessor applies them; its own check stays for direct callers).

    Args:
        requests: One :class:`PreprocessInput` (or a bare ``IMAGE_BYTES`` array) per request.
        max_pixels: Decode limit per image.
        letterbox_mode: ``rect`` or ``square``.
    """
    results: list[Result] = []
    for request in requests:
        item = request if isinstance(request, PreprocessInput) else PreprocessInput(request)
        try:
            images = image_list(item.image_bytes)
            thresholds(item.conf, item.iou, len(images), 0.0, 0.0)
            pairs = [d[1:] for d in decode_and_letterbox_all(images, max_pixels, letterbox_mode)]
        except InvalidInputError as err:
            results.append(err)
            continue
        results.append(
            {
                ct.IMAGES: np.stack([p[0] for p in pairs]),
                ct.LETTERBOX_INFO: np.stack([p[1] for p in pairs]).astype(np.float32),
            }
        )
    return results


# --------------------------------------------------------------------------------------------- postprocess


@dataclass(frozen=True)
class PostprocessInput:
    """The inputs of one postprocess request (arrays with the request's batch axis)."""

    raw: np.ndarray | None
    letterbox_info: np.ndarray | None
    conf: np.ndarray | None = None
    iou: np.ndarray | None = None


def _checked_items(
    items: Sequence[PostprocessInput], channels: int | None, default_conf: float, default_iou: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | InvalidInputError]:
    out: list[Any] = []
    for item in items:
        try:
            raw = check_tensor(ct.RAW_OUTPUT, item.raw, np.float32, (-1, channels or -1, -1))
            if channels is None and raw.shape[1] <= 4:
                raise InvalidInputError(f"input {ct.RAW_OUTPUT!r} needs 4 + nc > 4 channels, got {raw.shape[1]}")
            n = raw.shape[0]
            info = check_tensor(ct.LETTERBOX_INFO, item.letterbox_info, np.float32, (n, ct.LETTERBOX_INFO_LEN))
            if not np.isfinite(raw).all():
                raise InvalidInputError(f"input {ct.RAW_OUTPUT!r} holds non-finite values")
            conf, iou = thresholds(item.conf, item.iou, n, default_conf, default_iou)
            out.append((raw, info, conf, iou))
        except InvalidInputError as err:
            out.append(err)
    return out


def _grouped(
    checked: Sequence[Any], run: Callable[[np.ndarray, np.ndarray, float, float], list[Outputs]]
) -> list[Result]:
    """Run `run` once per distinct (conf, iou) over all images of all valid requests."""
    flat: list[tuple[int, int, float, float]] = []  # (request, image, conf, iou)
    for r, item in enumerate(checked):
        if not isinstance(item, InvalidInputError):
            flat.extend((r, i, float(item[2][i]), float(item[3][i])) for i in range(item[0].shape[0]))
    per_image: dict[tuple[int, int], Outputs | InvalidInputError] = {}
    groups: dict[tuple[float, float, tuple[int, ...]], list[tuple[int, int]]] = {}
    for r, i, conf, iou in flat:
        groups.setdefault((conf, iou, checked[r][0].shape[1:]), []).append((r, i))
    for (conf, iou, _), members in groups.items():
        raw = np.stack([checked[r][0][i] for r, i in members])
        info = np.stack([checked[r][1][i] for r, i in members])
        try:
            outs: list[Any] = run(raw, info, conf, iou)
        except InvalidInputError:
            outs = []
            for k in range(len(members)):  # find the culprit(s): one image at a time
                try:
                    outs.append(run(raw[k : k + 1], info[k : k + 1], conf, iou)[0])
                except InvalidInputError as err:
                    outs.append(err)
        per_image.update(zip(members, outs, strict=True))
    results: list[Result] = []
    for r, item in enumerate(checked):
        if isinstance(item, InvalidInputError):
            results.append(item)
            continue
        images = [per_image[(r, i)] for i in range(item[0].shape[0])]
        errors = [e for e in images if isinstance(e, InvalidInputError)]
        if errors:
            results.append(errors[0])
        else:
            results.append({k: np.stack([img[k] for img in images]) for k in images[0]})
    return results


def pose_outputs(raw: np.ndarray, info: np.ndarray, conf: float, iou: float, settings: PoseSettings) -> list[Outputs]:
    """Padded pose outputs (``pose_postprocess`` contract) of each image of a raw batch."""
    poses = postprocess_pose(raw, info, conf=conf, iou=iou, max_det=settings.max_det, rules=settings.rules)
    return [pad_pose(p, settings.max_det) for p in poses]


def threat_outputs(
    raw: np.ndarray, info: np.ndarray, conf: float, iou: float, settings: ThreatSettings
) -> list[Outputs]:
    """Padded threat outputs (``threat_postprocess`` contract) of each image of a raw batch."""
    n_classes = len(settings.mapping.class_names)
    if raw.shape[1] != 4 + n_classes:
        raise InvalidInputError(
            f"input {ct.RAW_OUTPUT!r} has {raw.shape[1] - 4} class channels but the model has {n_classes} class names"
        )
    dets = postprocess_detections(raw, info, conf=conf, iou=iou, max_det=settings.max_det)
    return [pad_threats(select_threats(d, settings.mapping), settings.max_det) for d in dets]


def pose_postprocess_batch(items: Sequence[PostprocessInput], settings: PoseSettings) -> list[Result]:
    """``pose_postprocess`` over every request of one ``execute`` call."""
    checked = _checked_items(items, ct.POSE_RAW_CHANNELS, settings.conf, settings.iou)
    return _grouped(checked, lambda raw, info, conf, iou: pose_outputs(raw, info, conf, iou, settings))


def threat_postprocess_batch(items: Sequence[PostprocessInput], settings: ThreatSettings) -> list[Result]:
    """``threat_postprocess`` over every request of one ``execute`` call."""
    checked = _checked_items(items, None, settings.conf, settings.iou)
    return _grouped(checked, lambda raw, info, conf, iou: threat_outputs(raw, info, conf, iou, settings))


# --------------------------------------------------------------------------------------------- fused (cpu)


def fused_detect_batch(
    requests: Sequence[PreprocessInput],
    *,
    run: Callable[[Sequence[np.ndarray]], list[np.ndarray]],
    postprocess: Callable[[Sequence[PostprocessInput]], list[Result]],
    max_pixels: int,
    letterbox_mode: str = ct.DEFAULT_LETTERBOX,
) -> list[Result]:
    """``pose`` / ``threat`` on the cpu target in one Python model: preprocess, detector, postprocess.

    The same three steps as the ensemble, without two stub hops and their copies: thresholds are
    checked and every frame decoded and letterboxed (:func:`preprocess_batch`), the valid requests
    run through `run` (one batch per request), and `postprocess` (the pose or threat
    ``*_postprocess_batch`` with its settings) gets the raw outputs.

    Args:
        requests: The ensemble inputs of each request.
        run: The detector over one uint8 ``[n, H, W, 3]`` batch per request -> one raw
            ``[n, C, anchors]`` per request (``OnnxRuntimeRunner.run_many``).
        postprocess: The postprocessor over :class:`PostprocessInput` items.
        max_pixels: Decode limit per image.
        letterbox_mode: ``rect`` or ``square``.
    """
    pre = preprocess_batch(requests, max_pixels=max_pixels, letterbox_mode=letterbox_mode)
    ok = [r for r, item in enumerate(pre) if not isinstance(item, InvalidInputError)]
    raws = dict(zip(ok, run([pre[r][ct.IMAGES] for r in ok]) if ok else [], strict=True))  # type: ignore[index]
    valid = sorted(raws)
    posts = postprocess(
        [
            PostprocessInput(raws[r], pre[r][ct.LETTERBOX_INFO], requests[r].conf, requests[r].iou)  # type: ignore[index]
            for r in valid
        ]
    )
    results: list[Result] = list(pre)
    for r, post in zip(valid, posts, strict=True):
        results[r] = post
    return results


# --------------------------------------------------------------------------------------------- re-id crops


def reid_crops(data: np.ndarray | None, boxes: np.ndarray | None, *, max_pixels: int, max_persons: int) -> Outputs:
    """``reid_crops`` (one request, no batch axis): one image + K boxes -> ``crops [K,256,128,3]``.

    Raises:
        InvalidInputError: Bad image, no boxes, too many boxes, or a box that is not finite,
            inverted or outside the image.
    """
    images = image_list(None if data is None else np.asarray(data, dtype=object).reshape(-1, 1))
    if len(images) != 1:
        raise InvalidInputError(f"input {ct.IMAGE_BYTES!r} must hold exactly one image, got {len(images)}")
    b = check_tensor(ct.PERSON_BOXES, boxes, np.float32, (-1, 4))
    if not 1 <= b.shape[0] <= max_persons:
        raise InvalidInputError(f"input {ct.PERSON_BOXES!r} must hold 1 to {max_persons} boxes, got {b.shape[0]}")
    image = decode_image(images[0], max_pixels=max_pixels)
    return {ct.CROPS: crop_persons(image, b)}


# --------------------------------------------------------------------------------------------- enrich


@dataclass(frozen=True)
class EnrichSettings:
    """Settings of the ``enrich`` BLS model."""

    max_pixels: int
    pose: PoseSettings
    threat: ThreatSettings
    letterbox: str = ct.DEFAULT_LETTERBOX

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> EnrichSettings:
        """Read ``max_pixels``, ``letterbox``, ``pose_*`` and ``threat_*`` parameters."""
        return cls(
            max_pixels_from_parameters(params),
            PoseSettings.from_parameters(params, "pose_"),
            ThreatSettings.from_parameters(params, "threat_"),
            letterbox_mode_from_parameters(params),
        )


@dataclass
class EnrichFrame:
    """One decoded frame of an ``enrich`` request."""

    request: int
    image: np.ndarray
    boxed: np.ndarray
    info: np.ndarray
    conf: float | None
    iou: float | None


def enrich_prepare(
    requests: Sequence[tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]], settings: EnrichSettings
) -> tuple[list[EnrichFrame], list[InvalidInputError | None]]:
    """Decode every frame once. Returns the frames of valid requests and one error (or None) per request."""
    frames: list[EnrichFrame] = []
    errors: list[InvalidInputError | None] = []
    for r, (data, conf_in, iou_in) in enumerate(requests):
        try:
            images = image_list(data)
            n = len(images)
            # Both detectors use the request's overrides; absent ones use each detector's default.
            conf = None if conf_in is None else thresholds(conf_in, None, n, 0.0, 0.0)[0]
            iou = None if iou_in is None else thresholds(None, iou_in, n, 0.0, 0.0)[1]
            decoded = decode_and_letterbox_all(images, settings.max_pixels, settings.letterbox)
        except InvalidInputError as err:
            errors.append(err)
            continue
        errors.append(None)
        for i, (image, boxed, info) in enumerate(decoded):
            frames.append(
                EnrichFrame(
                    r,
                    image,
                    boxed,
                    info,
                    None if conf is None else float(conf[i]),
                    None if iou is None else float(iou[i]),
                )
            )
    return frames, errors


def _by_thresholds(
    frames: Sequence[EnrichFrame], raw: Sequence[np.ndarray], default_conf: float, default_iou: float, run
):
    outs: list[Any] = [None] * len(frames)
    groups: dict[tuple[float, float, tuple[int, ...]], list[int]] = {}
    for k, f in enumerate(frames):
        key = (default_conf if f.conf is None else f.conf, default_iou if f.iou is None else f.iou, raw[k].shape)
        groups.setdefault(key, []).append(k)
    for (conf, iou, _), idx in groups.items():
        info = np.stack([frames[k].info for k in idx])
        for k, out in zip(idx, run(np.stack([raw[k] for k in idx]), info, conf, iou), strict=True):
            outs[k] = out
    return outs


def by_shape(frames: Sequence[EnrichFrame]) -> list[list[int]]:
    """Indices of the frames grouped by letterboxed shape (one detector batch per group)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, f in enumerate(frames):
        groups.setdefault(f.boxed.shape, []).append(k)
    return list(groups.values())


def enrich_postprocess(
    frames: Sequence[EnrichFrame],
    pose_raw: Sequence[np.ndarray],
    threat_raw: Sequence[np.ndarray],
    settings: EnrichSettings,
) -> tuple[list[Outputs], list[np.ndarray], list[np.ndarray]]:
    """Pose and threat postprocessing of every frame, plus the person crops to embed.

    `pose_raw` and `threat_raw` hold one raw output per frame (``[C, anchors]``; an ``[N, C, A]``
    array also works when all frames share one shape).

    Returns:
        Per frame: the padded outputs so far (without ``EMBEDDINGS``), the crops
        (``[k,256,128,3]``) and the indices of the persons they belong to.
    """
    poses = _by_thresholds(
        frames,
        pose_raw,
        settings.pose.conf,
        settings.pose.iou,
        lambda r, i, c, u: pose_outputs(r, i, c, u, settings.pose),
    )
    threats = _by_thresholds(
        frames,
        threat_raw,
        settings.threat.conf,
        settings.threat.iou,
        lambda r, i, c, u: threat_outputs(r, i, c, u, settings.threat),
    )
    outputs, crops, owners = [], [], []
    for frame, pose, threat in zip(frames, poses, threats, strict=True):
        k = int(pose[ct.NUM_DETECTIONS][0])
        person_crops, valid = detected_person_crops(frame.image, pose[ct.BOXES][:k])  # degenerate: zero embedding
        crops.append(person_crops)
        owners.append(valid)
        outputs.append(
            {
                ct.NUM_THREATS: threat[ct.NUM_DETECTIONS],
                ct.THREAT_BOXES: threat[ct.BOXES],
                ct.THREAT_SCORES: threat[ct.SCORES],
                ct.THREAT_CLASS_IDS: threat[ct.CLASS_IDS],
                ct.THREAT_TYPE: threat[ct.THREAT_TYPE],
                ct.SEVERITY: threat[ct.SEVERITY],
                ct.MAX_SEVERITY: threat[ct.MAX_SEVERITY],
                ct.NUM_PERSONS: pose[ct.NUM_DETECTIONS],
                ct.BOXES: pose[ct.BOXES],
                ct.PERSON_SCORES: pose[ct.SCORES],
                ct.KEYPOINTS: pose[ct.KEYPOINTS],
                ct.POSE_CLASS: pose[ct.POSE_CLASS],
                ct.POSE_CONFIDENCE: pose[ct.POSE_CONFIDENCE],
                ct.SUSPICIOUS: pose[ct.SUSPICIOUS],
                ct.LETTERBOX_INFO: frame.info,
            }
        )
    return outputs, crops, owners


def enrich_finish(
    frames: Sequence[EnrichFrame],
    outputs: Sequence[Outputs],
    embeddings: Sequence[np.ndarray],
    owners: Sequence[np.ndarray],
    errors: Sequence[InvalidInputError | None],
) -> list[Result]:
    """Attach the embeddings and group the frames back into one result per request."""
    per_request: dict[int, list[Outputs]] = {}
    for frame, out, emb, idx in zip(frames, outputs, embeddings, owners, strict=True):
        full = np.zeros((ct.MAX_DETECTIONS, ct.EMBEDDING_DIMENSION), np.float32)
        full[idx] = emb
        per_request.setdefault(frame.request, []).append({**out, ct.EMBEDDINGS: full})
    results: list[Result] = []
    for r, err in enumerate(errors):
        if err is not None:
            results.append(err)
        else:
            items = per_request[r]
            results.append({k: np.stack([o[k] for o in items]) for k in items[0]})
    return results


def chunks(n: int, size: int) -> list[slice]:
    """Slices of at most `size` covering ``range(n)``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
