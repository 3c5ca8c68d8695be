"""Error translation, URL parsing, fail-over order and retry policy of the client."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from enrichment_light.client.transport import (
    Endpoint,
    RetryPolicy,
    RoundRobin,
    ShmPool,
    admin_headers,
    failover_steps,
    parse_endpoints,
    translate_error,
)
from enrichment_light.core.errors import (
    AccessDeniedError,
    EnrichmentError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ModelRestartingError,
    ServerUnavailableError,
)

REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Failed to connect to remote host: Connection refused"
)


# Messages as Triton 2.51 and tritonclient word them.
@pytest.mark.parametrize(
    ("status", "message", "model", "expected"),
    [
        ("StatusCode.UNAVAILABLE", REFUSED, "threat", ServerUnavailableError),
        ("StatusCode.UNAVAILABLE", "Request for unknown model: 'threat' is not found", "threat", ModelNotReadyError),
        ("StatusCode.UNAVAILABLE", "Request for unknown model: 'pose' has no available versions", "pose",
         ModelNotReadyError),
        ("StatusCode.UNAVAILABLE", "Socket closed", None, ServerUnavailableError),
        ("StatusCode.NOT_FOUND", "Request for unknown model: 'x' is not found", "x", ModelNotReadyError),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", "pose", InferenceTimeoutError),
        ("StatusCode.INVALID_ARGUMENT", "corrupt JPEG: the decoder could not read the image data", "threat",
         InvalidInputError),
        ("StatusCode.INTERNAL", "something broke", "threat", EnrichmentError),
        ("400", "in ensemble 'threat', corrupt PNG", "threat", InvalidInputError),
        ("400", "Request for unknown model: 'threat' is not found", "threat", ModelNotReadyError),
        ("404", "Request for unknown model", "threat", ModelNotReadyError),
        ("503", "Server not ready", None, ServerUnavailableError),
        ("504", "timeout", "pose", InferenceTimeoutError),
    ],
)  # fmt: skip
def test_translate_error_maps_status_when_tritonclient_raises(status, message, model, expected):
    err = InferenceServerException(msg=message, status=status)
    mapped = translate_error(err, url="grpc://127.0.0.1:1", model=model)
    assert type(mapped) is expected
    assert message in str(mapped)  # the server's own words are kept
    assert "127.0.0.1:1" in str(mapped)


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ConnectionRefusedError(111, "Connection refused"), ServerUnavailableError),
        (TimeoutError("timed out"), InferenceTimeoutError),
        (TimeoutError(), InferenceTimeoutError),
        (OSError("network is unreachable"), ServerUnavailableError),
        (RuntimeError("odd"), EnrichmentError),
    ],
)
def test_translate_error_maps_python_errors_when_http_transport_fails(err, expected):
    assert type(translate_error(err, url="http://h:1")) is expected


def test_translate_error_returns_package_errors_unchanged():
    err = InvalidInputError("bad")
    assert translate_error(err, url="u") is err


def test_parse_endpoints_accepts_lists_commas_and_schemes():
    assert parse_endpoints("a:1, b:2", "grpc") == (Endpoint("a:1", "grpc"), Endpoint("b:2", "grpc"))
    assert parse_endpoints(["grpc://a:1"], "grpc") == (Endpoint("a:1", "grpc"),)
    assert parse_endpoints("http://a:1/", "http") == (Endpoint("a:1", "http"),)
    assert parse_endpoints(None, "http") == (Endpoint("localhost:8000", "http"),)
    assert parse_endpoints(None, "grpc") == (Endpoint("localhost:8001", "grpc"),)


@pytest.mark.parametrize(
    ("urls", "protocol", "words"),
    [
        ("a:1", "ftp", "protocol"),
        ("http://a:1", "grpc", "scheme"),
        ([], "grpc", "at least one"),
        ("grpc://", "grpc", "empty"),
    ],
)
def test_parse_endpoints_raises_value_error_when_urls_are_bad(urls, protocol, words):
    with pytest.raises(ValueError, match=words):
        parse_endpoints(urls, protocol)


def test_round_robin_starts_at_the_next_endpoint_each_call_and_covers_all():
    rr = RoundRobin(3)
    assert [rr.order() for _ in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


def test_retry_policy_doubles_backoff_per_round():
    policy = RetryPolicy(retries=3, backoff_s=0.1)
    assert [policy.delay_s(i) for i in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize(("retries", "backoff_s"), [(-1, 0.1), (1, -0.5)])
def test_retry_policy_raises_value_error_when_negative(retries, backoff_s):
    with pytest.raises(ValueError):
        RetryPolicy(retries=retries, backoff_s=backoff_s)


def test_shm_pool_reuses_released_regions_and_destroys_them():
    np = pytest.importorskip("numpy")
    pool = ShmPool("unit")
    a = pool.acquire(64)
    a.write(np.arange(16, dtype=np.int32))
    np.testing.assert_array_equal(a.read(np.int32, [16]), np.arange(16))
    pool.release(a)
    assert pool.acquire(64) is a
    b = pool.acquire(64)  # a is taken: a new region
    assert b is not a
    assert len(pool.regions()) == 2
    pool.destroy_all()
    assert pool.regions() == []


@pytest.mark.parametrize(("protocol", "header"), [("grpc", "triton-grpc-protocol-admin-key"), ("http", "admin-key")])
def test_admin_headers_use_triton_header_name_when_protocol_given(protocol, header, monkeypatch):
    monkeypatch.delenv("ENRICHMENT_ADMIN_KEY", raising=False)
    assert admin_headers("k", protocol=protocol) == {header: "k"}
    assert admin_headers(None, protocol=protocol) is None
    monkeypatch.setenv("ENRICHMENT_ADMIN_KEY", "env-key")
    assert admin_headers(None, protocol=protocol) == {header: "env-key"}


def test_translate_error_maps_restricted_api_to_access_denied_when_key_missing():
    from tritonclient.utils import InferenceServerException

    err = InferenceServerException("This API is restricted, expecting header 'admin-key'", status="403")
    mapped = translate_error(err, url="127.0.0.1:8000", model="pose")
    assert isinstance(mapped, AccessDeniedError) and "expecting header 'admin-key'" in str(mapped)


DEAD_STUB = "Stub process 'pose_postprocess_0_0' is not healthy."


# As Triton 2.51 words it after a stub is SIGKILLed (verified in tests/integration/test_faults.py).
@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("StatusCode.INTERNAL", f"in ensemble 'pose', {DEAD_STUB}"),
        ("StatusCode.INTERNAL", f"Failed to process the request(s) for model instance 'pose_postprocess_0_0', "
                                f"message: {DEAD_STUB}"),
        ("500", f"in ensemble 'pose', {DEAD_STUB}"),
        ("400", DEAD_STUB),
        (None, DEAD_STUB),
    ],
)  # fmt: skip
def test_translate_error_maps_to_model_restarting_when_stub_is_not_healthy(status, message):
    err = InferenceServerException(msg=message, status=status)
    mapped = translate_error(err, url="grpc://127.0.0.1:1", model="pose")
    assert type(mapped) is ModelRestartingError
    assert isinstance(mapped, ModelNotReadyError)  # code catching "not ready" keeps working
    assert message in str(mapped) and "pose" in str(mapped)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ServerUnavailableError("down"), True),
        (ModelRestartingError("stub died"), True),
        (ModelNotReadyError("unloaded"), False),
        (InvalidInputError("bad"), False),
        (InferenceTimeoutError("slow"), False),
        (AccessDeniedError("key"), False),
        (EnrichmentError("other"), False),
    ],
)
def test_retry_policy_retries_only_unavailable_and_restarting_when_classifying(error, retried):
    assert RetryPolicy.retryable(error) is retried


@pytest.mark.parametrize("flaky", [DEAD_STUB, REFUSED])
def test_client_call_retries_with_backoff_when_stub_restarts_or_server_unavailable(flaky, monkeypatch):
    from enrichment_light.client import EnrichmentClient

    sleeps: list[float] = []
    monkeypatch.setattr("enrichment_light.client.sync.time.sleep", sleeps.append)
    status = "StatusCode.INTERNAL" if flaky == DEAD_STUB else "StatusCode.UNAVAILABLE"
    calls = []

    def fn(raw, endpoint):
        calls.append(endpoint)
        if len(calls) < 3:
            raise InferenceServerException(msg=flaky, status=status)
        return "ok"

    with EnrichmentClient("127.0.0.1:1", retries=3, backoff_s=0.2) as client:
        assert client._call(fn, model="pose") == "ok"
    assert len(calls) == 3
    assert sleeps == pytest.approx([0.2, 0.4])


def test_client_call_raises_model_restarting_when_retries_run_out(monkeypatch):
    from enrichment_light.client import EnrichmentClient

    monkeypatch.setattr("enrichment_light.client.sync.time.sleep", lambda s: None)

    def fn(raw, endpoint):
        raise InferenceServerException(msg=DEAD_STUB, status="StatusCode.INTERNAL")

    with EnrichmentClient("127.0.0.1:1", retries=1, backoff_s=0.0) as client, pytest.raises(ModelRestartingError):
        client._call(fn, model="pose")


def test_client_call_does_not_retry_when_model_is_not_ready(monkeypatch):
    from enrichment_light.client import EnrichmentClient

    monkeypatch.setattr(EnrichmentClient, "_probe_ready", lambda self, endpoint: True)  # a healthy server
    calls = []

    def fn(raw, endpoint):
        calls.append(1)
        raise InferenceServerException(msg="Request for unknown model: 'pose' is not found", status="400")

    with EnrichmentClient("127.0.0.1:1", retries=3, backoff_s=0.0) as client, pytest.raises(ModelNotReadyError):
        client._call(fn, model="pose")
    assert calls == [1]


@pytest.mark.parametrize("status", ["StatusCode.INTERNAL", "400"])
def test_translate_error_says_shm_needs_shared_ipc_namespace_when_server_cannot_open_region(status):
    # Triton's words (core/src/shared_memory_manager.cc) when shm_open fails on its side: the server
    # runs in another IPC namespace (a container without `ipc: host`).
    err = InferenceServerException(msg="Unable to open shared memory region: '/el_abc_0'", status=status)
    mapped = translate_error(err, url="http://127.0.0.1:8000")
    assert type(mapped) is EnrichmentError and not RetryPolicy.retryable(mapped)
    assert "'/el_abc_0'" in str(mapped) and "shared memory needs the server in the client's IPC namespace" in str(
        mapped
    )
    assert "ENRICHMENT_IPC=host" in str(mapped) and "\n" not in str(mapped)


# ------------------------------------------------------------------------------------ fail-over decisions

STOPPING = (
    "[request id: <id_unknown>] Server is stopping, scheduler for model has stopped accepting new inference requests"
)
A, B = Endpoint("a:1", "grpc"), Endpoint("b:1", "grpc")


def _drive(errors: dict[str, list[BaseException]], ready: dict[str, bool], policy: RetryPolicy) -> list[str]:
    """Drive failover_steps like the clients do; each endpoint fails with its next error, else succeeds."""
    steps = failover_steps(policy, [A, B], model="enrich")
    log: list[str] = []
    step = next(steps)
    while True:
        url = step.endpoint.url if step.endpoint else ""
        log.append(f"{step.kind} {url}".strip())
        if step.kind == "call":
            if not errors.get(url):
                return log
            step = steps.send(errors[url].pop(0))
        elif step.kind == "probe":
            step = steps.send(ready[url])
        else:
            step = next(steps)


def _ise(message: str, status: str) -> InferenceServerException:
    return InferenceServerException(msg=message, status=status)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("Request for unknown model: 'enrich' has no available versions", "StatusCode.NOT_FOUND"),
        ("enrich: osnet_x0_25 failed: Server not ready", "StatusCode.INTERNAL"),
        (STOPPING, "StatusCode.UNAVAILABLE"),
        ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED"),
        (REFUSED, "StatusCode.UNAVAILABLE"),
        ("Connection reset by peer", "StatusCode.UNAVAILABLE"),
    ],
)
def test_failover_steps_retry_on_other_server_and_drop_connection_when_server_goes_away(error, status):
    log = _drive({"a:1": [_ise(error, status)]}, {"a:1": False, "b:1": True}, RetryPolicy(retries=0))
    assert log[0] == "call a:1" and log[-1] == "call b:1"
    assert "drop a:1" in log  # the connection to the server going away is not reused
    assert ("probe a:1" in log) is (status in ("StatusCode.NOT_FOUND", "StatusCode.DEADLINE_EXCEEDED"))


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        ("Request for unknown model: 'enrich' is not found", "StatusCode.NOT_FOUND", ModelNotReadyError),
        ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", InferenceTimeoutError),
    ],
)
def test_failover_steps_raise_at_once_when_server_is_healthy(error, status, expected):
    with pytest.raises(expected):
        _drive({"a:1": [_ise(error, status)]}, {"a:1": True, "b:1": True}, RetryPolicy(retries=3))


def test_failover_steps_never_retry_or_probe_when_input_is_invalid():
    steps = failover_steps(RetryPolicy(retries=3), [A, B], model="enrich")
    assert next(steps).kind == "call"
    with pytest.raises(InvalidInputError, match="corrupt"):
        steps.send(_ise("corrupt JPEG", "StatusCode.INVALID_ARGUMENT"))


def test_failover_steps_stop_at_the_overall_deadline_when_every_server_is_down(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("enrichment_light.client.transport.time.monotonic", lambda: now[0])
    steps = failover_steps(RetryPolicy(retries=50, backoff_s=1.0, deadline_s=5.0), [A, B], model="pose")
    step, calls = next(steps), 0
    with pytest.raises(ServerUnavailableError):
        while True:
            if step.kind == "sleep":
                now[0] += step.seconds
                step = next(steps)
            elif step.kind == "call":
                calls += 1
                now[0] += 0.5
                step = steps.send(_ise(REFUSED, "StatusCode.UNAVAILABLE"))
            else:
                step = next(steps)
    assert now[0] - 100.0 <= 5.0 + 0.5  # one attempt may start just before the deadline
    assert 2 < calls < 10


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_client_call_fails_over_to_second_url_when_first_is_shutting_down(kind, monkeypatch):
    """Both clients drive the same decisions: NOT_FOUND from a draining server -> probe -> next URL."""
    import asyncio

    from enrichment_light.client import EnrichmentClient
    from enrichment_light.client.aio import AsyncEnrichmentClient

    calls: list[str] = []

    def outcome(endpoint: Endpoint) -> str:
        calls.append(endpoint.url)
        if endpoint.url.endswith(":1"):
            raise _ise("Request for unknown model: 'pose' has no available versions", "StatusCode.NOT_FOUND")
        return "ok"

    urls = ["127.0.0.1:1", "127.0.0.1:2"]
    if kind == "sync":
        monkeypatch.setattr(EnrichmentClient, "_probe_ready", lambda self, e: False)
        with EnrichmentClient(urls, retries=0) as client:
            results = [client._call(lambda raw, e: outcome(e), model="pose") for _ in range(4)]
            assert "127.0.0.1:1" not in client._grpc  # dropped
    else:

        async def probe(self, e):
            return False

        async def fn(raw, e):
            return outcome(e)

        async def run() -> list[str]:
            async with AsyncEnrichmentClient(urls, retries=0) as client:
                out = [await client._call(fn, model="pose") for _ in range(4)]
                assert "127.0.0.1:1" not in client._clients
                return out

        monkeypatch.setattr(AsyncEnrichmentClient, "_probe_ready", probe)
        results = asyncio.run(run())
    assert results == ["ok"] * 4
    assert calls.count("127.0.0.1:2") == 4 and calls.count("127.0.0.1:1") == 2  # round-robin start on :1 twice
