"""Protocol plumbing shared by the sync and asyncio clients.

- :func:`translate_error` maps every tritonclient, gRPC, HTTP and socket error onto the package's
  hierarchy, keeping the server's own words.
- :class:`Endpoints` parses URLs and hands out round-robin start positions for fail-over.
- :class:`RetryPolicy` and :func:`failover_steps` decide, for the sync and the asyncio client alike,
  what is retried on which server, when a connection is dropped and when to give up (docs/resilience.md).
- :class:`ShmPool` owns the system shared-memory regions of the ``shm`` transport.

Thread safety of tritonclient (checked in its 2.51 source): the gRPC client is thread-safe except
for streaming, so one is shared by all threads; the HTTP client is documented as not thread-safe,
so the sync client keeps one HTTP client per thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from enrichment_light.core.contract import GRPC_PORT, HTTP_PORT
from enrichment_light.core.errors import (
    AccessDeniedError,
    EnrichmentError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ModelRestartingError,
    ServerUnavailableError,
)

PROTOCOLS = ("grpc", "http")
URL_ENV = "ENRICHMENT_TRITON_URL"

# Words Triton uses when a model is missing, unloaded or still loading.
_MODEL_NOT_READY = re.compile(
    r"unknown model|is not ready|not found|no available versions|unavailable model|not loaded|"
    r"failed to load|is not available",
    re.IGNORECASE,
)
# Triton 2.51 (INTERNAL, gRPC and HTTP alike) for a model whose Python-backend stub died; may come
# wrapped as "in ensemble 'pose', Stub process 'pose_postprocess_0_0' is not healthy."
_STUB_NOT_HEALTHY = re.compile(r"Stub process '[^']*' is not healthy", re.IGNORECASE)
# Triton 2.51's words for a server on its way out: IsReady/ModelIsReady/InferAsync while exiting, a stopped
# dynamic batcher ("Server is stopping, scheduler for model has stopped accepting new inference requests"),
# also when wrapped by enrich's inner BLS calls as INTERNAL.
_GOING_AWAY = re.compile(r"Server not ready|Server exiting|Server is stopping|stopped accepting new", re.IGNORECASE)
_GRPC_UNAVAILABLE = "StatusCode.UNAVAILABLE"
_STATUS_CLASSES: dict[str, type[EnrichmentError]] = {
    "StatusCode.DEADLINE_EXCEEDED": InferenceTimeoutError,
    "StatusCode.INVALID_ARGUMENT": InvalidInputError,
    "StatusCode.OUT_OF_RANGE": InvalidInputError,
    "StatusCode.FAILED_PRECONDITION": InvalidInputError,
    "StatusCode.NOT_FOUND": ModelNotReadyError,
    "StatusCode.CANCELLED": InferenceTimeoutError,
    "400": InvalidInputError,
    "404": ModelNotReadyError,
    "408": InferenceTimeoutError,
    "502": ServerUnavailableError,
    "503": ServerUnavailableError,
    "504": InferenceTimeoutError,
}


_RESTRICTED = re.compile(r"\b(API|protocol) is restricted", re.IGNORECASE)
# Triton's words when it cannot shm_open a region the client created: the server does not see the
# client's /dev/shm (another IPC namespace, e.g. a container with its own IPC).
_SHM_UNREACHABLE = re.compile(r"Unable to open shared memory region", re.IGNORECASE)
SHM_NAMESPACE_HINT = (
    "system shared memory needs the server in the client's IPC namespace: run the Triton container with "
    "`ipc: host` (ENRICHMENT_IPC=host in docker-compose.yml, docs/tensorrt.md) or use the client without shm"
)


def translate_error(err: BaseException, *, url: str, model: str | None = None) -> EnrichmentError:
    """Return the package error for any error raised while talking to Triton.

    The message keeps the server's own words and adds the URL and model. Callers raise the
    result ``from err``.

    Args:
        err: The tritonclient, gRPC, aiohttp or socket error.
        url: The server URL the request went to.
        model: The model the request was for, if any.

    Returns:
        An instance of a subclass of :class:`EnrichmentError` (``err`` itself when it is one).
    """
    if isinstance(err, EnrichmentError):
        return err
    where = f"{url}" + (f" model {model!r}" if model else "")
    status, text = _status_and_text(err)
    if _RESTRICTED.search(text):
        return AccessDeniedError(f"{where}: {text} (pass admin_key= or set ${ADMIN_KEY_ENV})")
    if _SHM_UNREACHABLE.search(text):
        return EnrichmentError(f"{where}: {text}: {SHM_NAMESPACE_HINT}")  # not retryable: a deployment fix
    if _GOING_AWAY.search(text):
        return ServerUnavailableError(f"{where}: {text} (the server is shutting down)")
    if _STUB_NOT_HEALTHY.search(text):
        return ModelRestartingError(f"{where}: {text} (the model's stub process died; it is being reloaded)")
    if status in (_GRPC_UNAVAILABLE, "502", "503"):
        if model and _MODEL_NOT_READY.search(text) and "connect" not in text.lower():
            return ModelNotReadyError(f"{where}: {text}")
        return ServerUnavailableError(f"{where}: {text}")
    cls = _STATUS_CLASSES.get(status or "")
    if cls is InvalidInputError and model and _MODEL_NOT_READY.search(text) and "model" in text.lower():
        cls = ModelNotReadyError
    if cls is None and status is not None and _MODEL_NOT_READY.search(text):
        cls = ModelNotReadyError
    if cls is None:
        cls = _class_for_exception(err)
    return cls(f"{where}: {text}")


def _status_and_text(err: BaseException) -> tuple[str | None, str]:
    from tritonclient.utils import InferenceServerException

    if isinstance(err, InferenceServerException):
        return err.status(), str(err.message() if err.message() is not None else err)
    code = getattr(err, "code", None)
    if callable(code):  # grpc.RpcError
        try:
            status = str(code())
            details = err.details() if hasattr(err, "details") else str(err)
            return status, str(details)
        except Exception:
            pass
    status_attr = getattr(err, "status", None)  # aiohttp.ClientResponseError
    if isinstance(status_attr, int):
        return str(status_attr), str(err)
    return None, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _class_for_exception(err: BaseException) -> type[EnrichmentError]:
    if isinstance(err, (TimeoutError, socket.timeout, asyncio.TimeoutError)) or "Timeout" in type(err).__name__:
        return InferenceTimeoutError
    # aiohttp's ServerDisconnectedError, geventhttpclient's HTTPConnectionClosed and the like
    if isinstance(err, (ConnectionError, OSError)) or any("connect" in c.__name__.lower() for c in type(err).__mro__):
        return ServerUnavailableError
    return EnrichmentError


@dataclass(frozen=True)
class Endpoint:
    """One server: ``host:port`` and its protocol."""

    url: str
    protocol: str

    def __str__(self) -> str:
        return f"{self.protocol}://{self.url}"


# Matches deploy/: --http-restricted-api=...:admin-key=KEY, --grpc-restricted-protocol=...:admin-key=KEY.
# Triton reads the gRPC one from the metadata key "triton-grpc-protocol-<key>".
ADMIN_KEY_HEADER = "admin-key"
ADMIN_KEY_ENV = "ENRICHMENT_ADMIN_KEY"


def admin_headers(admin_key: str | None, *, protocol: str) -> dict[str, str] | None:
    """Headers for Triton's restricted APIs: ``admin_key``, else ``$ENRICHMENT_ADMIN_KEY``, else none."""
    key = admin_key if admin_key is not None else os.environ.get(ADMIN_KEY_ENV)
    if not key:
        return None
    name = f"triton-grpc-protocol-{ADMIN_KEY_HEADER}" if protocol == "grpc" else ADMIN_KEY_HEADER
    return {name: key}


