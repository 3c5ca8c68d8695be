"""Protocol- and I/O-free core of the sync and asyncio clients ("sans-IO").

Every public client method is a *plan*: a generator that yields lists of :class:`Request` and
receives, for each list, the outputs in the same order; its return value is the method's
result. :class:`~enrichment_light.client.EnrichmentClient` drives plans with blocking calls (a
thread pool for the requests of one step), :class:`~enrichment_light.client.aio.AsyncEnrichmentClient`
with ``await asyncio.gather``. Requests, decoding, shared-memory bookkeeping and input checks
live here once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from enrichment_light.client.decoding import (
    ENRICH_POSE_NAMES,
    ENRICH_THREAT_NAMES,
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
from enrichment_light.client.results import FrameAnalysis
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
#: The tensor-input twin of each bytes ensemble: what the ``shm`` transport calls.
TENSOR_ENSEMBLES = {ct.POSE_ENSEMBLE: ct.POSE_TENSOR_ENSEMBLE, ct.THREAT_ENSEMBLE: ct.THREAT_TENSOR_ENSEMBLE}
#: Models the client's methods call with either transport; ``wait_until_ready`` waits for these by default.
CLIENT_MODELS = (ct.THREAT_ENSEMBLE, ct.POSE_ENSEMBLE, ct.REID_ENSEMBLE, ct.ENRICH, ct.REID_MODEL)
_SHM_ALIGN = 64  # LETTERBOX_INFO starts at the next multiple of this after the pixels
#: Crops per ``osnet_x0_25`` request. 32 crops go as two concurrent requests of 16, each resized on
#: its own client thread: on 2 cores, 44 vs 56 ms per call at concurrency 1 against one request of
#: 32 (docs/cpu-performance.md, "Re-id"). At most ``MAX_PERSONS_PER_FRAME``.
EMBED_REQUEST_CROPS = 16


@dataclass
class TensorIn:
    """One request input: in-band data or a shared-memory `region`.

    In-band data is `array`, or what `produce` makes when the request is sent (:meth:`deferred`);
    a deferred shared-memory input writes what `produce` makes into `region` when it is sent.
    """

    name: str
    array: np.ndarray | None = None
    region: ShmRegion | None = None
    shape: tuple[int, ...] = ()
    datatype: str = ""
    offset: int = 0  # bytes into `region`
    produce: Callable[[], np.ndarray] | None = None  # data made on the thread that sends it
    prepared: bool = False  # `produce` has run (and, for a region, its output is written there)

    @classmethod
    def of(cls, name: str, array: np.ndarray) -> TensorIn:
        """In-band input from an array."""
        from tritonclient.utils import np_to_triton_dtype

        return cls(name, array=array, shape=tuple(array.shape), datatype=np_to_triton_dtype(array.dtype))

    @classmethod
    def deferred(
        cls,
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        produce: Callable[[], np.ndarray],
        *,
        region: ShmRegion | None = None,
    ) -> TensorIn:
        """An input whose array `produce` makes when the request is sent (once; on the sending thread).

        In-band by default; with `region`, the array is written into that shared-memory region
        (which must hold it). The sync client sends the requests of one plan step from its thread
        pool, so the work in `produce` (e.g. resizing a chunk of crops) runs in parallel for the
        step's requests; the asyncio client runs it with ``asyncio.to_thread``, off the event loop.
        `produce` must not raise for checked inputs: check them before building the request.
        """
        from tritonclient.utils import np_to_triton_dtype

        datatype = np_to_triton_dtype(np.dtype(dtype))
        return cls(name, region=region, shape=tuple(shape), datatype=datatype, produce=produce)

    def prepare(self) -> None:
        """Run `produce` now, on this thread, once: keep its array, or write it into `region`."""
        if self.produce is None or self.prepared:
            return
        array = self.produce()
        if tuple(array.shape) != self.shape:
            raise ValueError(f"{self.name}: produced shape {array.shape}, declared {self.shape}")
        if self.region is None:
            self.array = array  # kept for retries
        else:
            self.region.write(array, offset=self.offset)
        self.prepared = True

    def data(self) -> np.ndarray:
        """The in-band array (made by `produce` on first use and kept for retries)."""
        if self.region is None:
            self.prepare()
        if self.array is None:
            raise ValueError(f"{self.name}: no in-band data")
        return self.array


@dataclass
class Request:
    """One inference (``kind="infer"``) or model-config lookup (``kind="config"``)."""

    model: str
    inputs: list[TensorIn] = field(default_factory=list)
    outputs: tuple[str, ...] = ()
    kind: str = "infer"


Plan = Generator[list[Request], list[Any], Any]


def side_by_side(*plans: Plan) -> Generator[list[Request], list[Any], list[Any]]:
    """Drive `plans` together: each step sends the requests of every unfinished plan at once.

    A plan's step that asks for nothing (a config lookup already cached) is passed at once, so it
    does not hold its next request back by a round trip. Returns the plans' results in the order
    given. Closing this plan closes every sub-plan (their shared-memory regions are released), also
    when a request failed.
    """
    results: list[Any] = [None] * len(plans)
    pending: dict[int, list[Request]] = {}

    def advance(i: int, outputs: list[Any] | None) -> None:
        try:
            requests = plans[i].send(outputs)
            while not requests:
                requests = plans[i].send([])
            pending[i] = requests
        except StopIteration as stop:
            results[i] = stop.value

    try:
        for i in range(len(plans)):
            advance(i, None)
        while pending:
            step = list(pending.items())
            outputs = yield [r for _, reqs in step for r in reqs]
            pending.clear()
            start = 0
            for i, reqs in step:
                advance(i, outputs[start : start + len(reqs)])
                start += len(reqs)
    finally:
        for plan in plans:
            plan.close()
    return results


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
        threshold_tensors(conf, iou)  # validated before any request
        yield self._config_step(ct.THREAT_MODEL) + self._config_step(ct.THREAT_POSTPROCESS)
        start = time.perf_counter()
        out = yield from self._plan_detect(ct.THREAT_ENSEMBLE, image, conf=conf, iou=iou, bgr=bgr)
        return decode_threats(
            first_image(out, {k: k for k in THREAT_KEYS}),
            elapsed_ms=_ms_since(start),
            backend=self.backend_of(ct.THREAT_MODEL),
            class_names=self.class_names(),
        )

    def plan_poses(self, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool) -> Plan:
        """Plan of ``estimate_poses``."""
        out = yield from self._plan_detect(ct.POSE_ENSEMBLE, image, conf=conf, iou=iou, bgr=bgr)
        return decode_poses(first_image(out, {k: k for k in POSE_KEYS}))

    def plan_frame(self, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool) -> Plan:
        """Plan of ``analyze_frame``: :meth:`plan_poses` and :meth:`plan_threats` side by side.

        The image is encoded (bytes) or converted to RGB (shm) once, and both requests are in flight
        at the same time, so the server runs pose and threat concurrently (on 2 cores: ~1.8x the
        frames/s of the two calls one after the other, docs/cpu-performance.md).
        """
        threshold_tensors(conf, iou)  # validated before any work
        frame = self.image_bytes(image, bgr) if self.shm is None else as_rgb_array(image, bgr=bgr)
        poses, threats = yield from side_by_side(
            self.plan_poses(frame, conf=conf, iou=iou, bgr=False),
            self.plan_threats(frame, conf=conf, iou=iou, bgr=False),
        )
        return FrameAnalysis(poses=poses, threats=threats)

    def _plan_detect(
        self, ensemble: str, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool
    ) -> Plan:
        """One image through a detector ensemble; returns its batched outputs.

        ``bytes`` sends the encoded image to `ensemble`; ``shm`` letterboxes here and sends the
        tensor to the ensemble's tensor-input twin (``TENSOR_ENSEMBLES``). Both end in the same
        server-side postprocessor and return the same tensors.
        """
        thresholds = threshold_tensors(conf, iou)  # validated before any work
        if self.shm is None:
            req = Request(
                ensemble, [image_bytes_tensor(self.image_bytes(image, bgr)), *thresholds], output_names(ensemble)
            )
            (out,) = yield [req]
            return out
        rgb = as_rgb_array(image, bgr=bgr)
        lookup = self._config_step(ct.PREPROCESS)  # its letterbox mode, read once
        if lookup:
            yield lookup
        tensor, info = self.letterboxed(rgb)
        name = TENSOR_ENSEMBLES[ensemble]
        with self.shm_tensor_inputs(tensor, info) as inputs:
            (out,) = yield [Request(name, [*inputs, *thresholds], output_names(name))]
        return out

    def letterbox_mode(self) -> str:
        """How the server's ``preprocess`` letterboxes: its ``letterbox`` parameter, ``rect`` or ``square``.

        The shm transport letterboxes on the client, so it must do what the bytes path does on the
        server. A ``preprocess`` without that parameter letterboxes square (640 x 640).
        """
        config = self.configs.get(ct.PREPROCESS)
        mode = config_parameters(config).get("letterbox", "square") if config else "square"
        return "rect" if mode.strip().lower() == "rect" else "square"

    def letterboxed(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``images`` ``[1, H, W, 3]`` and ``LETTERBOX_INFO`` ``[1, 5]`` of an RGB image, as ``preprocess`` does."""
        from enrichment_light.core.processing.image import letterbox

        # rect: the minimal stride-32 rectangle (Ultralytics LetterBox(auto=True)), servers that say so
        rect = {"auto": True} if self.letterbox_mode() == "rect" else {}
        tensor, info = letterbox(rgb, ct.DETECTOR_INPUT_SIZE, **rect)
        return tensor[None], info.to_array()[None]

    @contextlib.contextmanager
    def shm_tensor_inputs(self, tensor: np.ndarray, info: np.ndarray) -> Iterator[list[TensorIn]]:
        """``images`` and ``LETTERBOX_INFO`` written to one pooled shared-memory region (info after the pixels)."""
        info_offset = -(-tensor.nbytes // _SHM_ALIGN) * _SHM_ALIGN
        region = self.shm.acquire(info_offset + info.nbytes)
        try:
            region.write(tensor)
            region.write(info, offset=info_offset)
            yield [_shm_input(ct.IMAGES, region, tensor), _shm_input(ct.LETTERBOX_INFO, region, info, info_offset)]
        finally:
            self.shm.release(region)

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
        """Plan of ``extract_embeddings_from_crops``: resize locally, then call OSNet directly.

        Every crop is checked first. Each request of :data:`EMBED_REQUEST_CROPS` crops resizes its
        own chunk when it is sent (:meth:`TensorIn.deferred`; through shared memory, straight into
        its region), so the sync client resizes and sends the chunks on parallel threads.
        """
        from enrichment_light.core.processing.reid import check_crops, resize_crops

        if len(crops) == 0:
            return []
        arrays = []
        for i, crop in enumerate(crops):
            try:
                arrays.append(as_rgb_array(crop, bgr=bgr))
            except InvalidInputError as err:
                raise type(err)(f"crop {i}: {err}") from err
        embeddings = yield from self._plan_embed(check_crops(arrays), resize_crops)
        return reid_results(embeddings)

    def _plan_crops_array(self, batch: np.ndarray) -> Plan:
        embeddings = yield from self._plan_embed(batch)
        return reid_results(embeddings)

    def _plan_embed(
        self,
        crops: Sequence[np.ndarray],
        to_tensor: Callable[[Sequence[np.ndarray]], np.ndarray] = np.ascontiguousarray,
    ) -> Plan:
        """``osnet_x0_25`` on `crops` in concurrent requests of :data:`EMBED_REQUEST_CROPS`.

        `to_tensor` turns a chunk into its uint8 ``[k, 256, 128, 3]`` tensor when its request is sent,
        on the sending thread (:meth:`TensorIn.deferred`): resizing raw crops, or nothing for crops
        already 256x128. With ``shm`` it is written straight into the chunk's pooled region.
        """
        step = min(EMBED_REQUEST_CROPS, ct.MAX_PERSONS_PER_FRAME)
        regions: list[ShmRegion] = []
        try:
            reqs = []
            for i in range(0, len(crops), step):
                chunk = crops[i : i + step]
                shape = (len(chunk), ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3)
                region = None
                if self.shm is not None:
                    region = self.shm.acquire(int(np.prod(shape)))
                    regions.append(region)
                tensor = TensorIn.deferred(
                    ct.CROPS, shape, np.uint8, functools.partial(to_tensor, chunk), region=region
                )
                reqs.append(Request(ct.REID_MODEL, [tensor], (ct.EMBEDDINGS,)))
            outs = yield reqs
        finally:
            for region in regions:
                self.shm.release(region)
        return np.concatenate([o[ct.EMBEDDINGS] for o in outs])

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

    def class_names(self) -> list[str] | None:
        """The threat detector's class names (the ``class_names`` parameter of ``threat_postprocess``), if known.

        Only fills :attr:`ThreatDetection.class_name`; thresholds, rules and the taxonomy stay on the server.
        """
        config = self.configs.get(ct.THREAT_POSTPROCESS)
        if not config:
            return None
        try:
            names = json.loads(config_parameters(config).get("class_names", "null"))
        except json.JSONDecodeError:
            return None
        return [str(n) for n in names] if isinstance(names, list) else None

    # -- shared-memory enrich --------------------------------------------------------------

    def _plan_enrich_shm(self, image: ImageInput, *, conf: float | None, iou: float | None, bgr: bool) -> Plan:
        """``enrich`` over shared memory: ``pose_tensor`` and ``threat_tensor`` at once, then ``osnet_x0_25``.

        The ``enrich`` BLS crops persons from the original frame, which only the client holds here,
        so the client crops (:func:`~enrichment_light.core.processing.reid.detected_person_crops`, the
        BLS's own function) and sends the crops through shared memory. The outputs are assembled
        into ``enrich``'s tensors and decoded by the same :func:`decode_enrich`.
        """
        from enrichment_light.core.processing.reid import detected_person_crops

        thresholds = threshold_tensors(conf, iou)
        rgb = as_rgb_array(image, bgr=bgr)
        yield [
            *self._config_step(ct.THREAT_MODEL),
            *self._config_step(ct.THREAT_POSTPROCESS),
            *self._config_step(ct.PREPROCESS),
        ]
        tensor, info = self.letterboxed(rgb)
        start = time.perf_counter()
        names = {e: TENSOR_ENSEMBLES[e] for e in (ct.POSE_ENSEMBLE, ct.THREAT_ENSEMBLE)}
        with self.shm_tensor_inputs(tensor, info) as inputs:
            pose, threat = yield [Request(n, [*inputs, *thresholds], output_names(n)) for n in names.values()]
        count = int(np.asarray(pose[ct.NUM_DETECTIONS]).reshape(-1)[0])
        crops, owners = detected_person_crops(rgb, np.asarray(pose[ct.BOXES])[0][:count])
        embeddings = np.zeros((1, ct.MAX_DETECTIONS, ct.EMBEDDING_DIMENSION), np.float32)
        if len(crops):
            embeddings[0, owners] = yield from self._plan_embed(crops)
        out = {
            **{enrich_name: threat[name] for name, enrich_name in ENRICH_THREAT_NAMES.items()},
            **{enrich_name: pose[name] for name, enrich_name in ENRICH_POSE_NAMES.items()},
            ct.EMBEDDINGS: embeddings,
            ct.LETTERBOX_INFO: info,
        }
        return decode_enrich(
            out, elapsed_ms=_ms_since(start), backend=self.backend_of(ct.THREAT_MODEL), class_names=self.class_names()
        )


def _shm_input(name: str, region: ShmRegion, array: np.ndarray, offset: int = 0) -> TensorIn:
    from tritonclient.utils import np_to_triton_dtype

    return TensorIn(
        name, region=region, shape=tuple(array.shape), datatype=np_to_triton_dtype(array.dtype), offset=offset
    )


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def make_infer_inputs(module: Any, inputs: Sequence[TensorIn], *, http: bool) -> list[Any]:
    """Build tritonclient ``InferInput`` objects (`module` is ``tritonclient.grpc`` or ``.http``)."""
    built = []
    for t in inputs:
        item = module.InferInput(t.name, list(t.shape), t.datatype)
        t.prepare()  # deferred data: made on this (the sending) thread
        if t.region is not None:
            item.set_shared_memory(t.region.name, int(np.prod(t.shape)) * _itemsize(t.datatype), offset=t.offset)
        elif http:
            item.set_data_from_numpy(t.data(), binary_data=True)
        else:
            item.set_data_from_numpy(t.data())
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
