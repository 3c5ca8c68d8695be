"""The asyncio twin of :class:`~enrichment_light.client.EnrichmentClient`.

Same constructor, same methods (as coroutines), same errors. The ``*_batch`` methods send one
request per image with ``asyncio.gather``, so the server's dynamic batcher sees them together.

Example:
    >>> import asyncio
    >>> from enrichment_light.client.aio import AsyncEnrichmentClient
    >>> async def main():  # doctest: +SKIP
    ...     async with AsyncEnrichmentClient("localhost:8001") as client:
    ...         await client.wait_until_ready(timeout_s=30)
    ...         return await client.enrich_batch(["a.jpg", "b.jpg"])

An instance belongs to the event loop it is first used in (tritonclient's asyncio clients are
bound to their loop); use one instance per loop. Within that loop it is safe to share between
tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from enrichment_light.client.base import UNLOAD_WAIT_S, ClientBase
from enrichment_light.client.inputs import ImageInput
from enrichment_light.client.manifest import load_manifest, manifest_entry
from enrichment_light.client.model_config import BackendInfo, backend_from_config, config_body
from enrichment_light.client.plans import Plan, Request, make_infer_inputs, make_outputs
from enrichment_light.client.results import EnrichmentResult, FrameAnalysis, PoseResult, ReIDResult, ThreatResult
from enrichment_light.client.transport import Endpoint, failover_steps
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import EnrichmentError, ModelNotReadyError, ServerUnavailableError

T = TypeVar("T")


class AsyncEnrichmentClient(ClientBase):
    """Asyncio client; see :class:`~enrichment_light.client.EnrichmentClient` for every argument."""

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
        self._clients: dict[str, Any] = {}
        self._register_lock: asyncio.Lock | None = None
        self._retired: list[Any] = []

    async def __aenter__(self) -> AsyncEnrichmentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncEnrichmentClient(urls={self.urls!r}, protocol={self.protocol!r}, transport={self.transport!r})"

    async def close(self) -> None:
        """Unregister and destroy shared-memory regions and close connections. Safe to call twice."""
        if self._core.closed:
            return
        shm = self._core.shm
        if shm is not None:
            for url, name in list(shm.registered):
                with contextlib.suppress(Exception):
                    raw = self._raw_client(Endpoint(url, self.protocol))
                    await raw.unregister_system_shared_memory(name, headers=self._admin_headers)
            shm.destroy_all()
        self._core.closed = True
        clients, self._clients = list(self._clients.values()) + self._retired, {}
        self._retired = []
        for c in clients:
            with contextlib.suppress(Exception):
                await c.close()

    # -- tritonclient plumbing -----------------------------------------------------------------

    def _module(self) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.http.aio as module
        return module

    def _raw_client(self, endpoint: Endpoint) -> Any:
        if self._core.closed:
            raise EnrichmentError("the client is closed")
        client = self._clients.get(endpoint.url)
        if client is None:
            if self.protocol == "grpc":
                client = self._module().InferenceServerClient(endpoint.url)
            else:
                client = self._module().InferenceServerClient(endpoint.url, conn_timeout=self._core.timeout_s or 60.0)
            self._clients[endpoint.url] = client
        return client

    async def _call(self, fn: Callable[[Any, Endpoint], Awaitable[T]], *, model: str | None = None) -> T:
        """Await ``fn(raw_client, endpoint)`` with translation, fail-over and retries (:func:`failover_steps`)."""
        endpoints = [self._core.endpoints[i] for i in self._core.round_robin.order()]
        steps = failover_steps(self._core.policy, endpoints, model=model)
        step = next(steps)
        while True:
            assert step.endpoint is not None or step.kind == "sleep"
            if step.kind == "call":
                raw = None
                try:
                    raw = self._raw_client(step.endpoint)
                    return await fn(raw, step.endpoint)
                except Exception as err:
                    if getattr(getattr(raw, "_stub", None), "closed", False):  # dropped by another task mid-call
                        err = ConnectionResetError(f"connection dropped while the server goes away ({err})")
                    step = steps.send(err)
            elif step.kind == "probe":
                step = steps.send(await self._probe_ready(step.endpoint))
            elif step.kind == "drop":
                old = self._clients.pop(step.endpoint.url, None)
                if old is not None and self.protocol == "http":  # kept-alive connections would delay its exit
                    with contextlib.suppress(Exception):
                        await old.close()
                elif old is not None:  # a gRPC channel other tasks may hold: closed with the client
                    self._retired.append(old)
                step = next(steps)
            else:
                await asyncio.sleep(step.seconds)
                step = next(steps)

    async def _probe_ready(self, endpoint: Endpoint) -> bool:
        """Whether `endpoint` answers "ready" within a short timeout, on a fresh connection."""
        timeout = min(2.0, max(0.5, self._core.timeout_s or 2.0))  # a caller's tiny timeout_s must not fail the probe
        module = self._module()
        try:
            if self.protocol == "grpc":
                raw = module.InferenceServerClient(endpoint.url)
                try:
                    return bool(await raw.is_server_ready(client_timeout=timeout))
                finally:
                    await raw.close()
            raw = module.InferenceServerClient(endpoint.url, conn_timeout=timeout)
            try:
                return bool(await asyncio.wait_for(raw.is_server_ready(), timeout))
            finally:
                await raw.close()
        except Exception:
            return False

    async def _infer(self, request: Request) -> dict[str, np.ndarray]:
        module, http, core = self._module(), self.protocol == "http", self._core
        deferred = [t for t in request.inputs if t.produce is not None and not t.prepared]
        if deferred:  # e.g. resizing a chunk of crops: on a worker thread, off the event loop
            await asyncio.to_thread(lambda: [t.prepare() for t in deferred])

        async def run(client: Any, endpoint: Endpoint) -> dict[str, np.ndarray]:
            if core.shm is not None:
                await self._register_regions(client, endpoint, request)
            kwargs: dict[str, Any] = {"model_version": core.version}
            if not http and core.timeout_s is not None:
                kwargs["client_timeout"] = core.timeout_s
            result = await client.infer(
                request.model,
                make_infer_inputs(module, request.inputs, http=http),
                outputs=make_outputs(module, request.outputs, http=http),
                **kwargs,
            )
            return {name: result.as_numpy(name) for name in request.outputs}

        return await self._call(run, model=request.model)

    async def _register_regions(self, client: Any, endpoint: Endpoint, request: Request) -> None:
        shm = self._core.shm
        if self._register_lock is None:
            self._register_lock = asyncio.Lock()
        async with self._register_lock:
            for t in request.inputs:
                if t.region is None or (endpoint.url, t.region.name) in shm.registered:
                    continue
                await client.register_system_shared_memory(
                    t.region.name, t.region.key, t.region.byte_size, headers=self._admin_headers
                )
                shm.registered.add((endpoint.url, t.region.name))

    def _as_json(self) -> dict[str, Any]:
        return {"as_json": True} if self.protocol == "grpc" else {}

    async def _config(self, model: str) -> dict[str, Any]:
        async def run(c: Any, _e: Endpoint) -> Any:
            return await c.get_model_config(model, model_version=self._core.version, **self._as_json())

        config = await self._call(run, model=model)
        self._core.configs[model] = config
        return config

    async def _execute(self, request: Request) -> Any:
        if request.kind == "config":
            return await self._config(request.model)
        return await self._infer(request)

    async def _drive(self, plan: Plan) -> Any:
        try:
            requests = next(plan)
            while True:
                # every request of the step finishes before an error is raised, so none still reads a
                # shared-memory region when the plan releases it
                outputs = await asyncio.gather(*(self._execute(r) for r in requests), return_exceptions=True)
                failed = next((o for o in outputs if isinstance(o, BaseException)), None)
                if failed is not None:
                    raise failed
                requests = plan.send(outputs)
        except StopIteration as stop:
            return stop.value
        finally:
            plan.close()

    # -- inference -----------------------------------------------------------------------------

    async def detect_threats(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> ThreatResult:
        """See :meth:`EnrichmentClient.detect_threats <enrichment_light.client.EnrichmentClient.detect_threats>`."""
        return await self._drive(self._core.plan_threats(image, conf=conf, iou=iou, bgr=bgr))

    async def estimate_poses(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[PoseResult]:
        """See :meth:`EnrichmentClient.estimate_poses <enrichment_light.client.EnrichmentClient.estimate_poses>`."""
        return await self._drive(self._core.plan_poses(image, conf=conf, iou=iou, bgr=bgr))

    async def extract_embeddings(
        self, image: ImageInput, boxes: Sequence[Sequence[float]] | np.ndarray, *, bgr: bool = False
    ) -> list[ReIDResult]:
        """See :meth:`EnrichmentClient.extract_embeddings <enrichment_light.client.EnrichmentClient.extract_embeddings>`."""  # noqa: E501
        return await self._drive(self._core.plan_embeddings(image, boxes, bgr=bgr))

    async def extract_embeddings_from_crops(
        self, crops: Sequence[ImageInput], *, bgr: bool = False
    ) -> list[ReIDResult]:
        """See :meth:`EnrichmentClient.extract_embeddings_from_crops`."""
        return await self._drive(self._core.plan_crops(crops, bgr=bgr))

    async def analyze_frame(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> FrameAnalysis:
        """See :meth:`EnrichmentClient.analyze_frame <enrichment_light.client.EnrichmentClient.analyze_frame>`."""
        return await self._drive(self._core.plan_frame(image, conf=conf, iou=iou, bgr=bgr))

    async def enrich(
        self, image: ImageInput, *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> EnrichmentResult:
        """See :meth:`EnrichmentClient.enrich <enrichment_light.client.EnrichmentClient.enrich>`."""
        return await self._drive(self._core.plan_enrich(image, conf=conf, iou=iou, bgr=bgr))

    async def detect_threats_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[ThreatResult]:
        """:meth:`detect_threats` for many images, one concurrent request each."""
        return list(await asyncio.gather(*(self.detect_threats(i, conf=conf, iou=iou, bgr=bgr) for i in images)))

    async def analyze_frame_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[FrameAnalysis]:
        """:meth:`analyze_frame` for many images, one concurrent call each."""
        return list(await asyncio.gather(*(self.analyze_frame(i, conf=conf, iou=iou, bgr=bgr) for i in images)))

    async def estimate_poses_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[list[PoseResult]]:
        """:meth:`estimate_poses` for many images, concurrently."""
        return list(await asyncio.gather(*(self.estimate_poses(i, conf=conf, iou=iou, bgr=bgr) for i in images)))

    async def extract_embeddings_batch(
        self, items: Iterable[tuple[ImageInput, Sequence[Sequence[float]] | np.ndarray]], *, bgr: bool = False
    ) -> list[list[ReIDResult]]:
        """:meth:`extract_embeddings` for many ``(image, boxes)`` pairs, concurrently."""
        return list(await asyncio.gather(*(self.extract_embeddings(i, b, bgr=bgr) for i, b in items)))

    async def extract_embeddings_from_crops_batch(
        self, crop_lists: Iterable[Sequence[ImageInput]], *, bgr: bool = False
    ) -> list[list[ReIDResult]]:
        """:meth:`extract_embeddings_from_crops` for many lists of crops, concurrently."""
        return list(await asyncio.gather(*(self.extract_embeddings_from_crops(c, bgr=bgr) for c in crop_lists)))

    async def enrich_batch(
        self, images: Iterable[ImageInput], *, conf: float | None = None, iou: float | None = None, bgr: bool = False
    ) -> list[EnrichmentResult]:
        """:meth:`enrich` for many images, concurrently."""
        return list(await asyncio.gather(*(self.enrich(i, conf=conf, iou=iou, bgr=bgr) for i in images)))

    # -- server and model management -----------------------------------------------------------

    async def _probe(self, fn: Callable[[Any], Awaitable[Any]], *, model: str | None = None) -> bool:
        async def run(c: Any, _e: Endpoint) -> Any:
            return await fn(c)

        try:
            return bool(await self._call(run, model=model))
        except EnrichmentError:
            return False

    async def is_server_live(self) -> bool:
        """Whether a server answers its liveness probe."""
        return await self._probe(lambda c: c.is_server_live())

    async def is_server_ready(self) -> bool:
        """Whether a server answers its readiness probe with ready."""
        return await self._probe(lambda c: c.is_server_ready())

    async def is_model_ready(self, model: str) -> bool:
        """Whether `model` is loaded and ready."""
        return await self._probe(lambda c: c.is_model_ready(model, self._core.version), model=model)

    async def wait_until_ready(self, timeout_s: float = 60.0, *, models: Sequence[str] | None = None) -> None:
        """Wait until the server and `models` are ready (see the sync client for the errors)."""
        wanted = list(self._default_models() if models is None else models)
        deadline = time.monotonic() + timeout_s
        pending = wanted
        server_ready = False
        while True:
            server_ready = await self.is_server_ready()
            if server_ready:
                ready = await asyncio.gather(*(self.is_model_ready(m) for m in wanted))
                pending = [m for m, ok in zip(wanted, ready, strict=True) if not ok]
                if not pending:
                    return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if not server_ready:
            raise ServerUnavailableError(f"no server at {self.urls} became ready within {timeout_s} s")
        raise ModelNotReadyError(f"models {pending} at {self.urls} not ready within {timeout_s} s")

    async def model_config(self, model: str) -> dict[str, Any]:
        """The model's config body as a dict."""
        return dict(config_body(await self._config(model)))

    async def load_model(self, model: str) -> None:
        """Load (or reload) `model` through the repository API (explicit model-control mode)."""

        async def run(c: Any, _e: Endpoint) -> Any:
            return await c.load_model(model, headers=self._admin_headers)

        await self._call(run, model=model)
        self._core.configs.pop(model, None)

    async def unload_model(self, model: str, *, unload_dependents: bool = False) -> None:
        """Unload `model` through the repository API (explicit model-control mode)."""

        async def run(c: Any, _e: Endpoint) -> Any:
            return await c.unload_model(model, headers=self._admin_headers, unload_dependents=unload_dependents)

        async def index(c: Any, _e: Endpoint) -> Any:
            return await c.get_model_repository_index(headers=self._admin_headers, **self._as_json())

        await self._call(run, model=model)
        self._core.configs.pop(model, None)
        deadline = time.monotonic() + (self._core.timeout_s or UNLOAD_WAIT_S)  # as the sync client
        while self._still_unloading(await self._call(index), model) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def backend_info(self, models: Sequence[str] | None = None) -> dict[str, BackendInfo]:
        """Which backend serves each inference model (see the sync client)."""
        manifest = load_manifest(self._core.manifest_path)
        names = list(models or ct.INFERENCE_MODELS)
        configs = await asyncio.gather(*(self._config(m) for m in names))
        return {m: backend_from_config(c, manifest_entry(manifest, m)) for m, c in zip(names, configs, strict=True)}
