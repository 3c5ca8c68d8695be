"""The embedded Triton launcher against the real tritonserver 2.51 (CPU, Python backend), no mocks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from enrichment_light.core.errors import ServerStartError
from enrichment_light.devserver import EmbeddedServer, check_port_free, find_free_port, prepare_server_home

ServerFactory = Callable[..., EmbeddedServer]  # the triton_server_factory fixture
RepositoryFactory = Callable[..., Path]  # the test_model_repository fixture

X = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]], dtype=np.float32)
Y = np.array([[0.5, 0.5, 0.5, 0.5], [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def _triton_processes(server_pid: int, server_id: str) -> list[str]:
    """Live tritonserver/stub processes of one launch, found independently of the launcher via /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = [a.decode() for a in Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0") if a]
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] == "Z":  # zombie: already dead, waiting to be reaped
            continue
        is_server = f"--id={server_id}" in args
        is_stub = bool(args) and args[0].endswith("triton_python_backend_stub") and str(server_pid) in args[1:]
        if is_server or is_stub:
            found.append(f"{entry}: {' '.join(args)[:160]}")
    return found


def _infer_http(url: str) -> tuple[np.ndarray, np.ndarray]:
    with httpclient.InferenceServerClient(url) as client:
        inputs = [
            httpclient.InferInput("INPUT0", list(X.shape), "FP32"),
            httpclient.InferInput("INPUT1", list(Y.shape), "FP32"),
        ]
        inputs[0].set_data_from_numpy(X)
        inputs[1].set_data_from_numpy(Y)
        result = client.infer("add_sub", inputs)
        return result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")


def _infer_grpc(url: str) -> tuple[np.ndarray, np.ndarray]:
    with grpcclient.InferenceServerClient(url) as client:
        inputs = [
            grpcclient.InferInput("INPUT0", list(X.shape), "FP32"),
            grpcclient.InferInput("INPUT1", list(Y.shape), "FP32"),
        ]
        inputs[0].set_data_from_numpy(X)
        inputs[1].set_data_from_numpy(Y)
        result = client.infer("add_sub", inputs)
        return result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")


@pytest.fixture(scope="module")
def explicit_server(triton_server_factory: ServerFactory, test_model_repository: RepositoryFactory) -> EmbeddedServer:
    """One server for the read-only checks: explicit mode, a broken model present in the repository but not loaded."""
    repo = test_model_repository("add_sub", "env_probe", "broken_import")
    return triton_server_factory(repo, model_control="explicit", load_models=["add_sub", "env_probe"])


# ------------------------------------------------------------------------------------------ serving


@pytest.mark.integration
def test_embedded_server_infers_over_http_when_started(explicit_server: EmbeddedServer) -> None:
    out0, out1 = _infer_http(explicit_server.http_url)
    np.testing.assert_array_equal(out0, X + Y)
    np.testing.assert_array_equal(out1, X - Y)


@pytest.mark.integration
def test_embedded_server_infers_over_grpc_when_started(explicit_server: EmbeddedServer) -> None:
    out0, out1 = _infer_grpc(explicit_server.grpc_url)
    np.testing.assert_array_equal(out0, X + Y)
    np.testing.assert_array_equal(out1, X - Y)


@pytest.mark.integration
def test_embedded_server_answers_with_its_own_id_when_ready(explicit_server: EmbeddedServer) -> None:
    with urllib.request.urlopen(f"http://{explicit_server.http_url}/v2", timeout=5) as response:
        metadata = json.load(response)
    assert metadata["name"] == explicit_server.server_id
    assert metadata["version"] == explicit_server.home.triton_version == "2.51.0"
    assert explicit_server.http_url.startswith("127.0.0.1:")
    assert explicit_server.startup_s is not None


@pytest.mark.integration
@pytest.mark.slow
def test_embedded_server_starts_within_30_s_when_timed(explicit_server: EmbeddedServer) -> None:
    assert explicit_server.startup_s is not None
    assert explicit_server.startup_s < 30  # a speed target: slow runs only