def default_url(protocol: str) -> str:
    """Return the default server address: ``localhost`` with the contract's gRPC or HTTP port."""
    return f"localhost:{GRPC_PORT if protocol == 'grpc' else HTTP_PORT}"


def parse_endpoints(urls: str | Sequence[str] | None, protocol: str) -> tuple[Endpoint, ...]:
    """Parse one URL or a list of URLs (``host:port``, optionally ``grpc://`` or ``http://``).

    Raises:
        ValueError: Unknown protocol, empty list, or a scheme that disagrees with `protocol`.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if urls is None:
        urls = [default_url(protocol)]
    elif isinstance(urls, str):
        urls = [u for u in (p.strip() for p in urls.split(",")) if u]
    if not urls:
        raise ValueError("at least one server URL is needed")
    endpoints = []
    for raw in urls:
        scheme, sep, rest = str(raw).strip().partition("://")
        url = rest if sep else scheme
        if sep:
            wanted = "http" if scheme in ("http", "https") else scheme
            if wanted != protocol:
                raise ValueError(f"URL {raw!r} has scheme {scheme!r} but protocol is {protocol!r}")
        url = url.rstrip("/")
        if not url:
            raise ValueError(f"empty server URL in {urls!r}")
        endpoints.append(Endpoint(url, protocol))
    return tuple(endpoints)


class RoundRobin:
    """Thread-safe round-robin start positions over `n` endpoints."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def order(self) -> list[int]:
        """Return every endpoint index once, starting at the next round-robin position."""
        with self._lock:
            start = next(self._counter) % self._n
        return [(start + i) % self._n for i in range(self._n)]


