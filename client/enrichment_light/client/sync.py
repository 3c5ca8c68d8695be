"""The synchronous Triton client: :class:`EnrichmentClient`.

Example:
    >>> from enrichment_light import EnrichmentClient
    >>> with EnrichmentClient("localhost:8001") as client:  # doctest: +SKIP
    ...     client.wait_until_ready(timeout_s=30)
    ...     result = client.enrich("photo.jpg")
    ...     print(result.threats.max_severity, [p.pose.pose_class for p in result.persons])

Thread safety: one instance can be shared by many threads. gRPC uses one tritonclient client per
server (tritonclient's gRPC client is thread-safe for unary calls); HTTP uses one tritonclient
client per thread and server, because tritonclient's HTTP client is not thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import numpy as np

from enrichment_light.client.base import UNLOAD_WAIT_S, ClientBase
from enrichment_light.client.inputs import ImageInput
from enrichment_light.client.manifest import load_manifest, manifest_entry
from enrichment_light.client.model_config import BackendInfo, backend_from_config, config_body
from enrichment_light.client.plans import (
    CLIENT_MODELS,  # noqa: F401  (public here: enrichment_light.client)
    Plan,
    Request,
    make_infer_inputs,
    make_outputs,
)
from enrichment_light.client.results import EnrichmentResult, FrameAnalysis, PoseResult, ReIDResult, ThreatResult
from enrichment_light.client.transport import Endpoint, failover_steps
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import (
    EnrichmentError,
    ModelNotReadyError,
    ServerUnavailableError,
)

T = TypeVar("T")


class EnrichmentClient(ClientBase):
    """Typed client for the enrichment-light models on one or more Triton servers.

    Args:
        url: ``host:port``, a list of them, or a comma-separated string. Requests go round-robin
            over the list and fail over to the next server when one is unavailable. Defaults to
            ``$ENRICHMENT_TRITON_URL``, else ``localhost`` with the contract's gRPC (8001) or HTTP
            (8000) port.
        protocol: ``"grpc"`` (default) or ``"http"``.
        timeout_s: Per-request deadline in seconds (gRPC deadline; HTTP socket timeout).
        retries: Extra rounds over all servers. Retried: a server that is down, refusing, resetting or
            shutting down (``ServerUnavailableError``), a model whose stub is being restarted
            (``ModelRestartingError``), and a not-ready model or a timeout when that server then
            answers "not ready" or nothing. Invalid input and an unknown model on a healthy server are
            raised at once. One call never takes longer than ``2 * timeout_s`` in all.
        backoff_s: Wait before the first retry round, doubled for each further round.
        version: Model version to request (default: the server's version policy).
        transport: ``"bytes"`` (default) sends encoded images to the server-side ensembles.
            ``"shm"`` (local servers only) letterboxes on the client and passes the uint8 tensor
            and its ``LETTERBOX_INFO`` through system shared memory to the tensor-input ensembles
            (``pose_tensor``, ``threat_tensor``), which run the same postprocessors and return
            the same tensors; crops for re-id go to ``osnet_x0_25`` through shared memory too.
        array_format: How numpy/PIL images are encoded for ``"bytes"``: ``"png"`` (lossless,
            default) or ``"jpeg"`` (quality 95, fewer bytes for remote servers).
        max_workers: Threads used by the ``*_batch`` methods.
        manifest: Path of the repository's ``repository.json`` (or its folder) for
            :meth:`backend_info`; defaults to ``$ENRICHMENT_REPOSITORY``'s manifest when set.
        admin_key: Key for Triton's restricted model-repository and shared-memory APIs (the
            deployment's ``--*-restricted-api``), sent as the ``admin-key`` header on those calls
            only; defaults to ``$ENRICHMENT_ADMIN_KEY``.

    Raises:
        ValueError: Bad option values.
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        protocol: str = "grpc",
        timeout_s: float | None = 30.0,
        retries: int = 2,
        backoff_s: float = 0.1,
        version: str | int | None = None,
        transport: str = "bytes",
        array_format: str = "png",
        max_workers: int = 8,
        manifest: str | os.PathLike[str] | None = None,
        admin_key: str | None = None,
    ) -> None:
        super().__init__(
            url,
            protocol=protocol,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            version=version,
            transport=transport,
            array_format=array_format,
            manifest=manifest,
            admin_key=admin_key,
        )
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._register_lock = threading.Lock()  # concurrent requests may share a new region
        self._grpc: dict[str, Any] = {}
        self._http_local = threading.local()
        self._http_all: list[tuple[str, Any]] = []  # (url, client) of every thread
        self._retired: list[Any] = []

    # -- properties and lifecycle --------------------------------------------------------------

    def __enter__(self) -> EnrichmentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EnrichmentClient(urls={self.urls!r}, protocol={self.protocol!r}, transport={self.transport!r})"

    def close(self) -> None:
        """Unregister and destroy shared-memory regions, close connections and the thread pool.

        Safe to call twice.
        """
        with self._lock:
            if self._core.closed:
                return
            self._core.closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        shm = self._core.shm
        if shm is not None:
            for url, name in list(shm.registered):
                # The server may be gone; the region is destroyed anyway.
                with (
                    contextlib.suppress(Exception),
                    contextlib.closing(self._new_raw_client(Endpoint(url, self.protocol))) as raw,
                ):
                    raw.unregister_system_shared_memory(name, headers=self._admin_headers)
            shm.destroy_all()
        with self._lock:
            clients = list(self._grpc.values()) + [c for _, c in self._http_all] + self._retired
            self._grpc.clear()
            self._http_all, self._retired = [], []
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()

    # -- tritonclient plumbing -----------------------------------------------------------------

    def _module(self) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        return module

    def _raw_client(self, endpoint: Endpoint) -> Any:
        if self._core.closed:
            raise EnrichmentError("the client is closed")
        if self.protocol == "grpc":
            with self._lock:
                client = self._grpc.get(endpoint.url)
                if client is None:
                    client = self._grpc[endpoint.url] = self._new_raw_client(endpoint)
            return client
        per_thread = self._http_local.__dict__.setdefault("clients", {})
        client = per_thread.get(endpoint.url)
        if client is None or client._closed:  # closed by _drop_client in another thread
            client = per_thread[endpoint.url] = self._new_raw_client(endpoint)
            with self._lock:
                self._http_all.append((endpoint.url, client))
        return client

    def _new_raw_client(self, endpoint: Endpoint) -> Any:
        if self.protocol == "grpc":
            return self._module().InferenceServerClient(endpoint.url)
        timeout = self._core.timeout_s or 60.0
        return self._module().InferenceServerClient(endpoint.url, connection_timeout=timeout, network_timeout=timeout)

    def _call(self, fn: Callable[[Any, Endpoint], T], *, model: str | None = None) -> T:
        """Run ``fn(raw_client, endpoint)`` with error translation, fail-over and retries (:func:`failover_steps`)."""
        endpoints = [self._core.endpoints[i] for i in self._core.round_robin.order()]
        steps = failover_steps(self._core.policy, endpoints, model=model)
        step = next(steps)
        while True:
            assert step.endpoint is not None or step.kind == "sleep"
            if step.kind == "call":
                raw = None
                try:
                    raw = self._raw_client(step.endpoint)
                    return fn(raw, step.endpoint)
                except Exception as err:
                    if getattr(raw, "_closed", False):  # dropped by another thread mid-call: that server went away
                        err = ConnectionResetError(f"connection dropped while the server goes away ({err})")
                    step = steps.send(err)
            elif step.kind == "probe":
                step = steps.send(self._probe_ready(step.endpoint))
            elif step.kind == "drop":
                self._drop_client(step.endpoint)
                step = next(steps)
            else:
                time.sleep(step.seconds)
                step = next(steps)

    def _probe_ready(self, endpoint: Endpoint) -> bool:
        """Whether `endpoint` answers "ready" within a short timeout, on a fresh connection."""
        timeout = min(2.0, max(0.5, self._core.timeout_s or 2.0))  # a caller's tiny timeout_s must not fail the probe
        try:
            if self.protocol == "grpc":
                with contextlib.closing(self._module().InferenceServerClient(endpoint.url)) as raw:
                    return bool(raw.is_server_ready(client_timeout=timeout))
            client = self._module().InferenceServerClient(
                endpoint.url, connection_timeout=timeout, network_timeout=timeout
            )
            with contextlib.closing(client) as raw:
                return bool(raw.is_server_ready())
        except Exception:
            return False

    def _drop_client(self, endpoint: Endpoint) -> None:
        """Forget the connection to a server that went away: the next call connects afresh.

        HTTP: every thread's client for it is closed (a kept-alive connection to a stopping server is never
        reused, and Triton does not wait out its exit timeout for idle ones). gRPC: the shared client is
        replaced, not closed (other threads may be using it; it is closed with the client), so a restarted
        server is reached without waiting out gRPC's reconnect backoff.
        """
        if self.protocol == "grpc":
            with self._lock:
                old = self._grpc.pop(endpoint.url, None)
                if old is not None:
                    self._retired.append(old)
            return
        with self._lock:  # every thread's connection to it, idle ones included (they would keep Triton waiting)
            dropped = [c for url, c in self._http_all if url == endpoint.url]
            self._http_all = [(url, c) for url, c in self._http_all if url != endpoint.url]
        for client in dropped:
            with contextlib.suppress(Exception):
                client.close()

    def _infer(self, request: Request) -> dict[str, np.ndarray]:
        module, http, core = self._module(), self.protocol == "http", self._core

        def run(client: Any, endpoint: Endpoint) -> dict[str, np.ndarray]:
            if core.shm is not None:
                self._register_regions(client, endpoint, request)
            kwargs: dict[str, Any] = {"model_version": core.version}
            if not http and core.timeout_s is not None:
                kwargs["client_timeout"] = core.timeout_s
            result = client.infer(
                request.model,
                make_infer_inputs(module, request.inputs, http=http),
                outputs=make_outputs(module, request.outputs, http=http),
                **kwargs,
            )
            return {name: result.as_numpy(name) for name in request.outputs}

        return self._call(run, model=request.model)

    def _register_regions(self, client: Any, endpoint: Endpoint, request: Request) -> None:
        shm = self._core.shm
        for t in request.inputs:
            if t.region is None or (endpoint.url, t.region.name) in shm.registered:
                continue
            with self._register_lock:
                if (endpoint.url, t.region.name) in shm.registered:
                    continue
                client.register_system_shared_memory(
                    t.region.name, t.region.key, t.region.byte_size, headers=self._admin_headers
                )
                shm.registered.add((endpoint.url, t.region.name))

    def _config(self, model: str) -> dict[str, Any]:
        config = self._call(
            lambda c, _e: c.get_model_config(model, model_version=self._core.version, **self._as_json()), model=model
        )
        self._core.configs[model] = config
        return config

    def _as_json(self) -> dict[str, Any]:
        return {"as_json": True} if self.protocol == "grpc" else {}

    def _execute(self, request: Request) -> Any:
        if request.kind == "config":
            return self._config(request.model)
        return self._infer(request)

    def _drive(self, plan: Plan) -> Any:
        try:
            requests = next(plan)
            while True:
                requests = plan.send(self._execute_step(requests))
        except StopIteration as stop:
            return stop.value
        finally:
            plan.close()

    def _execute_step(self, requests: list[Request]) -> list[Any]:
        """The requests of one plan step at once: the first on this thread, the others on the pool.

        Every request has finished when this returns or raises, so no request still reads a
        shared-memory region when the plan releases it.
        """
        if len(requests) <= 1:
            return [self._execute(r) for r in requests]
        others = [self._executor().submit(self._execute, r) for r in requests[1:]]
        try:
            first = self._execute(requests[0])
        finally:
            wait(others)
        return [first, *(f.result() for f in others)]

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="enrichment-client")
            return self._pool

    def _map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> list[T]:
        items = list(items)
        if len(items) <= 1:
            return [fn(x) for x in items]
        # A private pool: the shared one also runs the per-step fan-out, which must not starve.
        with ThreadPoolExecutor(min(self._max_workers, len(items)), thread_name_prefix="enrichment-batch") as pool:
            return list(pool.map(fn, items))

    # -- inference -----------------------------------------------------------------------------

    def detect_threats(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> ThreatResult:
        """Detect weapons and other threats in one image.

        Args:
            image: Encoded bytes, a path, a uint8 RGB array (BGR with ``bgr=True``) or a PIL Image.
            conf: Confidence threshold override (server default 0.5).
            iou: NMS IoU threshold override (server default 0.7).
            bgr: Whether an array is in BGR order.

        Returns:
            The threats in original-image pixels, with ``has_threat`` and ``max_severity``.

        Raises:
            InvalidInputError: Bad image or thresholds (the server's words for server-side checks).
            ServerUnavailableError: No server could be reached after retries and fail-over.
            ModelNotReadyError: The model is not loaded.
            InferenceTimeoutError: The request took longer than ``timeout_s``.
        """
        return self._drive(self._core.plan_threats(image, conf=conf, iou=iou, bgr=bgr))

    def estimate_poses(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[PoseResult]:
        """Estimate the pose of every person in one image (up to ``MAX_DETECTIONS``).

        Args and Raises are as for :meth:`detect_threats`.

        Returns:
            One :class:`PoseResult` per person, highest detector score first.
        """
        return self._drive(self._core.plan_poses(image, conf=conf, iou=iou, bgr=bgr))

    def analyze_frame(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> FrameAnalysis:
        """Poses and threats of one frame, both requests in flight at once.

        The same results as :meth:`estimate_poses` then :meth:`detect_threats`, in about the time
        of the slower one: the server runs the two models side by side. :meth:`enrich` adds a
        re-id embedding per person, in one server call.

        Args and Raises are as for :meth:`detect_threats`.

        Returns:
            The frame's poses (as :meth:`estimate_poses`) and threats (as :meth:`detect_threats`).
        """
        return self._drive(self._core.plan_frame(image, conf=conf, iou=iou, bgr=bgr))

    def extract_embeddings(
        self, image: ImageInput, boxes: Sequence[Sequence[float]] | np.ndarray, *, bgr: bool = False
    ) -> list[ReIDResult]:
        """Crop each person box on the server and return its 512-d L2-normalised embedding.

        Args:
            image: The full image (any accepted type).
            boxes: ``[K, 4]`` ``x1, y1, x2, y2`` boxes in original-image pixels.
            bgr: Whether an array is in BGR order.

        Returns:
            One :class:`ReIDResult` per box, in order (empty for no boxes, without a request).

        Raises:
            InvalidInputError: Bad image or boxes. Other errors as for :meth:`detect_threats`.
        """
        return self._drive(self._core.plan_embeddings(image, boxes, bgr=bgr))

    def extract_embeddings_from_crops(self, crops: Sequence[ImageInput], *, bgr: bool = False) -> list[ReIDResult]:
        """Embed person crops by calling ``osnet_x0_25`` directly.

        Crops are resized to 256x128 on the client with the same resize as the server's
        ``reid_crops`` model, then sent in chunks of at most ``MAX_PERSONS_PER_FRAME``.

        Args:
            crops: Person crops (any accepted image type, any size).
            bgr: Whether arrays are in BGR order.

        Returns:
            One :class:`ReIDResult` per crop, in order.
        """
        return self._drive(self._core.plan_crops(crops, bgr=bgr))

    def enrich(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> EnrichmentResult:
        """Run threats, poses and re-id on one image in one server call (the ``enrich`` model).

        Args and Raises are as for :meth:`detect_threats`.

        Returns:
            Threats plus every person with their pose and embedding.
        """
        return self._drive(self._core.plan_enrich(image, conf=conf, iou=iou, bgr=bgr))

    def detect_threats_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[ThreatResult]:
        """:meth:`detect_threats` for many images: one concurrent request each (the server batches)."""
        return self._map(lambda im: self.detect_threats(im, conf=conf, iou=iou, bgr=bgr), images)

    def estimate_poses_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[list[PoseResult]]:
        """:meth:`estimate_poses` for many images, concurrently."""
        return self._map(lambda im: self.estimate_poses(im, conf=conf, iou=iou, bgr=bgr), images)

    def analyze_frame_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[FrameAnalysis]:
        """:meth:`analyze_frame` for many images, concurrently."""
        return self._map(lambda im: self.analyze_frame(im, conf=conf, iou=iou, bgr=bgr), images)

    def extract_embeddings_batch(
        self, items: Iterable[tuple[ImageInput, Sequence[Sequence[float]] | np.ndarray]], *, bgr: bool = False
    ) -> list[list[ReIDResult]]:
        """:meth:`extract_embeddings` for many ``(image, boxes)`` pairs, concurrently."""
        return self._map(lambda item: self.extract_embeddings(item[0], item[1], bgr=bgr), items)

    def extract_embeddings_from_crops_batch(
        self, crop_lists: Iterable[Sequence[ImageInput]], *, bgr: bool = False
    ) -> list[list[ReIDResult]]:
        """:meth:`extract_embeddings_from_crops` for many lists of crops, concurrently."""
        return self._map(lambda crops: self.extract_embeddings_from_crops(crops, bgr=bgr), crop_lists)

    def enrich_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[EnrichmentResult]:
        """:meth:`enrich` for many images, concurrently."""
        return self._map(lambda im: self.enrich(im, conf=conf, iou=iou, bgr=bgr), images)

    # -- server and model management -----------------------------------------------------------

    def is_server_live(self) -> bool:
        """Whether a server answers its liveness probe (``False`` when none can be reached)."""
        try:
            return bool(self._call(lambda c, _e: c.is_server_live()))
        except EnrichmentError:
            return False

    def is_server_ready(self) -> bool:
        """Whether a server answers its readiness probe with ready."""
        try:
            return bool(self._call(lambda c, _e: c.is_server_ready()))
        except EnrichmentError:
            return False

    def is_model_ready(self, model: str) -> bool:
        """Whether `model` (at the client's ``version``) is loaded and ready."""
        try:
            return bool(self._call(lambda c, _e: c.is_model_ready(model, self._core.version), model=model))
        except EnrichmentError:
            return False

    def wait_until_ready(self, timeout_s: float = 60.0, *, models: Sequence[str] | None = None) -> None:
        """Block until the server and `models` are ready.

        Args:
            timeout_s: How long to wait.
            models: Models to wait for; defaults to every model the client's methods use with
                its transport.

        Raises:
            ServerUnavailableError: No server became ready in time.
            ModelNotReadyError: The server is ready but some model is not.
        """
        wanted = list(self._default_models() if models is None else models)
        deadline = time.monotonic() + timeout_s
        pending = wanted
        server_ready = False
        while True:
            server_ready = self.is_server_ready()
            if server_ready:
                pending = [m for m in wanted if not self.is_model_ready(m)]
                if not pending:
                    return
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if not server_ready:
            raise ServerUnavailableError(f"no server at {self.urls} became ready within {timeout_s} s")
        raise ModelNotReadyError(f"models {pending} at {self.urls} not ready within {timeout_s} s")

    def model_config(self, model: str) -> dict[str, Any]:
        """The model's config as a dict (the ``config`` body in both protocols)."""
        return dict(config_body(self._config(model)))

    def repository_index(self) -> list[dict[str, Any]]:
        """The server's model repository index: ``[{name, version, state, reason}, ...]``."""
        index = self._call(lambda c, _e: c.get_model_repository_index(headers=self._admin_headers, **self._as_json()))
        if isinstance(index, dict):
            index = index.get("models", [])
        return [dict(m) for m in index]

    def load_model(self, model: str) -> None:
        """Load (or reload) `model` through the repository API (explicit model-control mode)."""
        self._call(lambda c, _e: c.load_model(model, headers=self._admin_headers), model=model)
        self._core.configs.pop(model, None)

    def unload_model(self, model: str, *, unload_dependents: bool = False) -> None:
        """Unload `model` through the repository API (explicit model-control mode).

        Returns once Triton has finished unloading it (a Python-backend stub takes about a second),
        or after the client's ``timeout_s``.
        """
        self._call(
            lambda c, _e: c.unload_model(model, headers=self._admin_headers, unload_dependents=unload_dependents),
            model=model,
        )
        self._core.configs.pop(model, None)
        deadline = time.monotonic() + (self._core.timeout_s or UNLOAD_WAIT_S)
        while self._still_unloading(self.repository_index(), model) and time.monotonic() < deadline:
            time.sleep(0.05)

    def backend_info(self, models: Sequence[str] | None = None) -> dict[str, BackendInfo]:
        """Which backend serves each inference model (``tensorrt``, ``onnxruntime`` or ``python``).

        Read from each model's config (``platform``/``backend``, and for Python-backend runners
        the ``inference_backend`` parameter the repository builder writes), plus the model's
        entry in the repository manifest when one was given or found.

        Args:
            models: Models to report; defaults to the three inference models.

        Returns:
            ``{model: BackendInfo}``.
        """
        manifest = load_manifest(self._core.manifest_path)
        out = {}
        for model in models or ct.INFERENCE_MODELS:
            out[model] = backend_from_config(self._config(model), manifest_entry(manifest, model))
        return out

    def health(self) -> dict[str, Any]:
        """Liveness, readiness and, per model of the contract, readiness and backend.

        Returns:
            ``{"urls", "live", "ready", "models": {name: {"ready", "backend", "device",
            "precision"}}}``; never raises for an unreachable server (``live`` is then ``False``).
        """
        live = self.is_server_live()
        report: dict[str, Any] = {"urls": self.urls, "live": live, "ready": live and self.is_server_ready()}
        models: dict[str, Any] = {}
        for name in ct.ALL_MODELS:
            entry: dict[str, Any] = {
                "ready": live and self.is_model_ready(name),
                "backend": "-",
                "device": "-",
                "precision": "-",
            }
            if entry["ready"]:
                try:
                    info = backend_from_config(self._config(name))
                    entry["backend"], entry["device"], entry["precision"] = info.backend, info.device, info.precision
                except EnrichmentError:
                    pass
            models[name] = entry
        report["models"] = models
        return report