@pytest.mark.integration
def test_embedded_server_serves_metrics_when_allowed(explicit_server: EmbeddedServer) -> None:
    with urllib.request.urlopen(explicit_server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert "nv_inference_request_success" in text


@pytest.mark.integration
def test_embedded_server_counts_stub_memory_when_measuring_rss(explicit_server: EmbeddedServer) -> None:
    pids = explicit_server.process_ids()
    assert explicit_server.pid in pids
    assert len(pids) == 3  # tritonserver + one stub per loaded Python model
    rss = explicit_server.rss_bytes()
    assert 30 * 2**20 < rss < 1024 * 2**20


@pytest.mark.integration
def test_embedded_server_runs_models_in_this_venv_when_loading_python_models(explicit_server: EmbeddedServer) -> None:
    with httpclient.InferenceServerClient(explicit_server.http_url) as client:
        query = httpclient.InferInput("QUERY", [1], "BYTES")
        query.set_data_from_numpy(np.array([b"?"], dtype=np.object_))
        report = json.loads(client.infer("env_probe", [query]).as_numpy("REPORT")[0])
    assert report["prefix"] == sys.prefix
    assert report["version"][:2] == list(sys.version_info[:2])
    assert report["isolated"] is True
    assert report["enrichment_light"] is True  # the installed package is importable inside model.py
    assert report["env"]["PYTHONPATH"] is None or report["isolated"]


@pytest.mark.integration
def test_embedded_server_keeps_serving_when_an_explicit_load_fails(explicit_server: EmbeddedServer) -> None:
    with httpclient.InferenceServerClient(explicit_server.http_url) as client:
        index = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
        assert index["add_sub"] == "READY"
        assert index["broken_import"] != "READY"
        with pytest.raises(InferenceServerException, match="deliberate failure at import time"):
            client.load_model("broken_import")
        assert client.is_model_ready("add_sub")
    assert explicit_server.is_running()
    out0, _ = _infer_http(explicit_server.http_url)
    np.testing.assert_array_equal(out0, X + Y)


# -------------------------------------------------------------------------------- start failures


@pytest.mark.integration
@pytest.mark.parametrize("which", ["http_port", "grpc_port", "metrics_port"])
def test_embedded_server_raises_naming_port_when_port_busy(
    which: str, test_model_repository: RepositoryFactory
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = EmbeddedServer(test_model_repository("add_sub"), **{which: port})
        with pytest.raises(ServerStartError, match=rf"port {port} on 127\.0\.0\.1 is not available.*choose another"):
            server.start()
    assert server.pid is None  # refused before anything was spawned


@pytest.mark.integration
def test_embedded_server_raises_with_log_tail_when_a_model_fails_and_exit_on_error(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    server = EmbeddedServer(test_model_repository("add_sub", "broken_import"), log_path=tmp_path / "t.log")
    with pytest.raises(ServerStartError) as info:
        server.start()
    message = str(info.value)
    assert "before it was ready" in message
    assert "model broken_import failed to load" in message.splitlines()[0]  # the cause on the first line
    assert "last lines of the server log" in message
    assert "broken_import: deliberate failure at import time" in message
    assert str(tmp_path / "t.log") in message
    assert not server.is_running()
    assert _triton_processes(server.pid, server.server_id) == []


@pytest.mark.integration
def test_embedded_server_kills_and_reports_when_not_ready_in_time(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    server = EmbeddedServer(
        test_model_repository("add_sub", "slow_init"), startup_timeout_s=2, log_path=tmp_path / "t.log"
    )
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"not ready within 2 s(.|\n)*last lines of the server log") as info:
        server.start()
    assert time.monotonic() - started < 10
    assert "loading: slow_init" in str(info.value)  # the log tail is really there
    assert not server.is_running()
    assert _triton_processes(server.pid, server.server_id) == []


@pytest.mark.integration
def test_embedded_server_serves_healthy_models_when_exit_on_error_is_off(
    triton_server_factory: ServerFactory, test_model_repository: RepositoryFactory
) -> None:
    repo = test_model_repository("add_sub", "broken_import")
    server = triton_server_factory(repo, exit_on_error=False, strict_readiness=False)
    out0, _ = _infer_grpc(server.grpc_url)
    np.testing.assert_array_equal(out0, X + Y)
    with httpclient.InferenceServerClient(server.http_url) as client:
        states = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
    assert states == {"add_sub": "READY", "broken_import": "UNAVAILABLE"}


# ---------------------------------------------------------------------------------------- stopping


@pytest.mark.integration
def test_embedded_server_stop_leaves_no_process_and_clean_log_when_used_normally(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    with EmbeddedServer(test_model_repository("add_sub", "env_probe"), log_path=log) as server:
        pid, server_id = server.pid, server.server_id
        assert len(_triton_processes(pid, server_id)) == 3
        regions = {a for p in server.process_ids() for a in Path(f"/proc/{p}/cmdline").read_text().split("\0")}
        regions = {r for r in regions if r.startswith("triton_python_backend_shm_region_")}
        _infer_http(server.http_url)
        _infer_grpc(server.grpc_url)
    assert not server.is_running()
    assert _triton_processes(pid, server_id) == []
    assert server.exit_code == 0
    assert server.last_drain is None  # model control "none": no drain, Triton's own SIGTERM path
    assert regions
    assert not [r for r in regions if Path("/dev/shm", r).exists()]
    text = log.read_text()
    assert "successfully loaded 'add_sub'" in text
    assert "successfully unloaded 'add_sub'" in text
    assert "Traceback" not in text
    assert "failed" not in text.lower()
    # clean: Triton did not have to wait out its grace period (observable in its log, not a timing)
    assert "Exit timeout expired" not in text and "service connections" not in text
    server.stop()  # idempotent


@pytest.mark.integration
def test_serve_forever_exits_zero_and_leaves_no_process_when_sigterm(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    repo = test_model_repository("add_sub")
    script = textwrap.dedent(
        f"""
        import sys
        from enrichment_light.devserver import EmbeddedServer, serve_forever
        server = EmbeddedServer({str(repo)!r}, log_path={str(tmp_path / "serve.log")!r})
        print("ID", server.server_id, flush=True)
        sys.exit(serve_forever(server))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        assert "Press Ctrl-C" in output, output
        pid = int(output.split("(pid ")[1].split(")")[0])
        http = output.split("HTTP     http://")[1].split()[0]
        with urllib.request.urlopen(f"http://{http}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        server_id = output.split("ID ")[1].split()[0]
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output + rest
    assert "gRPC     127.0.0.1:" in output
    assert "metrics  http://127.0.0.1:" in output
    assert "Triton stopped." in rest
    assert _triton_processes(pid, server_id) == []
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


# -------------------------------------------------------------------------------- home and options


def test_prepare_server_home_links_the_wheel_when_folder_is_empty(tmp_path: Path) -> None:
    home = prepare_server_home(tmp_path / "home")
    assert home.root.parent == tmp_path
    assert home.tritonserver.is_file()
    assert os.access(home.tritonserver, os.X_OK)
    assert (home.backend_directory / "python" / "triton_python_backend_stub").is_file()
    assert (home.backend_directory / "python" / "libtriton_python.so").is_file()
    assert home.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    env = home.environment({"PATH": "/usr/bin"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(home.lib_dir)


def test_prepare_server_home_relinks_when_a_link_is_stale(tmp_path: Path) -> None:
    home = prepare_server_home(tmp_path / "home")
    stub = home.backend_directory / "python" / "triton_python_backend_stub"
    target = os.readlink(stub)
    stub.unlink()
    stub.symlink_to(tmp_path / "gone")
    again = prepare_server_home(tmp_path / "home")
    assert again.root == home.root
    assert os.readlink(stub) == target
    assert [p.name for p in tmp_path.iterdir()] == [home.root.name]  # relinked in place, nothing else left


def test_prepare_server_home_lists_available_stubs_when_python_version_unsupported(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match=r"no Python-backend stub for Python 2\.7.*available: .*3\.11"):
        prepare_server_home(tmp_path / "home", python_version="2.7")


def test_check_port_free_passes_when_port_free() -> None:
    check_port_free("127.0.0.1", find_free_port())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_control": "sometimes"}, "model_control: expected 'none', 'poll' or 'explicit'"),
        ({"load_models": ["add_sub"]}, "load_models needs model_control='explicit'"),
        ({"http_port": 70000}, "http_port: expected 0..65535"),
        ({"startup_timeout_s": 0}, "timeouts must be > 0"),
        ({"startup_timeout_s": -1}, "timeouts must be > 0"),
    ],
)
def test_embedded_server_rejects_options_when_invalid(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        EmbeddedServer(tmp_path, **kwargs)


def test_embedded_server_rejects_repository_when_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected an existing directory"):
        EmbeddedServer(tmp_path / "nope")


def test_devserver_imports_no_tritonclient_when_imported() -> None:
    code = (
        "import sys, enrichment_light.devserver\n"
        "print(sorted(m for m in sys.modules if m.startswith(('tritonclient', 'pytriton'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_server_shim_reexports_devserver_with_deprecation_warning_when_imported() -> None:
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    import enrichment_light.server as old\n"
        "import enrichment_light.devserver as new\n"
        "print(old.EmbeddedServer is new.EmbeddedServer, old.serve_forever is new.serve_forever)\n"
        "print([str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    same, warned = out.strip().splitlines()
    assert same == "True True"
    assert "enrichment_light.server is deprecated" in warned and "import enrichment_light.devserver instead" in warned


# ------------------------------------------------------------------------- starts under gRPC load


def _restart_under_grpc_load(repo: Path, log_dir: Path, restarts: int) -> list[str]:
    """Start and stop a server ``restarts`` times while four threads keep gRPC calls in flight on another one.

    Returns the failed starts (empty when every start succeeded and answered).
    """
    busy = EmbeddedServer(repo, log_path=log_dir / "busy.log").start()
    stop, calls, errors = threading.Event(), [0], []

    def load() -> None:
        with grpcclient.InferenceServerClient(busy.grpc_url) as client:
            while not stop.is_set():
                try:
                    _infer_grpc_with(client)
                    calls[0] += 1
                except InferenceServerException as err:  # recorded; the busy server must keep serving
                    errors.append(str(err))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    failed = []
    try:
        for t in threads:
            t.start()
        for i in range(restarts):
            before = calls[0]
            while calls[0] == before:  # gRPC calls are really in flight while the child starts
                time.sleep(0.01)
            server = EmbeddedServer(repo, log_path=log_dir / f"restart-{i}.log", allow_metrics=False)
            try:
                server.start()
                out0, _ = _infer_grpc(server.grpc_url)
                np.testing.assert_array_equal(out0, X + Y)
            except (ServerStartError, AssertionError, InferenceServerException) as err:
                failed.append(f"start {i}: {str(err)[:300]}")
            finally:
                server.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        busy.stop()
    assert not errors, errors[:3]
    return failed


def _infer_grpc_with(client: grpcclient.InferenceServerClient) -> None:
    inputs = [
        grpcclient.InferInput("INPUT0", list(X.shape), "FP32"),
        grpcclient.InferInput("INPUT1", list(Y.shape), "FP32"),
    ]
    inputs[0].set_data_from_numpy(X)
    inputs[1].set_data_from_numpy(Y)
    client.infer("add_sub", inputs)


@pytest.mark.integration
def test_embedded_server_starts_every_time_when_other_threads_keep_grpc_calls_in_flight(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    assert _restart_under_grpc_load(test_model_repository("add_sub"), tmp_path, restarts=3) == []


@pytest.mark.integration
@pytest.mark.slow
def test_embedded_server_starts_50_times_when_other_threads_keep_grpc_calls_in_flight(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    assert _restart_under_grpc_load(test_model_repository("add_sub"), tmp_path, restarts=50) == []


@pytest.mark.integration
def test_embedded_server_child_gets_sigterm_when_its_parent_process_dies(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    """The server is started from a worker thread that then ends; the parent is SIGKILLed later."""
    repo = test_model_repository("add_sub")
    script = textwrap.dedent(
        f"""
        import threading, time
        from enrichment_light.devserver import EmbeddedServer
        server = EmbeddedServer({str(repo)!r}, log_path={str(tmp_path / "orphan.log")!r})
        worker = threading.Thread(target=server.start)
        worker.start(); worker.join()
        print("PID", server.pid, server.server_id, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    _, pid, server_id = proc.stdout.readline().split()
    assert _triton_processes(int(pid), server_id), "the server did not start"
    proc.kill()  # SIGKILL: no atexit, no stop(); only the death signal can end the server
    proc.wait()
    deadline = time.monotonic() + 30
    while _triton_processes(int(pid), server_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _triton_processes(int(pid), server_id) == []


@pytest.mark.integration
def test_embedded_server_drain_turns_readiness_off_and_unloads_callers_first_when_explicit(
    test_model_repository: RepositoryFactory, tmp_path: Path
) -> None:
    server = EmbeddedServer(
        test_model_repository("add_sub", "env_probe"),
        model_control="explicit",
        load_models=["*"],
        log_path=tmp_path / "drain.log",
    ).start()
    try:
        with httpclient.InferenceServerClient(server.http_url) as client:
            assert client.is_server_ready()
        report = server.drain()
        assert report is not None and report.complete and report.left == ()
        assert sorted(m for wave in report.waves for m in wave) == ["add_sub", "env_probe"]
        assert server.is_running()  # drained, not stopped: still live, no longer ready
        with httpclient.InferenceServerClient(server.http_url) as client:
            assert client.is_server_live() and not client.is_server_ready()
            with pytest.raises(InferenceServerException, match=r"unknown model|no available versions"):
                _infer_grpc(server.grpc_url)
    finally:
        server.stop()
    assert server.exit_code == 0
    text = (tmp_path / "drain.log").read_text()
    assert "drain: not ready after" in text
    assert "Exit timeout expired" not in text and "service connections" not in text