@dataclass(frozen=True)
class RetryPolicy:
    """Which errors are retried, how long to wait between rounds, and the overall deadline.

    Retried at once: :class:`ServerUnavailableError` (refused, reset, UNAVAILABLE, a server shutting down)
    and :class:`ModelRestartingError` (a dead Python-backend stub being reloaded). Retried only when that
    server then answers "not ready" or does not answer: :class:`ModelNotReadyError` (an unloaded model on a
    draining server) and :class:`InferenceTimeoutError` (a stopping server that does not answer). Everything
    else (invalid input, an unknown model on a healthy server) is raised at once.

    Attributes:
        retries: Extra rounds after the first (0 = no retry, but still fail over across URLs).
        backoff_s: Wait before the second round; doubled for each further round.
        deadline_s: Overall budget of one call (all attempts and waits); None = no limit beyond ``retries``.
    """

    retries: int = 2
    backoff_s: float = 0.1
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 or None, got {self.deadline_s}")

    @staticmethod
    def retryable(error: EnrichmentError) -> bool:
        """True for the errors retried without asking the server."""
        return isinstance(error, (ServerUnavailableError, ModelRestartingError))

    @staticmethod
    def needs_probe(error: EnrichmentError) -> bool:
        """True for the errors retried only when the server is not ready (or silent)."""
        return isinstance(error, (ModelNotReadyError, InferenceTimeoutError)) and not isinstance(
            error, ModelRestartingError
        )

    def delay_s(self, round_index: int) -> float:
        """Seconds to wait before round `round_index` (1-based for the first retry)."""
        return self.backoff_s * (2 ** (round_index - 1))


@dataclass(frozen=True)
class Step:
    """One thing :func:`failover_steps` asks its driver to do.

    ``call``: run the request on `endpoint` and send back the exception (the generator ends on success).
    ``probe``: send back whether `endpoint` answers "ready" (False when it does not answer).
    ``drop``: forget the connection to `endpoint` (a new one is made on next use). ``sleep``: wait `seconds`.
    """

    kind: Literal["call", "probe", "drop", "sleep"]
    endpoint: Endpoint | None = None
    seconds: float = 0.0


