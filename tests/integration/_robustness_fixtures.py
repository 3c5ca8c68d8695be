"""Helpers and fixtures of the load, fault and hostile-input tests (no test functions here).

The read-only tests (load, hostile input) share the client tests' session server and repository
(``_client_fixtures``: one untrained cpu repository per session). The fault tests start their own
servers from the same repository, because they kill processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _client_fixtures import client_repository, enrichment_server  # noqa: F401  (re-exported fixtures)

from enrichment_light.cli import sample_images
from enrichment_light.client import EnrichmentClient
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import EnrichmentError, InvalidInputError
from enrichment_light.devserver import EmbeddedServer

STUB = "triton_python_backend_stub"


def photos() -> list[bytes]:
    paths = sample_images()
    if len(paths) != 2:
        raise RuntimeError("Ultralytics' sample photos bus.jpg and zidane.jpg are not installed")
    return [path.read_bytes() for path in paths]


# ------------------------------------------------------------------------------------------ processes


def stub_pids(server: EmbeddedServer) -> dict[int, str]:
    """Python-backend stub processes of `server`: pid -> model name (from ``/proc/<pid>/cmdline``).

    The stub's command line is ``triton_python_backend_stub <repo>/<model>/1/model.py <shm region> ...``.
    """
    out = {}
    for pid in server.process_ids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace").endswith(STUB) and len(argv) > 1:
            out[pid] = Path(argv[1].decode(errors="replace")).parent.parent.name
    return out


def shm_regions(server: EmbeddedServer) -> set[str]:
    """Names of the Python backend's shared-memory regions (the stubs' second argument)."""
    out = set()
    for pid in server.process_ids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        out.update(a.decode() for a in argv if a.startswith(b"triton_python_backend_shm_region_"))
    return out


def unlink_orphaned_regions(regions: set[str], server: EmbeddedServer | None = None) -> None:
    """Remove regions left in /dev/shm by killed stubs (a SIGKILLed stub cannot unlink its own)."""
    live = shm_regions(server) if server is not None and server.is_running() else set()
    for name in regions - live:
        with contextlib.suppress(OSError):
            os.unlink(f"/dev/shm/{name}")


def kill_stub(server: EmbeddedServer, model: str) -> int:
    """SIGKILL one stub of `model` and return its pid."""
    pids = sorted(pid for pid, name in stub_pids(server).items() if name == model)
    if not pids:
        raise AssertionError(f"no stub process for {model!r}; stubs: {stub_pids(server)}")
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pids[0] in server.process_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids[0]


def assert_all_ready(server: EmbeddedServer) -> None:
    """The server and every model of the contract answer ready (HTTP)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(
        server.http_url.split("//")[-1], connection_timeout=10, network_timeout=10
    )
    try:
        assert client.is_server_live() and client.is_server_ready(), server.log_tail(20)
        not_ready = [m for m in ct.ALL_MODELS if not client.is_model_ready(m)]
        assert not not_ready, f"models not ready: {not_ready}\n{server.log_tail(20)}"
    finally:
        client.close()


# ------------------------------------------------------------------------------------------ load


OPS = ("enrich", "pose", "threat", "reid")
PERSON_BOXES = np.array([[50, 230, 250, 900], [220, 400, 350, 860], [660, 380, 810, 880]], np.float32)


