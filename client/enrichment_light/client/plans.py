"""Protocol- and I/O-free core of the sync and asyncio clients ("sans-IO").

Every public client method is a *plan*: a generator that yields lists of :class:`Request` and
receives, for each list, the outputs in the same order; its return value is the method's
result. :class:`~enrichment_light.client.EnrichmentClient` drives plans with blocking calls (a
thread pool for the requests of one step), :class:`~enrichment_light.client.aio.AsyncEnrichmentClient`
with ``await asyncio.gather``. Requests, decoding, shared-memory bookkeeping and input checks
live here once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from enrichment_light.client.decoding import (
    POSE_KEYS,
    THREAT_KEYS,
    decode_enrich,
    decode_poses,
    decode_threats,
    first_image,
    reid_results,
)
from enrichment_light.client.inputs import ImageInput, as_boxes, as_image_bytes, as_rgb_array
from enrichment_light.client.model_config import backend_from_config, config_parameters
from enrichment_light.client.results import EnrichmentResult, PersonResult, PoseResult, ReIDResult, ThreatResult
from enrichment_light.client.transport import (
    URL_ENV,
    Endpoint,
    RetryPolicy,
    RoundRobin,
    ShmPool,
    ShmRegion,
    default_url,
    parse_endpoints,
)
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError

TRANSPORTS = ("bytes", "shm")


@dataclass
class TensorIn:
    """One request input: data in-band (`array`) or in a shared-memory `region`."""

    name: str
    array: np.ndarray | None = None
    region: ShmRegion | None = None
    shape: tuple[int, ...] = ()
    datatype: str = ""

    @classmethod
    def of(cls, name: str, array: np.ndarray) -> TensorIn:
        """In-band input from an array."""
        from tritonclient.utils import np_to_triton_dtype

        return cls(name, array=array, shape=tuple(array.shape), datatype=np_to_triton_dtype(array.dtype))


@dataclass
class Request:
    """One inference (``kind="infer"``) or model-config lookup (``kind="config"``)."""

    model: str
    inputs: list[TensorIn] = field(default_factory=list)
    outputs: tuple[str, ...] = ()
    kind: str = "infer"


Plan = Generator[list[Request], list[Any], Any]


def image_bytes_tensor(data: bytes, *, batched: bool = True) -> TensorIn:
    """The ``IMAGE_BYTES`` input: shape ``[1, 1]`` for batching models, ``[1]`` otherwise."""
    arr = np.empty((1, 1) if batched else (1,), dtype=np.object_)
    arr.reshape(-1)[0] = data
    return TensorIn.of(ct.IMAGE_BYTES, arr)


def threshold_tensors(conf: float | None, iou: float | None) -> list[TensorIn]:
    """Optional ``CONF_THRESHOLD`` / ``IOU_THRESHOLD`` inputs, validated to lie in [0, 1]."""
    out = []
    for name, value in ((ct.CONF_THRESHOLD, conf), (ct.IOU_THRESHOLD, iou)):
        if value is None:
            continue
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise InvalidInputError(f"{name.lower()} must be in [0, 1], got {value!r}")
        out.append(TensorIn.of(name, np.array([[v]], dtype=np.float32)))
    return out


def output_names(model: str) -> tuple[str, ...]:
    """Every output of `model` in contract order."""
    return tuple(t.name for t in ct.model_spec(model).outputs)


# --------------------------------------------------------------------------------------------
# Shared state and plans
# --------------------------------------------------------------------------------------------


class ClientCore:
    """Settings, request plans and decoding shared by the sync and asyncio clients."""

    def __init__(
        self,
        url: str | Sequence[str] | None,
        *,
        protocol: str,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        version: str | int | None,
        transport: str,
        array_format: str,
        manifest: str | os.PathLike[str] | None,
    ) -> None:
        if url is None:
            url = os.environ.get(URL_ENV) or default_url(protocol)
        self.endpoints: tuple[Endpoint, ...] = parse_endpoints(url, protocol)
        self.protocol = protocol
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        # one overall deadline per call: room for one attempt to time out on a silent server and one elsewhere
        deadline_s = None if self.timeout_s is None else 2 * self.timeout_s
        self.policy = RetryPolicy(retries=int(retries), backoff_s=float(backoff_s), deadline_s=deadline_s)
        self.version = "" if version in (None, "") else str(version)
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.transport = transport
        if array_format not in ("png", "jpeg"):
            raise ValueError(f"array_format must be 'png' or 'jpeg', got {array_format!r}")
        self.array_format = array_format
        self.manifest_path = manifest
        self.round_robin = RoundRobin(len(self.endpoints))
        self.shm = ShmPool("enrichment") if transport == "shm" else None
        self.configs: dict[str, Mapping[str, Any]] = {}
        self._settings: dict[str, tuple[Mapping[str, Any], Any]] = {}
        self.closed = False

    @property
    def urls(self) -> list[str]:
        """Server addresses in fail-over order."""
        return [e.url for e in self.endpoints]

    # -- helpers ------------------------------------------------------------------------------

    def image_bytes(self, image: ImageInput, bgr: bool) -> bytes:
        """Encoded bytes for `image` (see :mod:`enrichment_light.client.inputs`)."""
        return as_image_bytes(image, bgr=bgr, array_format=self.array_format)

    def backend_of(self, model: str) -> str:
        """Cached backend name of an inference model, or ``"unknown"`` before the first lookup."""
        config = self.configs.get(model)
        return backend_from_config(config).backend if config else "unknown"

    def _config_step(self, model: str) -> list[Request]:
        return [] if model in self.configs else [Request(model, kind="config")]

    # -- plans -----------------------------------------------------------------------------

    def plan_threats(self, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool) -> Plan:
        """Plan of ``detect_threats``."""
        if self.transport == "shm":
            return (yield from self._plan_detect_shm(ct.THREAT_MODEL, image, conf=conf, iou=iou, bgr=bgr))
        req = Request(
            ct.THREAT_ENSEMBLE,
            [image_bytes_tensor(self.image_bytes(image, bgr)), *threshold_tensors(conf, iou)],
            output_names(ct.THREAT_ENSEMBLE),
        )
        yield self._config_step(ct.THREAT_MODEL) + self._config_step(ct.THREAT_POSTPROCESS)
        start = time.perf_counter()
        (out,) = yield [req]
        return decode_threats(
            first_image(out, {k: k for k in THREAT_KEYS}),
            elapsed_ms=_ms_since(start),
            backend=self.backend_of(ct.THREAT_MODEL),
            class_names=self.class_names(),
        )

    def plan_poses(self, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool) -> Plan:
        """Plan of ``estimate_poses``."""
        if self.transport == "shm":
            return (yield from self._plan_detect_shm(ct.POSE_MODEL, image, conf=conf, iou=iou, bgr=bgr))
        req = Request(
            ct.POSE_ENSEMBLE,
            [image_bytes_tensor(self.image_bytes(image, bgr)), *threshold_tensors(conf, iou)],
            output_names(ct.POSE_ENSEMBLE),
        )
        (out,) = yield [req]
        return decode_poses(first_image(out, {k: k for k in POSE_KEYS}))

    def plan_embeddings(self, image: ImageInput, boxes: Any, *, bgr: bool) -> Plan:
        """Plan of ``extract_embeddings``: chunks of at most ``MAX_PERSONS_PER_FRAME`` boxes."""
        arr = as_boxes(boxes)
        if len(arr) == 0:
            return []
        if self.transport == "shm":
            from enrichment_light.core.processing.reid import crop_persons

            crops = crop_persons(as_rgb_array(image, bgr=bgr), arr)
            return (yield from self._plan_crops_array(crops))
        data = self.image_bytes(image, bgr)
        step = ct.MAX_PERSONS_PER_FRAME
        reqs = [
            Request(
                ct.REID_ENSEMBLE,
                [image_bytes_tensor(data, batched=False), TensorIn.of(ct.PERSON_BOXES, arr[i : i + step])],
                (ct.EMBEDDINGS,),
            )
            for i in range(0, len(arr), step)
        ]
        outs = yield reqs
        return reid_results(np.concatenate([o[ct.EMBEDDINGS] for o in outs]))

    def plan_crops(self, crops: Sequence[ImageInput], *, bgr: bool) -> Plan:
        """Plan of ``extract_embeddings_from_crops``: resize locally, then call OSNet directly."""
        from enrichment_light.core.processing.reid import resize_crops

        if len(crops) == 0:
            return []
        batch = resize_crops([as_rgb_array(c, bgr=bgr) for c in crops])
        return (yield from self._plan_crops_array(batch))

    def _plan_crops_array(self, batch: np.ndarray) -> Plan:
        step = ct.MAX_PERSONS_PER_FRAME
        chunks = [np.ascontiguousarray(batch[i : i + step]) for i in range(0, len(batch), step)]
        regions: list[ShmRegion] = []
        try:
            reqs = []
            for chunk in chunks:
                if self.shm is not None:
                    region = self.shm.acquire(chunk.nbytes)
                    regions.append(region)
                    region.write(chunk)
                    reqs.append(Request(ct.REID_MODEL, [_shm_input(ct.CROPS, region, chunk)], (ct.EMBEDDINGS,)))
                else:
                    reqs.append(Request(ct.REID_MODEL, [TensorIn.of(ct.CROPS, chunk)], (ct.EMBEDDINGS,)))
            outs = yield reqs
        finally:
            for region in regions:
                self.shm.release(region)
        return reid_results(np.concatenate([o[ct.EMBEDDINGS] for o in outs]))

    def plan_enrich(self, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool) -> Plan:
        """Plan of ``enrich``."""
        if self.transport == "shm":
            return (yield from self._plan_enrich_shm(image, conf=conf, iou=iou, bgr=bgr))
        req = Request(
            ct.ENRICH,
            [image_bytes_tensor(self.image_bytes(image, bgr)), *threshold_tensors(conf, iou)],
            output_names(ct.ENRICH),
        )
        yield self._config_step(ct.THREAT_MODEL) + self._config_step(ct.THREAT_POSTPROCESS)
        start = time.perf_counter()
        (out,) = yield [req]
        return decode_enrich(
            out, elapsed_ms=_ms_since(start), backend=self.backend_of(ct.THREAT_MODEL), class_names=self.class_names()
        )

    # -- shared-memory plans ---------------------------------------------------------------

    def _plan_detect_shm(
        self, model: str, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool
    ) -> Plan:
        from enrichment_light.core.processing.image import letterbox

        threshold_tensors(conf, iou)  # validate before any work
        tensor, info = letterbox(as_rgb_array(image, bgr=bgr))
        post = ct.POSE_POSTPROCESS if model == ct.POSE_MODEL else ct.THREAT_POSTPROCESS
        yield self._config_step(post) + self._config_step(model)
        start = time.perf_counter()
        (raw,) = yield from self._plan_raw([model], tensor)
        if model == ct.POSE_MODEL:
            return self.local_poses(raw, info, conf=conf, iou=iou)
        return self.local_threats(raw, info, conf=conf, iou=iou, elapsed_ms=_ms_since(start))

    def _plan_raw(self, models: Sequence[str], tensor: np.ndarray) -> Plan:
        """Send one letterboxed tensor through shared memory to each of `models`; return raw outputs."""
        batch = tensor[None]
        region = self.shm.acquire(batch.nbytes)
        try:
            region.write(batch)
            outs = yield [Request(m, [_shm_input(ct.IMAGES, region, batch)], (ct.RAW_OUTPUT,)) for m in models]
        finally:
            self.shm.release(region)
        return [o[ct.RAW_OUTPUT] for o in outs]

    def class_names(self) -> list[str] | None:
        """The threat detector's class names from ``threat_postprocess``'s config, if known."""
        config = self.configs.get(ct.THREAT_POSTPROCESS)
        if not config:
            return None
        return list(self.postprocess_settings(ct.THREAT_POSTPROCESS).mapping.class_names)

    def postprocess_settings(self, model: str) -> Any:
        """``PoseSettings``/``ThreatSettings`` of a postprocessor, from its config parameters.

        The same classes the server's postprocessors build from the same parameters, so local
        (shared-memory) postprocessing uses exactly the server's thresholds, rules and taxonomy.
        Cached per config (the taxonomy is resolved once).
        """
        from enrichment_light.serving.pipeline import PoseSettings, ThreatSettings

        config = self.configs[model]
        cached = self._settings.get(model)
        if cached is None or cached[0] is not config:
            cls = PoseSettings if model == ct.POSE_POSTPROCESS else ThreatSettings
            cached = self._settings[model] = (config, cls.from_parameters(config_parameters(config)))
        return cached[1]

    def local_poses(self, raw: np.ndarray, info: Any, *, conf: float | None, iou: float | None) -> list[PoseResult]:
        """Postprocess a raw pose head locally, as ``pose_postprocess`` does on the server."""
        from enrichment_light.serving.pipeline import pose_outputs

        settings = self.postprocess_settings(ct.POSE_POSTPROCESS)
        (padded,) = pose_outputs(
            raw,
            info.to_array()[None],
            settings.conf if conf is None else conf,
            settings.iou if iou is None else iou,
            settings,
        )
        return decode_poses(padded)

    def local_threats(
        self, raw: np.ndarray, info: Any, *, conf: float | None, iou: float | None, elapsed_ms: float
    ) -> ThreatResult:
        """Postprocess a raw detect head locally, as ``threat_postprocess`` does on the server."""
        from enrichment_light.serving.pipeline import threat_outputs

        settings = self.postprocess_settings(ct.THREAT_POSTPROCESS)
        (padded,) = threat_outputs(
            raw,
            info.to_array()[None],
            settings.conf if conf is None else conf,
            settings.iou if iou is None else iou,
            settings,
        )
        return decode_threats(
            padded,
            elapsed_ms=elapsed_ms,
            backend=self.backend_of(ct.THREAT_MODEL),
            class_names=list(settings.mapping.class_names),
        )

    def _plan_enrich_shm(self, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool) -> Plan:
        from enrichment_light.core.processing.image import letterbox
        from enrichment_light.core.processing.reid import crop_persons

        threshold_tensors(conf, iou)
        rgb = as_rgb_array(image, bgr=bgr)
        tensor, info = letterbox(rgb)
        yield [
            *self._config_step(ct.POSE_POSTPROCESS),
            *self._config_step(ct.THREAT_POSTPROCESS),
            *self._config_step(ct.THREAT_MODEL),
        ]
        start = time.perf_counter()
        pose_raw, threat_raw = yield from self._plan_raw([ct.POSE_MODEL, ct.THREAT_MODEL], tensor)
        poses = self.local_poses(pose_raw, info, conf=conf, iou=iou)
        embeddings: list[ReIDResult] = []
        if poses:
            boxes = np.array([p.bbox for p in poses[: ct.MAX_PERSONS_PER_FRAME]], dtype=np.float32)
            embeddings = yield from self._plan_crops_array(crop_persons(rgb, boxes))
        elapsed = _ms_since(start)
        threats = self.local_threats(threat_raw, info, conf=conf, iou=iou, elapsed_ms=elapsed)
        persons = [PersonResult(p, embeddings[i] if i < len(embeddings) else None) for i, p in enumerate(poses)]
        return EnrichmentResult(threats, persons, rgb.shape[0], rgb.shape[1], inference_time_ms=elapsed)


def _shm_input(name: str, region: ShmRegion, array: np.ndarray) -> TensorIn:
    from tritonclient.utils import np_to_triton_dtype

    return TensorIn(name, region=region, shape=tuple(array.shape), datatype=np_to_triton_dtype(array.dtype))


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def make_infer_inputs(module: Any, inputs: Sequence[TensorIn], *, http: bool) -> list[Any]:
    """Build tritonclient ``InferInput`` objects (`module` is ``tritonclient.grpc`` or ``.http``)."""
    built = []
    for t in inputs:
        item = module.InferInput(t.name, list(t.shape), t.datatype)
        if t.region is not None:
            item.set_shared_memory(t.region.name, int(np.prod(t.shape)) * _itemsize(t.datatype))
        elif http:
            item.set_data_from_numpy(t.array, binary_data=True)
        else:
            item.set_data_from_numpy(t.array)
        built.append(item)
    return built


def make_outputs(module: Any, names: Sequence[str], *, http: bool) -> list[Any]:
    """Build tritonclient ``InferRequestedOutput`` objects (binary data for HTTP)."""
    if http:
        return [module.InferRequestedOutput(n, binary_data=True) for n in names]
    return [module.InferRequestedOutput(n) for n in names]


def _itemsize(datatype: str) -> int:
    from tritonclient.utils import triton_to_np_dtype

    return np.dtype(triton_to_np_dtype(datatype)).itemsize