def failover_steps(
    policy: RetryPolicy, endpoints: Sequence[Endpoint], *, model: str | None = None
) -> Generator[Step, object, None]:
    """The retry and fail-over decisions of one call, free of I/O (the sync and asyncio clients drive it).

    Each round tries every endpoint once, in the given order; rounds are separated by the policy's backoff.
    A failure is translated (:func:`translate_error`) and then raised at once, retried, or retried only
    after a readiness probe of that server says it is going away. A connection that failed as unavailable or
    silent is dropped. When the retries or the deadline run out, the last error is raised.

    Args:
        policy: The retry policy.
        endpoints: The endpoints in this call's order (round-robin start).
        model: The model, for the error messages.

    Yields:
        :class:`Step` s; ``call`` and ``probe`` expect the driver to send back the exception or the answer.

    Raises:
        EnrichmentError: The error to give the caller (``raise ... from`` the original).
    """
    deadline = None if policy.deadline_s is None else time.monotonic() + policy.deadline_s
    last: EnrichmentError | None = None
    cause: BaseException | None = None
    for round_index in range(policy.retries + 1):
        if round_index:
            wait_s = policy.delay_s(round_index)
            if deadline is not None and time.monotonic() + wait_s >= deadline:
                break
            yield Step("sleep", seconds=wait_s)
        for endpoint in endpoints:
            if last is not None and deadline is not None and time.monotonic() >= deadline:
                break
            err = yield Step("call", endpoint)
            assert isinstance(err, BaseException)
            mapped = translate_error(err, url=str(endpoint), model=model)
            retry = policy.retryable(mapped)
            if not retry and policy.needs_probe(mapped):
                ready = yield Step("probe", endpoint)
                if not ready:
                    retry = True
                    mapped = ServerUnavailableError(f"{mapped} (the server is not ready: shutting down or silent)")
            if not retry:
                if mapped is err:
                    raise err
                raise mapped from err
            if isinstance(mapped, ServerUnavailableError):
                yield Step("drop", endpoint)
            last, cause = mapped, err
    assert last is not None
    raise last from cause


def shm_key(name: str) -> str:
    """The POSIX shared-memory key (``shm_open`` name) for a region name."""
    return f"/{name}"


class ShmRegion:
    """One POSIX shared-memory region (``/dev/shm/<name>``), created and owned by this process.

    Built on the standard library's :class:`multiprocessing.shared_memory.SharedMemory`, not on
    ``tritonclient.utils.shared_memory``: that module imports ``pkg_resources``, which setuptools
    81 and later no longer ship. Triton opens the same region with ``shm_open(key)``.
    """

    def __init__(self, byte_size: int, prefix: str) -> None:
        from multiprocessing import shared_memory

        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.key = shm_key(self.name)
        self.byte_size = int(byte_size)
        self._shm = shared_memory.SharedMemory(name=self.name, create=True, size=self.byte_size)

    def write(self, array: np.ndarray) -> None:
        """Copy `array` to the start of the region."""
        src = np.ascontiguousarray(array)
        if src.nbytes > self.byte_size:
            raise ValueError(f"{src.nbytes} bytes do not fit shared-memory region {self.name} of {self.byte_size}")
        np.ndarray(src.shape, src.dtype, buffer=self._shm.buf)[...] = src

    def read(self, dtype: type, shape: Sequence[int]) -> np.ndarray:
        """Copy the region's first ``prod(shape)`` items out as an array."""
        return np.ndarray(tuple(shape), np.dtype(dtype), buffer=self._shm.buf).copy()

    def destroy(self) -> None:
        """Unmap and unlink the region."""
        self._shm.close()
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()


class ShmPool:
    """Reusable shared-memory regions keyed by byte size; one region serves one request at a time.

    Registration with the server is the client's job (``registered`` tracks it per endpoint).
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = f"{prefix}_{uuid.uuid4().hex[:6]}"
        self._free: dict[int, list[ShmRegion]] = {}
        self._all: list[ShmRegion] = []
        self._lock = threading.Lock()
        self.registered: set[tuple[str, str]] = set()  # (endpoint url, region name)

    def acquire(self, byte_size: int) -> ShmRegion:
        """Return a free region of exactly `byte_size` bytes, creating one when none is free."""
        with self._lock:
            free = self._free.get(byte_size)
            if free:
                return free.pop()
        region = ShmRegion(byte_size, self._prefix)
        with self._lock:
            self._all.append(region)
        return region

    def release(self, region: ShmRegion) -> None:
        """Give `region` back for reuse."""
        with self._lock:
            self._free.setdefault(region.byte_size, []).append(region)

    def regions(self) -> list[ShmRegion]:
        """Every region created so far."""
        with self._lock:
            return list(self._all)

    def destroy_all(self) -> None:
        """Destroy every region (call after unregistering them from the servers)."""
        with self._lock:
            regions, self._all, self._free = self._all, [], {}
            self.registered.clear()
        for region in regions:
            region.destroy()
