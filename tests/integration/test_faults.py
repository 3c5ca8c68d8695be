"""Fault tests: a killed Python-backend stub, a killed server, an unloaded model, stale build outputs.

Verified behaviour of Triton 2.51 (r24.10, the PyPI server) after a stub is SIGKILLed: the Python
backend does **not** restart it. Automatic restart was removed from the Python backend in r24.06
(python_backend PR #360; see triton-inference-server/server#7347 and #8604). Every later request to
that model fails at once with ``Stub process '<model>_0_0' is not healthy.`` (INTERNAL). The model
and the server still report ready. The remedy is to reload the model: in explicit model-control
mode, ``unload_model`` then ``load_model`` (a plain ``load_model`` of a loaded, unchanged model does
nothing). Otherwise, restart the server. With the watchdog off, these tests check what Triton
does: failures come fast and name the stub, the other models keep serving, nothing hangs, and
reloading the model brings it back. With the embedded server's stub watchdog (on by default in
explicit mode) the dead stub's model is reloaded within seconds, and clients that retry (they
retry ``ModelRestartingError``) see no failure at all. The fault server runs in explicit mode on
fixed ports, so it can be restarted on the same ports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _robustness_fixtures import *  # noqa: F403
from _robustness_fixtures import (
    assert_all_ready,
    kill_stub,
    photos,
    shm_regions,
    stub_pids,
    unlink_orphaned_regions,
)

from enrichment_light.client import EnrichmentClient
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import (
    EnrichmentError,
    ModelNotReadyError,
    ModelRestartingError,
    ServerUnavailableError,
)
from enrichment_light.devserver import EmbeddedServer, find_free_port, stub_process

TIMEOUT_S = 10.0
BUS, ZIDANE = photos()


class FaultServer:
    """The fault tests' server; the server-kill test replaces it with a restarted one on the same ports."""

    def __init__(self, repository: Path, log_dir: Path, name: str = "fault-server", **options) -> None:
        self.repository = repository
        self.log_dir = log_dir
        self.name = name
        self.options = options
        self.ports = {"http_port": find_free_port(), "grpc_port": find_free_port()}
        self.starts = 0
        self.server = self.start()

    def start(self) -> EmbeddedServer:
        self.starts += 1
        server = EmbeddedServer(
            self.repository,
            model_control="explicit",
            load_models=["*"],
            allow_metrics=False,
            startup_timeout_s=180,
            log_path=self.log_dir / f"{self.name}-{self.starts}.log",
            **self.ports,
            **self.options,
        )
        self.server = server.start()
        return self.server


@pytest.fixture(scope="module")
def faults(client_repository, tmp_path_factory):
    """The server of the tests of Triton's own behaviour: stub watchdog off."""
    holder = FaultServer(client_repository, tmp_path_factory.mktemp("fault-logs"), restart_dead_stubs=False)
    yield holder
    holder.server.stop()


@pytest.fixture(scope="module")
def watched_holder(client_repository, tmp_path_factory):
    """A server with the defaults of explicit mode: the stub watchdog on."""
    holder = FaultServer(client_repository, tmp_path_factory.mktemp("watched-logs"), name="watched-server")
    yield holder
    holder.server.stop()


@pytest.fixture
def watched(watched_holder) -> EmbeddedServer:
    if not watched_holder.server.is_running():  # a test before killed it
        watched_holder.start()
    return watched_holder.server


def _client(server: EmbeddedServer, protocol: str, **kw) -> EnrichmentClient:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    kw.setdefault("timeout_s", TIMEOUT_S)
    return EnrichmentClient(url, protocol=protocol, **kw)