@dataclass
class LoadReport:
    """What a load run measured."""

    duration_s: float
    clients: int
    latencies_s: dict[str, list[float]] = field(default_factory=dict)
    valid_failures: list[str] = field(default_factory=list)
    malformed_outcomes: list[tuple[str, str]] = field(default_factory=list)  # (exception class, message)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    warm_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies_s.values()) + len(self.valid_failures)

    def rss_at(self, t: float) -> int:
        after = [b for s, b in self.rss if s >= t]
        return after[0] if after else self.rss[-1][1]

    @property
    def rss_growth(self) -> float:
        """Relative RSS growth from the warm point to the end."""
        base = self.rss_at(self.warm_s)
        return (self.rss[-1][1] - base) / base

    def percentile_ms(self, op: str, q: float) -> float:
        values = sorted(self.latencies_s.get(op, []))
        if not values:
            return float("nan")
        k = max(0, min(len(values) - 1, int(np.ceil(q / 100.0 * len(values))) - 1))
        return values[k] * 1e3

    def summary(self) -> dict[str, Any]:
        ops = {
            op: {
                "count": len(v),
                "p50_ms": round(statistics.median(v) * 1e3, 1),
                "p99_ms": round(self.percentile_ms(op, 99), 1),
            }
            for op, v in sorted(self.latencies_s.items())
            if v
        }
        return {
            "duration_s": self.duration_s,
            "clients": self.clients,
            "requests": self.requests,
            "malformed": len(self.malformed_outcomes),
            "valid_failures": len(self.valid_failures),
            "ops": ops,
            "rss_mib": {"warm": self.rss_at(self.warm_s) >> 20, "end": self.rss[-1][1] >> 20},
            "rss_growth": round(self.rss_growth, 4),
            "rss_timeline_mib": [(round(t), b >> 20) for t, b in self.rss[:: max(1, len(self.rss) // 12)]],
        }


def _malformed(kind: int, data: bytes) -> tuple[str, Callable[[EnrichmentClient], Any]]:
    truncated = data[: len(data) // 2]
    garbage = b"\x00\x01not-an-image" * 8
    cases = [
        ("pose", lambda c: c.estimate_poses(truncated)),
        ("threat", lambda c: c.detect_threats(garbage)),
        ("enrich", lambda c: c.enrich(truncated)),
        ("reid", lambda c: c.extract_embeddings(data, [[5000, 5000, 5100, 5100]])),  # outside the image
    ]
    return cases[kind % len(cases)]


def _valid(op: str, data: bytes) -> Callable[[EnrichmentClient], Any]:
    return {
        "enrich": lambda c: c.enrich(data),
        "pose": lambda c: c.estimate_poses(data),
        "threat": lambda c: c.detect_threats(data),
        "reid": lambda c: c.extract_embeddings(data, PERSON_BOXES),
    }[op]


def run_load(
    server: EmbeddedServer,
    *,
    duration_s: float,
    warm_s: float,
    clients: int = 8,
    malformed_every: int = 20,
    timeout_s: float = 60.0,
    seed: int = 0,
) -> LoadReport:
    """Run `clients` concurrent clients (half gRPC, half HTTP) for `duration_s`, mixing the four operations.

    Every ``malformed_every``-th request overall (~5 %) is malformed, cycling through the malformed
    kinds. RSS of the server and its stubs is sampled every 0.5 s. All loops are bounded by the
    deadline; each request by ``timeout_s``.
    """
    images = photos()
    report = LoadReport(duration_s=duration_s, clients=clients, warm_s=warm_s)
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + duration_s
    stop = threading.Event()
    counter = [0]  # global request index: every `malformed_every`-th request is malformed

    def sample_rss() -> None:
        while not stop.is_set():
            report.rss.append((time.monotonic() - start, server.rss_bytes()))
            stop.wait(0.5)

    def worker(index: int) -> None:
        rng = np.random.default_rng(seed + index)
        protocol = "grpc" if index % 2 == 0 else "http"
        url = server.grpc_url if protocol == "grpc" else server.http_url
        with EnrichmentClient(url, protocol=protocol, timeout_s=timeout_s, retries=1) as client:
            while time.monotonic() < deadline:
                data = images[int(rng.integers(len(images)))]
                with lock:
                    n = counter[0]
                    counter[0] += 1
                if n % malformed_every == malformed_every // 2:
                    op, call = _malformed(n // malformed_every, data)
                    try:
                        call(client)
                        outcome = ("no error", f"{op}: a malformed request succeeded")
                    except EnrichmentError as err:
                        outcome = (type(err).__name__, str(err))
                    with lock:
                        report.malformed_outcomes.append(outcome)
                else:
                    op = OPS[int(rng.integers(len(OPS)))]
                    t0 = time.perf_counter()
                    try:
                        _valid(op, data)(client)
                    except Exception as err:
                        with lock:
                            report.valid_failures.append(f"{op}: {type(err).__name__}: {err}")
                    else:
                        with lock:
                            report.latencies_s.setdefault(op, []).append(time.perf_counter() - t0)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + 2 * timeout_s + 10)
    stop.set()
    sampler.join(timeout=5)
    report.rss.append((time.monotonic() - start, server.rss_bytes()))
    assert not any(t.is_alive() for t in threads), "a load client hung past its deadline"
    return report


def warm_up(server: EmbeddedServer, clients: int = 8) -> None:
    """Bring memory to its steady state before RSS is measured.

    onnxruntime's CPU arena grows the first time it sees each batch size, so every inference model
    gets every batch size it can be sent once (detectors 1..8, OSNet 1..32), then every operation
    runs in one concurrent burst.
    """
    import tritonclient.grpc as grpcclient

    raw = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for model, spec_shape, sizes in (
            (ct.POSE_MODEL, (ct.DETECTOR_INPUT_SIZE, ct.DETECTOR_INPUT_SIZE, 3), range(1, 9)),
            (ct.THREAT_MODEL, (ct.DETECTOR_INPUT_SIZE, ct.DETECTOR_INPUT_SIZE, 3), range(1, 9)),
            (ct.REID_MODEL, (ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3), range(1, 33)),
        ):
            name = ct.model_spec(model).inputs[0].name
            for b in sizes:
                tensor = grpcclient.InferInput(name, [b, *spec_shape], "UINT8")
                tensor.set_data_from_numpy(np.full((b, *spec_shape), 114, np.uint8))
                raw.infer(model, [tensor], client_timeout=120)
    finally:
        raw.close()
    images = photos()

    def burst(i: int) -> None:
        with EnrichmentClient(server.grpc_url, timeout_s=120) as client:
            for op in OPS:
                _valid(op, images[i % 2])(client)

    threads = [threading.Thread(target=burst, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)


def is_invalid_input(outcome: tuple[str, str]) -> bool:
    return outcome[0] in {cls.__name__ for cls in (InvalidInputError, *InvalidInputError.__subclasses__())}
