"""The embedded Triton server: the nvidia-pytriton wheel's real ``tritonserver``, on the CPU, no Docker.

pytriton's ``TritonServerConfig`` writes the command line, ``tritonclient.http`` makes every health, metadata
and repository call, psutil reads the processes; none is imported with this module.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from enrichment_light.core.errors import ServerStartError
from enrichment_light.devserver.drain import DrainReport, drain_server, triton_api
from enrichment_light.devserver.home import ServerHome, prepare_server_home
from enrichment_light.devserver.processes import process_group, stub_process
from enrichment_light.devserver.spawn import spawn
from enrichment_light.devserver.watchdog import StubWatchdog

ModelControl = Literal["none", "poll", "explicit"]
DEFAULT_HOST = "127.0.0.1"
EXIT_TIMEOUT_S = 10.0  # the drain's budget, then Triton's --exit-timeout-secs
STOP_TIMEOUT_S = 15.0  # wait after SIGTERM before SIGKILL
WATCHDOG_INTERVAL_S = 0.5
_SHM_PREFIX = "triton_python_backend_shm_region_"
_ERROR_LINE = re.compile(r"^E\d{4} ")  # glog error lines: E1124 14:34:12.073145 ...
# Triton's model_lifecycle line for a model that did not load; the reason ends at the stub's
# Python traceback ("\n\nAt:" escaped in the log) or at the closing quote.
_LOAD_FAILURE = re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<reason>.*?)(?:\\n|\"$|$)")
_POLL_S = 0.05
_PORT_LABELS = {"http": "HTTP port", "grpc": "gRPC port", "metrics": "metrics port"}
logger = logging.getLogger("enrichment_light.server")


def _socket(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with _socket(host) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int, *, what: str = "port") -> None:
    """Raise :class:`ServerStartError` (saying what to do) unless ``port`` can be bound on ``host``."""
    with _socket(host) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ServerStartError(
                f"{what} {port} on {host} is not available ({err.strerror}). Another server (perhaps another "
                f"Triton) is using it: stop it (e.g. `ss -ltnp 'sport = :{port}'` shows who), or choose another "
                "port, or pass 0 to pick a free one."
            ) from err


_LIVE_SERVERS: set[EmbeddedServer] = set()


@atexit.register
def _stop_live_servers() -> None:
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop(timeout_s=5.0)


class EmbeddedServer:
    """A real ``tritonserver`` process serving a model repository on the CPU (a context manager).

    ``start()`` returns once *this* process answers ready on every port. Ports ``None``/``0`` are picked free,
    given ones bind-tested. Each start gets its own run folder (server home, drain gate, default log). The
    process leads its own session and gets SIGTERM when this Python process dies
    (:mod:`~enrichment_light.devserver.spawn`). ``stop()`` drains (explicit mode), ends the stubs, frees their
    shared memory. An admin key given as ``--http-restricted-api=...:<key>=<value>`` in ``extra_args`` is sent.
    Other Triton flags (``--log-verbose=1``, ``--repository-poll-secs=5``...) go in ``extra_args``, last.

    Args:
        model_repository: One repository directory, or several.
        host: Address the endpoints bind to.
        http_port: HTTP port (``None``/``0``: a free one).
        grpc_port: gRPC port (``None``/``0``: a free one).
        metrics_port: Metrics port (``None``/``0``: a free one).
        allow_metrics: Serve the metrics endpoint.
        model_control: ``none``, ``poll`` or ``explicit``; only ``explicit`` drains and runs the watchdog.
        load_models: Models to load at start (``explicit`` only; ``"*"`` = all).
        exit_on_error: Fail the start when a model fails to load.
        strict_readiness: Ready only when every model is ready (the drain's gate relies on it).
        log_path: Server log; defaults to ``tritonserver.log`` in the run folder.
        startup_timeout_s: Longest wait for readiness before the process is killed.
        env: Extra environment variables for the server and its models.
        extra_args: More ``tritonserver`` flags, appended last.
        restart_dead_stubs: Run the :class:`StubWatchdog`; ``None``: on in ``explicit`` mode.
    """

    watchdog_interval_s = WATCHDOG_INTERVAL_S

    def __init__(
        self,
        model_repository: str | Path | Sequence[str | Path],
        *,
        host: str = DEFAULT_HOST,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        allow_metrics: bool = True,
        model_control: ModelControl = "none",
        load_models: Sequence[str] = (),
        exit_on_error: bool = True,
        strict_readiness: bool = True,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 60.0,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        restart_dead_stubs: bool | None = None,
    ) -> None:
        repos = [model_repository] if isinstance(model_repository, str | Path) else list(model_repository)
        self.model_repositories = tuple(Path(r).resolve() for r in repos)
        ports = {"http": http_port or 0, "grpc": grpc_port or 0, "metrics": metrics_port or 0}
        problems = [f"model_repository: expected an existing directory, got {str(r)!r}"
                    for r in self.model_repositories if not r.is_dir()]  # fmt: skip
        problems += [f"{n}_port: expected 0..65535 or None, got {p}" for n, p in ports.items() if not 0 <= p <= 65535]
        if model_control not in ("none", "poll", "explicit"):
            problems.append(f"model_control: expected 'none', 'poll' or 'explicit', got {model_control!r}")
        elif model_control != "explicit" and (restart_dead_stubs or load_models):  # both need the repository API
            what = "restart_dead_stubs=True (the watchdog reloads models)" if restart_dead_stubs else "load_models"
            problems.append(f"{what} needs model_control='explicit', got model_control={model_control!r}")
        if startup_timeout_s <= 0:
            problems.append(f"timeouts must be > 0, got startup_timeout_s={startup_timeout_s}")
        if problems or not repos:
            raise ValueError(problems[0] if problems else "model_repository: expected at least one directory, got none")
        self.host, self.allow_metrics, self.model_control = host, allow_metrics, model_control
        self.load_models, self.exit_on_error, self.strict_readiness = (
            tuple(load_models),
            exit_on_error,
            strict_readiness,
        )
        self.startup_timeout_s = float(startup_timeout_s)
        self.env, self.extra_args = dict(env or {}), tuple(extra_args)
        self.restart_dead_stubs = model_control == "explicit" if restart_dead_stubs is None else restart_dead_stubs
        self._requested_ports, self._ports = ports, dict(ports)
        self._log_path, self._given_log = (Path(log_path),) * 2 if log_path is not None else (None, None)
        self._log_file: IO[bytes] | None = None
        self._log_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: StubWatchdog | None = None
        self._stub_restarts: dict[str, int] = {}
        self._run_dir: Path | None = None
        self._home: ServerHome | None = None
        self._shm_prefix, self.server_id = "", ""
        self.startup_s: float | None = None
        self.exit_code: int | None = None
        self.last_drain: DrainReport | None = None

    http_port = property(lambda self: self._ports["http"], doc="The HTTP port (0 until picked).")
    grpc_port = property(lambda self: self._ports["grpc"], doc="The gRPC port (0 until picked).")
    metrics_port = property(lambda self: self._ports["metrics"], doc="The metrics port (0 until picked).")
    http_url = property(lambda self: self._address(self.http_port), doc="``host:port`` of the HTTP endpoint.")
    grpc_url = property(lambda self: self._address(self.grpc_port), doc="``host:port`` of the gRPC endpoint.")
    metrics_url = property(lambda self: f"http://{self._address(self.metrics_port)}/metrics", doc="Metrics URL.")
    pid = property(lambda self: self._process.pid if self._process else None, doc="``tritonserver``'s pid.")
    log_path = property(lambda self: self._log_path, doc="The server log (None before the first start).")
    home = property(lambda self: self._home, doc="The :class:`ServerHome` of the current run (None before it).")
    shm_region_prefix = property(lambda self: self._shm_prefix, doc="This run's stub region prefix in /dev/shm.")
    watchdog_running = property(lambda self: self._watchdog is not None and self._watchdog.is_alive())
    _gate_dir = property(
        lambda self: self._run_dir / "gate" if self._run_dir and self.model_control == "explicit" else None
    )

    @property
    def stub_restarts(self) -> dict[str, int]:
        """Model -> how many times the watchdog reloaded it since the last start."""
        return self._watchdog.counts() if self._watchdog is not None else dict(self._stub_restarts)

    def _address(self, port: int) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def is_running(self) -> bool:
        """True while the ``tritonserver`` process is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The ``tritonserver`` command line of the current run (pytriton's flag vocabulary)."""
        from pytriton.server.python_backend_config import PythonBackendConfig
        from pytriton.server.triton_server_config import TritonServerConfig

        if self._home is None:
            raise ServerStartError("the server was never started: its home and ports are chosen by start()")
        config, backend, metrics = TritonServerConfig(), PythonBackendConfig(), self.allow_metrics
        config.update_config({
            "model_repository": [*self.model_repositories, *([self._gate_dir] if self._gate_dir else [])],
            "backend_directory": self._home.backend_directory, "id": self.server_id, "http_address": self.host,
            "http_port": self.http_port, "grpc_address": self.host, "grpc_port": self.grpc_port,
            "allow_metrics": metrics, "metrics_address": self.host if metrics else None,
            "metrics_port": self.metrics_port if metrics else None, "allow_gpu_metrics": False,
            "pinned_memory_pool_byte_size": 0, "model_control_mode": self.model_control,
            "load_model": list(self.load_models), "exit_on_error": self.exit_on_error,
            "strict_readiness": self.strict_readiness, "exit_timeout_secs": round(EXIT_TIMEOUT_S),
        })  # fmt: skip
        if self._shm_prefix:  # one prefix per run: stop() finds every region, even of killed stubs
            backend["shm-region-prefix-name"] = self._shm_prefix
            config["backend-config"] = backend.to_list_args()
        # not to_args_list(): it splits on spaces (paths may hold them); Triton's bools are lower case
        args = [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, vs in config.server_args().items()
                for v in (vs if isinstance(vs, list) else [vs]) if v is not None]  # fmt: skip
        return [str(self._home.tritonserver), *args, "--disable-auto-complete-config", *self.extra_args]

    def start(self) -> EmbeddedServer:
        """Start the server and wait until it is ready.

        Raises:
            ServerStartError: A port is busy, the process exited early, another process answered, or it was
                not ready within ``startup_timeout_s``. The message ends with the server log's tail.
        """
        if self.is_running():
            raise ServerStartError(f"this EmbeddedServer is already running (pid {self.pid}); stop() it first")
        try:
            self._launch()
        except ServerStartError:  # an auto-picked port can be taken before the server binds it: retry once
            if 0 not in self._requested_ports.values() or "already in use" not in self.log_tail():
                raise
            self._launch()
        return self

    def _endpoints(self) -> list[str]:
        return ["http", "grpc"] + (["metrics"] if self.allow_metrics else [])

    def _launch(self) -> None:
        taken: set[int] = set()
        for kind in self._endpoints():
            label, port = _PORT_LABELS[kind], self._requested_ports[kind]
            if port == 0:
                while (port := find_free_port(self.host)) in taken:
                    pass
            elif port in taken:
                raise ServerStartError(f"{label} {port} is given for two endpoints")
            else:
                check_port_free(self.host, port, what=label)
            self._ports[kind] = port
            taken.add(port)
        self._run_dir = Path(tempfile.mkdtemp(prefix="enrichment-light-triton-"))
        self._home = prepare_server_home(self._run_dir / "home")
        self._log_path = self._given_log or self._run_dir / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:12]
        self.server_id = f"enrichment-light-{run_id}"
        own_prefix = not any(
            a.startswith("--backend-config=python,") and "shm-region-prefix-name=" in a for a in self.extra_args
        )
        self._shm_prefix = f"{_SHM_PREFIX}{run_id}_" if own_prefix else ""  # Triton's prefix first, for tools
        if self._gate_dir is not None:
            self._gate_dir.mkdir()
        self._stub_restarts, self.exit_code, self.last_drain = {}, None, None
        self._log_file = open(self._log_path, "wb")  # noqa: SIM115 - closed by stop()
        started = time.monotonic()
        self._process = spawn(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env={**self._home.environment(), **self.env}, cwd=self._home.root, start_new_session=True,
        )  # fmt: skip
        _LIVE_SERVERS.add(self)
        try:
            self.wait_until_ready(self.startup_timeout_s)
        except ServerStartError:
            self.stop(timeout_s=5.0, drain=False)
            raise
        self.startup_s = time.monotonic() - started
        if self.restart_dead_stubs:
            reload_timeout_s = max(30.0, self.startup_timeout_s)
            self._watchdog = StubWatchdog(self, interval_s=self.watchdog_interval_s, reload_timeout_s=reload_timeout_s)
            self._watchdog.start()

    def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        """Block until *this* process answers ready (its ``--id``) and listens on every port.

        Raises:
            ServerStartError: Not started, the process died, or not ready in time (it is left running).
        """
        import psutil

        if self._process is None:
            raise ServerStartError("the server was never started")
        deadline, last, h = time.monotonic() + timeout_s, "no answer yet", self._admin_headers()
        wanted = {self._ports[k] for k in self._endpoints()}
        while True:
            if (code := self._process.poll()) is not None:
                raise ServerStartError(self._failure(f"tritonserver exited with status {code} before it was ready"))
            ok, answer = self._api(lambda c: c.is_server_ready(headers=h) and c.get_server_metadata(headers=h))
            if ok and answer:
                if answer.get("name") != self.server_id:
                    who = f"id {answer.get('name')!r}, expected {self.server_id!r}"
                    raise ServerStartError(self._failure(f"another server answers on {self.http_url} ({who})"))
                with contextlib.suppress(psutil.Error):
                    sockets = psutil.Process(self._process.pid).net_connections("tcp")
                    if not (missing := wanted - {s.laddr.port for s in sockets if s.status == psutil.CONN_LISTEN}):
                        return
                    last = f"ready, but ports {sorted(missing)} are not yet listening in pid {self._process.pid}"
            elif ok or answer:
                last = f"GET /v2/health/ready -> {answer or 'not ready'}"
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    self._failure(f"tritonserver was not ready within {timeout_s:g} s (last check: {last})")
                )
            time.sleep(_POLL_S)

    def _api(self, call: Callable[[Any], Any], *, timeout_s: float = 5.0) -> tuple[bool, Any]:
        return triton_api(self.http_url, call, timeout_s=timeout_s)

    def _admin_headers(self) -> dict[str, str]:
        """Headers for APIs that ``extra_args`` restrict (``--http-restricted-api=<apis>:<key>=<value>``)."""
        pairs = [a.partition("=")[2].partition(":")[2].partition("=") for a in self.extra_args
                 if a.startswith("--http-restricted-api=")]  # fmt: skip
        return {key: value for key, sep, value in pairs if sep and key}

    def drain(self, *, timeout_s: float = EXIT_TIMEOUT_S) -> DrainReport | None:
        """Take the server out of service without failing a request (:func:`drain_server`).

        Returns:
            The :class:`DrainReport` (also :attr:`last_drain`); None when not running or not in explicit mode.
        """
        if self._gate_dir is None or not self.is_running():
            return None
        report = drain_server(self.http_url, gate_repository=self._gate_dir, timeout_s=timeout_s,
                              headers=self._admin_headers())  # fmt: skip
        left = "" if report.complete else f"; budget spent, still loaded: {list(report.left)}"
        self._log_event(logging.INFO, "drain: not ready after %.3f s, unloaded %s in %.2f s%s", report.unready_s,
                        " then ".join(map(",".join, report.waves)) or "nothing", report.drained_s, left)  # fmt: skip
        self.last_drain = report
        return report

    def stop(self, *, timeout_s: float = STOP_TIMEOUT_S, drain: bool = True) -> None:
        """Drain (explicit mode), SIGTERM, wait ``timeout_s``, then SIGKILL; also ends the stubs, frees their regions.

        Safe to call more than once and after the server exited; :attr:`exit_code` holds the status.
        """
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:  # first, so that it does not reload models while they shut down
            watchdog.stop()
            self._stub_restarts = watchdog.counts()
        if (process := self._process) is None:
            return
        if drain and process.poll() is None:
            self.drain()
        pgid = process.pid  # start_new_session: the server leads its own process group; stubs inherit it
        regions = {s.region for p in process_group(pgid) if (s := stub_process(p.pid)) is not None}
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                process.wait()
        self.exit_code = process.returncode
        deadline = time.monotonic() + 2.0  # stubs notice their parent is gone within ~1 s
        while process_group(pgid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if self._shm_prefix:  # this run's prefix also finds the regions of stubs killed from outside
            with contextlib.suppress(OSError):
                regions.update(n for n in os.listdir("/dev/shm") if n.startswith(self._shm_prefix))
        self._unlink_regions(regions, live=set())
        if self._run_dir is not None:  # the log stays for reading
            for part in ("home", "gate"):
                shutil.rmtree(self._run_dir / part, ignore_errors=True)
            with contextlib.suppress(OSError):
                self._run_dir.rmdir()  # empty unless it holds the log
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        _LIVE_SERVERS.discard(self)

    def _unlink_regions(self, regions: Iterable[str], *, live: set[str] | None = None) -> None:
        """Remove the shared-memory regions of dead stubs (a SIGKILLed stub cannot unlink its own)."""
        if live is None:
            live = {s.region for pid in self.process_ids() if (s := stub_process(pid)) is not None}
        for region in set(regions) - live:
            if region and "/" not in region:
                with contextlib.suppress(OSError):
                    os.unlink(f"/dev/shm/{region}")

    def process_ids(self) -> list[int]:
        """Ids of the server and its stub processes (empty when stopped)."""
        return sorted(p.pid for p in process_group(self._process.pid)) if self.is_running() and self._process else []

    def rss_bytes(self) -> int:
        """Resident memory of the server plus its stubs, in bytes."""
        import psutil

        total = 0
        for pid in self.process_ids():
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return total

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` meaningful lines of the server log (Triton's tables and blank lines skipped)."""
        return "\n".join(self._log_lines()[-n:]) if n > 0 else ""

    def _log_lines(self) -> list[str]:
        if self._log_path is None or not self._log_path.exists():
            return []
        with open(self._log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 512 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip() and not line.startswith(("+-", "|"))]

    def _log_event(self, level: int, message: str, *args: object) -> None:
        """Log through :mod:`logging` and append a glog-style line to the server log."""
        logger.log(level, message, *args)
        now = time.time()
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
        line = f"{logging.getLevelName(level)[0]}{stamp} {os.getpid()} enrichment_light.server] {message % args}\n"
        with self._log_lock, contextlib.suppress(OSError, ValueError):
            if self._log_file is not None:  # shares Triton's file offset: whole lines land after Triton's
                self._log_file.write(line.encode())
                self._log_file.flush()

    def _failure(self, what: str) -> str:
        if failed := model_load_failures(self._log_lines()):
            what += ": " + "; ".join(f"model {model} failed to load: {reason}" for model, reason in failed.items())
        tail = self.log_tail()
        errors = "\n".join([line for line in self._log_lines() if _ERROR_LINE.match(line) and line not in tail][-10:])
        earlier = f"--- earlier errors in the server log ---\n{errors}\n" if errors else ""
        return f"{what}.\nServer log: {self._log_path}\n{earlier}--- last lines of the server log ---\n{tail}"

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.is_running() else "stopped"
        return f"EmbeddedServer({state}, http={self.http_url}, grpc={self.grpc_url}, log={self._log_path})"


def model_load_failures(lines: Iterable[str]) -> dict[str, str]:
    """Model name -> the reason Triton logged for not loading it (its first line, traceback dropped)."""
    failed: dict[str, str] = {}
    for line in lines:
        if _ERROR_LINE.match(line) and (m := _LOAD_FAILURE.search(line)):
            failed[m["model"]] = m["reason"].strip()
    return failed


def serve_forever(server: EmbeddedServer, *, out: IO[str] | None = None) -> int:
    """Run ``server`` in the foreground until SIGINT or SIGTERM, then drain and stop it (call from the main thread).

    Args:
        server: The server (started here when not running yet).
        out: Where the URLs and the log path are printed; stdout when omitted.

    Returns:
        0 after a clean stop, 1 when the server died on its own or did not exit with status 0.

    Raises:
        ServerStartError: The server could not be started.
    """
    stream, stop = out if out is not None else sys.stdout, threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    say = lambda text: print(text, file=stream, flush=True)  # noqa: E731
    try:
        if not server.is_running():
            server.start()
        try:
            startup = f" in {server.startup_s:.1f} s" if server.startup_s is not None else ""
            say(f"Triton {server.home.triton_version} ready{startup} (pid {server.pid})")
            say(f"  HTTP     http://{server.http_url}\n  gRPC     {server.grpc_url}")
            if server.allow_metrics:
                say(f"  metrics  {server.metrics_url}")
            say(f"  log      {server.log_path}")
            if server.restart_dead_stubs:
                say("  stub watchdog on: a model whose Python-backend stub dies is reloaded")
            say("Press Ctrl-C to stop.")
            while not stop.wait(0.2):
                if not server.is_running():
                    print(f"tritonserver exited unexpectedly; last lines of {server.log_path}:\n{server.log_tail()}",
                          file=sys.stderr)  # fmt: skip
                    return 1
            say("Stopping Triton (draining)...")
        finally:
            server.stop()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if server.exit_code != 0:
        print(f"tritonserver exited with status {server.exit_code}; see {server.log_path}", file=sys.stderr)
        return 1
    say("Triton stopped.")
    return 0