# --------------------------------------------------------------------------------------------- unload


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_raises_model_not_ready_when_model_is_unloaded(faults, protocol):
    server = faults.server
    with _client(server, protocol, retries=0) as client:
        assert client.detect_threats(BUS) is not None
        client.unload_model(ct.THREAT_ENSEMBLE)
        try:
            assert not client.is_model_ready(ct.THREAT_ENSEMBLE)
            start = time.monotonic()
            with pytest.raises(ModelNotReadyError, match="threat"):
                client.detect_threats(BUS)
            assert time.monotonic() - start < TIMEOUT_S
            assert client.estimate_poses(BUS) is not None  # other models keep serving
        finally:
            client.load_model(ct.THREAT_ENSEMBLE)
        assert client.is_model_ready(ct.THREAT_ENSEMBLE)
        assert client.detect_threats(BUS) is not None


# --------------------------------------------------------------------------------------------- stub kill


@pytest.mark.integration
def test_triton_fails_fast_and_manual_reload_recovers_when_stub_dies_and_watchdog_is_off(faults):
    server = faults.server
    assert not server.watchdog_running
    victim_model = ct.POSE_ENSEMBLE  # cpu target: the fused pose model (preprocess + detector + postprocess)
    before = stub_pids(server)
    regions = shm_regions(server)
    results: dict[str, list[tuple[str, float, str]]] = {"pose": [], "threat": []}
    lock = threading.Lock()
    killed = threading.Event()
    stop = threading.Event()

    def worker(op: str, protocol: str) -> None:
        with _client(server, protocol, retries=2, backoff_s=0.05) as client:
            call = client.estimate_poses if op == "pose" else client.detect_threats
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    call(ZIDANE)
                    outcome, msg = "ok", ""
                except EnrichmentError as err:
                    outcome, msg = type(err).__name__, str(err)
                with lock:
                    results[op].append(
                        (outcome if killed.is_set() else f"before:{outcome}", time.monotonic() - t0, msg)
                    )

    threads = [
        threading.Thread(target=worker, args=(op, proto), daemon=True)
        for op in ("pose", "threat")
        for proto in ("grpc", "http")
    ]
    for t in threads:
        t.start()
    _wait_for(lambda: len(results["pose"]) >= 2 and len(results["threat"]) >= 2, "requests before the kill")
    # every stub of the model: the fused cpu models run 2 instances, and one survivor would serve all
    pids = [kill_stub(server, victim_model) for _ in range(sum(1 for m in before.values() if m == victim_model))]
    killed.set()
    # observable: enough answered requests of both kinds after the kill
    _wait_for(lambda: _after(results["pose"]) >= 4 and _after(results["threat"]) >= 4, "requests after the kill")
    stop.set()
    for t in threads:
        t.join(timeout=2 * TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a client hung after the stub was killed"

    assert all(o.startswith("before:ok") for o, _, _ in results["pose"] + results["threat"] if o.startswith("before"))
    after_pose = [r for r in results["pose"] if not r[0].startswith("before")]
    after_threat = [r for r in results["threat"] if not r[0].startswith("before")]
    assert after_pose and after_threat
    # Nothing hangs: every request, failed or not, returned well within its deadline.
    assert max(d for _, d, _ in after_pose + after_threat) < TIMEOUT_S
    # Triton 2.51 does not restart the stub: pose requests fail with a message naming it.
    failed = [r for r in after_pose if r[0] != "ok"]
    assert failed, "Triton restarted the stub by itself: update the docs and this test"
    assert all("not healthy" in msg and victim_model in msg for _, _, msg in failed), failed[:2]
    assert {o for o, _, _ in failed} == {ModelRestartingError.__name__}  # retried, then raised
    # The threat pipeline shares preprocess with pose and keeps serving.
    assert all(o == "ok" for o, _, _ in after_threat), after_threat[:3]
    assert server.is_running()

    # Recovery: unload + load starts a new stub, then the client's requests succeed.
    with _client(server, "grpc", retries=2) as client:
        client.unload_model(victim_model)
        client.load_model(victim_model)
        client.wait_until_ready(30, models=[ct.POSE_ENSEMBLE])
        assert client.estimate_poses(ZIDANE) is not None
    after = stub_pids(server)
    assert not set(pids) & set(after) and victim_model in after.values()
    new_stubs = {p: m for p, m in after.items() if p not in before}
    assert set(new_stubs.values()) == {victim_model}, f"only the victim's stub may be new: {new_stubs}"
    unlink_orphaned_regions(regions, server)
    assert_all_ready(server)


# --------------------------------------------------------------------------------------------- watchdog


def _wait_for(predicate, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _after(rows: list) -> int:
    return sum(1 for r in rows if not r[0].startswith("before"))


def _stubs_of(server: EmbeddedServer, model: str) -> list:
    return [s for pid in server.process_ids() if (s := stub_process(pid)) is not None and s.model == model]


@pytest.mark.integration
@pytest.mark.parametrize("timed", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_watchdog_reloads_model_and_retried_requests_all_succeed_when_stub_dies_under_load(watched, caplog, timed):
    server = watched
    victim_model = ct.POSE_ENSEMBLE  # cpu target: the fused pose model (preprocess + detector + postprocess)
    assert server.restart_dead_stubs and server.watchdog_running
    assert server.stub_restarts == {}
    caplog.set_level(logging.WARNING, logger="enrichment_light.server")
    results: list[tuple[str, float, float, str]] = []  # (op, start, duration, outcome)
    lock = threading.Lock()
    stop = threading.Event()

    def worker(op: str, protocol: str) -> None:
        with _client(server, protocol, retries=5, backoff_s=0.2) as client:
            call = client.estimate_poses if op == "pose" else client.detect_threats
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    call(ZIDANE)
                    outcome = "ok"
                except EnrichmentError as err:
                    outcome = f"{type(err).__name__}: {err}"
                with lock:
                    results.append((op, t0, time.monotonic() - t0, outcome))

    threads = [
        threading.Thread(target=worker, args=args, daemon=True)
        for args in (("pose", "grpc"), ("pose", "http"), ("threat", "grpc"))
    ]
    for t in threads:
        t.start()
    _wait_for(lambda: len(results) >= 3, "requests before the kill")
    victim = min(_stubs_of(server, victim_model), key=lambda st: st.pid)  # one of its instances
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    while not server.stub_restarts and time.monotonic() - killed_at < 15:
        time.sleep(0.02)
    recovery_s = time.monotonic() - killed_at
    # keep the load on after the restart: until pose calls started after it have been answered
    _wait_for(lambda: sum(1 for r in list(results) if r[0] == "pose" and r[1] > killed_at + recovery_s) >= 2, "pose")
    stop.set()
    for t in threads:
        t.join(timeout=2 * TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a client hung after the stub was killed"

    assert server.stub_restarts == {victim_model: 1}, server.log_tail(20)
    if timed:  # a speed target: checked in the slow runs only
        assert recovery_s < 5.0, f"the watchdog took {recovery_s:.1f} s"
    print(f"stub killed -> model reloaded in {recovery_s:.2f} s")
    # Zero failed requests after retries; nothing hangs: every call returned within its deadline.
    failed = [r for r in results if r[3] != "ok"]
    assert not failed, failed[:3]
    assert max(d for _, _, d, _ in results) < TIMEOUT_S
    assert [r for r in results if r[0] == "pose" and r[1] > killed_at + recovery_s], "no pose call after restart"
    # A new stub serves the model; the dead one's shared memory is gone.
    new = [st for st in _stubs_of(server, victim_model) if st.instance == victim.instance]
    assert len(new) == 1 and new[0].pid != victim.pid
    assert not Path("/dev/shm", victim.region).exists()
    # The WARNING goes to logging and to the server log.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("stub watchdog" in m and victim_model in m and str(victim.pid) in m for m in warnings), warnings
    log = server.log_path.read_text()
    assert "stub watchdog" in log and f"model '{victim_model}' reloaded" in log
    assert_all_ready(server)


@pytest.mark.integration
def test_watchdog_leaves_model_alone_when_it_is_unloaded_on_purpose(watched):
    server = watched
    before = server.stub_restarts
    with _client(server, "grpc", retries=0) as client:
        client.unload_model(ct.POSE_POSTPROCESS)
        try:
            time.sleep(5 * server.watchdog_interval_s)
            assert not _stubs_of(server, ct.POSE_POSTPROCESS)
            assert not client.is_model_ready(ct.POSE_POSTPROCESS)
            assert server.stub_restarts == before
        finally:
            client.load_model(ct.POSE_POSTPROCESS)
        client.wait_until_ready(30, models=[ct.POSE_ENSEMBLE])
        time.sleep(3 * server.watchdog_interval_s)
        assert server.stub_restarts == before
        assert client.estimate_poses(ZIDANE) is not None
    assert server.watchdog_running


@pytest.mark.integration
def test_server_stop_removes_all_shm_regions_and_watchdog_ends_when_process_group_is_killed(watched):
    server = watched
    prefix = server.shm_region_prefix
    regions = {s.region for pid in server.process_ids() if (s := stub_process(pid)) is not None}
    assert regions and all(r.startswith(prefix) and Path("/dev/shm", r).exists() for r in regions)
    before = server.stub_restarts
    os.killpg(server.pid, signal.SIGKILL)  # from outside: nobody unlinks the stubs' regions
    deadline = time.monotonic() + 5
    while (server.is_running() or server.watchdog_running) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.watchdog_running, "the watchdog outlived its server"
    assert server.stub_restarts == before  # it did not try to reload anything on a dead server
    assert any(Path("/dev/shm", r).exists() for r in regions)  # the leak stop() must clean up
    server.stop()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]


def test_embedded_server_rejects_watchdog_when_model_control_is_not_explicit(tmp_path):
    with pytest.raises(ValueError, match="explicit"):
        EmbeddedServer(tmp_path, model_control="none", restart_dead_stubs=True)
    assert EmbeddedServer(tmp_path).restart_dead_stubs is False
    assert EmbeddedServer(tmp_path, model_control="explicit").restart_dead_stubs is True
    assert EmbeddedServer(tmp_path, model_control="explicit", restart_dead_stubs=False).restart_dead_stubs is False


# --------------------------------------------------------------------------------------------- server kill


@pytest.mark.integration
@pytest.mark.parametrize("timed", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_client_raises_unavailable_then_recovers_when_server_is_killed_and_restarted(faults, timed):
    server = faults.server
    clients = {p: _client(server, p, timeout_s=5.0, retries=1, backoff_s=0.1) for p in ("grpc", "http")}
    try:
        for client in clients.values():
            assert client.detect_threats(BUS) is not None
        regions = shm_regions(server)
        os.killpg(server.pid, signal.SIGKILL)  # the server and its stubs, as an OOM kill or a crash would
        deadline = time.monotonic() + 10
        while server.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert regions and all(r.startswith(server.shm_region_prefix) for r in regions)
        server.stop()  # reaps the processes and removes the regions the killed stubs left in /dev/shm
        assert not [r for r in regions if Path("/dev/shm", r).exists()]
        assert not [n for n in os.listdir("/dev/shm") if n.startswith(server.shm_region_prefix)]
        for protocol, client in clients.items():
            start = time.monotonic()
            with pytest.raises(ServerUnavailableError):
                client.detect_threats(BUS)
            elapsed = time.monotonic() - start
            if timed:  # a speed target: checked in the slow runs only
                assert elapsed < 5.0, f"{protocol}: ServerUnavailableError took {elapsed:.1f} s (timeout_s 5)"
            assert not client.is_server_ready()

        restarted = faults.start()  # same ports
        assert (restarted.http_port, restarted.grpc_port) == (server.http_port, server.grpc_port)
        for protocol, client in clients.items():  # the same client objects recover by themselves
            client.wait_until_ready(60)
            assert client.detect_threats(BUS) is not None, protocol
            assert client.estimate_poses(ZIDANE) is not None, protocol
        assert_all_ready(restarted)
    finally:
        for client in clients.values():
            client.close()


# --------------------------------------------------------------------------------------------- stale builds


def _fake_onnx(path: Path, model: str, salt: str = "") -> Path:
    """A tiny ONNX file with the contract's input/output names (enough for the builder's checks)."""
    import onnx
    from onnx import TensorProto, helper

    spec = ct.model_spec(model)
    dims = [4 + 80, ct.NUM_ANCHORS_640] if model == ct.THREAT_MODEL else list(spec.outputs[0].shape)
    inp = helper.make_tensor_value_info(spec.inputs[0].name, TensorProto.UINT8, ["N", *spec.inputs[0].shape])
    out = helper.make_tensor_value_info(spec.outputs[0].name, TensorProto.FLOAT, ["N", *dims])
    node = helper.make_node("Cast", [spec.inputs[0].name], [spec.outputs[0].name], to=TensorProto.FLOAT)
    graph = helper.make_graph([node], model, [inp], [out])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {"salt": salt}
    if model == ct.THREAT_MODEL:
        meta["names"] = json.dumps({i: f"c{i}" for i in range(80)})
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(path))
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_builder_reports_stale_plan_and_manifest_when_onnx_changes_after_build(tmp_path):
    from enrichment_export import repository as rb
    from enrichment_export import tensorrt_plan as tp

    art = tmp_path / "artifacts"
    art.mkdir()
    for model in ct.INFERENCE_MODELS:
        _fake_onnx(art / f"{model}.onnx", model)
    onnx_path = art / f"{ct.POSE_MODEL}.onnx"
    device = tp.DeviceInfo((8, 6), "NVIDIA RTX A400", "10.5.0")
    plans = tmp_path / "plans"
    request = tp.make_plan_request(
        ct.POSE_MODEL,
        onnx_path,
        device=device,
        plan_path=plans / ct.POSE_MODEL / tp.plan_filename((8, 6)),
        allowed_roots=[tmp_path],
    )
    request.plan_path.parent.mkdir(parents=True)
    request.plan_path.write_bytes(b"not a real plan")
    tp.write_sidecar(
        tp.sidecar_path(request.plan_path),
        tp.PlanSidecar(
            "8.6",
            device.gpu_name,
            device.tensorrt_version,
            request.precision,
            request.profile.to_dict(),
            _sha256(onnx_path),
            model_name=ct.POSE_MODEL,
        ),
    )
    assert not tp.plan_decision(request, device).build
    first = rb.build_repository(
        tmp_path / "repo", target="tensorrt", artifacts=art, plans=plans, allowed_roots=[tmp_path], device=device
    )
    assert first.backend(ct.POSE_MODEL) == "tensorrt"
    recorded = first.manifest["models"][ct.POSE_MODEL]["source"]["sha256"]
    assert recorded == _sha256(onnx_path)

    _fake_onnx(onnx_path, ct.POSE_MODEL, salt="re-exported")  # the ONNX changes after the build

    decision = tp.plan_decision(request, device)
    assert decision.build and decision.reason.startswith("stale:") and "ONNX sha256" in decision.reason
    manifest = rb.read_manifest(tmp_path / "repo")
    assert manifest["models"][ct.POSE_MODEL]["source"]["sha256"] != _sha256(onnx_path)  # manifest is stale
    check = rb.find_plans(plans / ct.POSE_MODEL, _sha256(onnx_path))
    assert not check.filenames and "stale" in check.reason
    rebuilt = rb.build_repository(
        tmp_path / "repo", target="tensorrt", artifacts=art, plans=plans, allowed_roots=[tmp_path], device=device
    )
    entry = rebuilt.manifest["models"][ct.POSE_MODEL]
    assert entry["backend"] == "onnxruntime" and "stale" in entry["fallback"]["reason"]
    assert entry["source"]["sha256"] == _sha256(onnx_path)
    assert not list((tmp_path / "repo" / ct.POSE_MODEL / "1").glob("*.plan")), "a stale plan was left in place"
    np.testing.assert_equal(sorted(p.name for p in (tmp_path / "repo" / ct.POSE_MODEL / "1").iterdir()), ["model.onnx"])
