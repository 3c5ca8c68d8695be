"""Embedded Triton server: the real ``tritonserver`` from the ``nvidia-pytriton`` wheel, on the CPU, no Docker.

The wheel ships the ``tritonserver`` binary, the Python backend and one ``triton_python_backend_stub`` per
Python version, but not in the layout Triton expects. :func:`prepare_server_home` assembles a private
"server home" of symlinks under the user cache directory (the wheel's own directory is never modified)::

    ~/.cache/enrichment-light/tritonserver-2.51.0-py3.11-<hash>/
        bin/tritonserver                         -> <site-packages>/pytriton/tritonserver/bin/tritonserver
        lib                                      -> <site-packages>/nvidia_pytriton.libs
        backends/python/libtriton_python.so      -> .../backends/python/libtriton_python.so
        backends/python/triton_python_backend_utils.py
        backends/python/triton_python_backend_stub -> .../python_backend_stubs/<X.Y>/triton_python_backend_stub

:class:`EmbeddedServer` starts the binary from that home on free (or given) ports bound to 127.0.0.1, waits
until *its own* process answers ready, and stops it together with its Python-backend stub processes.
:func:`serve_forever` is the CLI building block: print the URLs, block until SIGINT/SIGTERM, stop cleanly.

This module imports only the standard library (no tritonclient, no pytriton import).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from enrichment_light.errors import ServerStartError

__all__ = [
    "EmbeddedServer",
    "ServerHome",
    "check_port_free",
    "find_free_port",
    "prepare_server_home",
    "serve_forever",
]

ModelControl = Literal["none", "poll", "explicit"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT_S = 60.0
DEFAULT_STOP_TIMEOUT_S = 15.0
DEFAULT_EXIT_TIMEOUT_S = 5.0
CACHE_DIR_ENV = "ENRICHMENT_LIGHT_CACHE_DIR"
_TRITON_VERSION_BY_PYTRITON = {"0.7.0": "2.51.0"}
_STUB_NAME = "triton_python_backend_stub"
_SHM_PREFIX = "triton_python_backend_shm_region_"
_LOG_TAIL_LINES = 40
_POLL_INTERVAL_S = 0.05
_ERROR_LINE = re.compile(r"^E\d{4} ")  # Triton's glog-style error lines: E1124 14:34:12.073145 ...


# --------------------------------------------------------------------------------------------- server home


@dataclass(frozen=True)
class ServerHome:
    """A ready-to-run Triton layout assembled from the nvidia-pytriton wheel.

    Attributes:
        root: The home directory.
        triton_version: The server version, e.g. ``"2.51.0"``.
        python_version: ``"X.Y"`` of the Python-backend stub (and of the interpreter models run in).
        tritonserver: The ``tritonserver`` executable.
        backend_directory: The value for ``--backend-directory``.
        lib_dir: The bundled shared libraries (``nvidia_pytriton.libs``).
        python_libdir: The interpreter's ``LIBDIR`` (holds ``libpython3.X.so`` for the stub).
        python_bin_dir: The directory put first on ``PATH``; its ``python3`` is the stub's interpreter.
    """

    root: Path
    triton_version: str
    python_version: str
    tritonserver: Path
    backend_directory: Path
    lib_dir: Path
    python_libdir: Path | None
    python_bin_dir: Path

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment ``tritonserver`` (and the stubs it spawns) must run with.

        Args:
            base: Environment to extend; ``os.environ`` when omitted.

        Returns:
            A new dict with ``LD_LIBRARY_PATH`` and ``PATH`` prefixed.
        """
        env = dict(os.environ if base is None else base)
        libs = [str(self.lib_dir)] + ([str(self.python_libdir)] if self.python_libdir else [])
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, *filter(None, [env.get("LD_LIBRARY_PATH")])])
        env["PATH"] = os.pathsep.join([str(self.python_bin_dir), *filter(None, [env.get("PATH")])])
        return env


def _default_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "enrichment-light"


def _pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(
            "the embedded Triton server needs the nvidia-pytriton wheel: pip install 'enrichment-light[serve]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _triton_version() -> str:
    try:
        pytriton_version = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
    return _TRITON_VERSION_BY_PYTRITON.get(pytriton_version, f"pytriton{pytriton_version}")


def _link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def _home_is_valid(root: Path, links: Mapping[str, Path]) -> bool:
    for rel, target in links.items():
        path = root / rel
        if not path.is_symlink() or Path(os.readlink(path)) != target or not path.exists():
            return False
    return True


def prepare_server_home(*, cache_dir: str | Path | None = None, python_version: str | None = None) -> ServerHome:
    """Assemble (once) and return the private Triton layout for this interpreter.

    The home is made of symlinks into the installed wheel; it is re-created when a link is missing or
    points elsewhere (e.g. the venv was rebuilt). Creation is atomic, so concurrent callers are safe.

    Args:
        cache_dir: Parent directory; defaults to ``$ENRICHMENT_LIGHT_CACHE_DIR`` or
            ``$XDG_CACHE_HOME/enrichment-light`` or ``~/.cache/enrichment-light``.
        python_version: ``"X.Y"`` of the stub to use; defaults to the running interpreter's.

    Returns:
        The assembled :class:`ServerHome`.

    Raises:
        ServerStartError: The wheel is missing or has no stub for that Python version.
    """
    pytriton_dir = _pytriton_dir()
    wheel = pytriton_dir / "tritonserver"
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs_dir = wheel / "python_backend_stubs"
    stub = stubs_dir / version / _STUB_NAME
    if not stub.is_file():
        available = (
            sorted(p.name for p in stubs_dir.iterdir() if (p / _STUB_NAME).is_file()) if stubs_dir.is_dir() else []
        )
        raise ServerStartError(
            f"nvidia-pytriton has no Python-backend stub for Python {version} (looked for {stub}); "
            f"available: {', '.join(available) or 'none'}. Use one of those Python versions for the venv."
        )
    lib_dir = pytriton_dir.parent / "nvidia_pytriton.libs"
    if not lib_dir.is_dir():
        lib_dir = wheel / "external_libs"  # layout of a source (non-wheel) install of pytriton
    links = {
        "bin/tritonserver": wheel / "bin" / "tritonserver",
        "lib": lib_dir,
        "backends/python/libtriton_python.so": wheel / "backends" / "python" / "libtriton_python.so",
        "backends/python/triton_python_backend_utils.py": wheel
        / "backends"
        / "python"
        / "triton_python_backend_utils.py",
        f"backends/python/{_STUB_NAME}": stub,
    }
    for rel, target in links.items():
        if not target.exists():
            raise ServerStartError(f"the nvidia-pytriton wheel is incomplete: {target} is missing (needed for {rel})")

    triton_version = _triton_version()
    digest = hashlib.sha256(str(pytriton_dir.resolve()).encode()).hexdigest()[:8]
    parent = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    root = parent / f"tritonserver-{triton_version}-py{version}-{digest}"
    if not _home_is_valid(root, links):
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=parent))
        for rel, target in links.items():
            _link(staging / rel, target)
        if root.exists() or root.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=parent))
            with contextlib.suppress(OSError):
                root.rename(trash / "home")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            staging.rename(root)
        except OSError:  # another process won the race; use its home if it is valid
            shutil.rmtree(staging, ignore_errors=True)
            if not _home_is_valid(root, links):
                raise ServerStartError(f"could not assemble the Triton server home at {root}") from None

    libdir = sysconfig.get_config_var("LIBDIR")
    python_bin_dir = Path(sys.executable).parent
    if version == f"{sys.version_info.major}.{sys.version_info.minor}" and not (python_bin_dir / "python3").exists():
        raise ServerStartError(
            f"the Python-backend stub finds its interpreter as 'python3' on PATH, but {python_bin_dir} has no "
            "python3; run from a virtual environment (python -m venv) or add a python3 link there"
        )
    return ServerHome(
        root=root,
        triton_version=triton_version,
        python_version=version,
        tritonserver=root / "bin" / "tritonserver",
        backend_directory=root / "backends",
        lib_dir=root / "lib",
        python_libdir=Path(libdir) if libdir else None,
        python_bin_dir=python_bin_dir,
    )


# ------------------------------------------------------------------------------------------------- ports


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it).

    Args:
        host: Address to bind the probe socket to.

    Returns:
        The port number.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int, *, what: str = "port") -> None:
    """Raise :class:`ServerStartError` unless ``port`` can be bound on ``host``.

    Args:
        host: Address the server will bind.
        port: Port to check.
        what: Name used in the message, e.g. ``"HTTP port"``.

    Raises:
        ServerStartError: The port is in use (or cannot be bound); the message says what to do.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ServerStartError(
                f"{what} {port} on {host} is not available ({err.strerror}). Another server (perhaps another "
                f"Triton) is using it: stop it (e.g. `ss -ltnp 'sport = :{port}'` shows who), or choose another "
                "port, or pass 0 to pick a free one."
            ) from err


def _connect_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


# ---------------------------------------------------------------------------------------------- /proc


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    return text[text.rfind(")") + 2 :].split()  # fields after "pid (comm)": state, ppid, pgrp, ...


def _process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _cmdline(pid: int) -> list[str]:
    text = _read_text(f"/proc/{pid}/cmdline")
    return [part for part in (text or "").split("\0") if part]


def _rss_bytes(pid: int) -> int:
    text = _read_text(f"/proc/{pid}/status") or ""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _listening_ports(pid: int) -> set[int]:
    """TCP ports on which process ``pid`` holds a listening socket (Linux /proc)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    inodes = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in (_read_text(f"/proc/{pid}/net/{table}") or "").splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


_PRCTL = None


def _parent_death_signal_hook() -> object:
    """A preexec_fn asking the kernel to SIGTERM the child when this (main) thread dies; resolved pre-fork."""
    global _PRCTL  # noqa: PLW0603 - resolved once, in the parent, so the child does no library lookup
    if _PRCTL is None:
        _PRCTL = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    prctl = _PRCTL

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


# ---------------------------------------------------------------------------------------------- server


_LIVE_SERVERS: set[EmbeddedServer] = set()


@atexit.register
def _stop_live_servers() -> None:
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop(timeout_s=5.0)


class EmbeddedServer:
    """A real ``tritonserver`` process serving a model repository on the CPU.

    Use it as a context manager; ``start()`` returns only once *this* process answers ready::

        with EmbeddedServer("model_repository") as server:
            client = tritonclient.http.InferenceServerClient(server.http_url)

    Ports given as ``None`` or ``0`` are picked free; given ports are checked with a bind test before the
    start. The process runs in its own session (Ctrl-C in a terminal reaches only the Python process) and,
    when started from the main thread, receives SIGTERM if the Python process dies. Everything it prints
    (Triton's log and the Python models' stdout/stderr) goes to ``log_path``.

    Args:
        model_repository: One repository directory, or several.
        host: Address the three endpoints bind to. ``127.0.0.1`` keeps the server private to this host.
        http_port: HTTP/REST port (``None``/``0``: a free one).
        grpc_port: gRPC port (``None``/``0``: a free one).
        metrics_port: Prometheus metrics port (``None``/``0``: a free one).
        allow_metrics: Serve the metrics endpoint at all.
        model_control: Triton's ``--model-control-mode``: ``none`` (load everything at start), ``poll`` or
            ``explicit`` (load through the repository API).
        load_models: Models to load at start; only with ``model_control="explicit"`` (``"*"`` = all).
        repository_poll_s: Poll interval for ``model_control="poll"``.
        exit_on_error: Fail the start when a model fails to load (Triton ``--exit-on-error``).
        strict_readiness: Ready only when every model is ready (Triton ``--strict-readiness``). With
            ``exit_on_error=False`` set this to False too, or a broken model keeps the server unready.
        auto_complete_config: Let backends complete config.pbtxt (off: configs here are explicit, and
            each Python model then starts one stub process fewer while loading).
        log_verbose: Triton ``--log-verbose`` level (0 = off).
        log_path: Server log file; defaults to ``tritonserver.log`` in a new temporary directory.
        startup_timeout_s: Longest wait for readiness before the process is killed.
        exit_timeout_s: Triton's own grace period on SIGTERM (``--exit-timeout-secs``) for in-flight
            requests, open client connections and model unloading; it then exits anyway.
        stop_timeout_s: Longest wait after SIGTERM before SIGKILL (should exceed ``exit_timeout_s``).
        server_home: A home from :func:`prepare_server_home`; assembled on demand when omitted.
        env: Extra environment variables for the server and the Python models it runs.
        extra_args: More ``tritonserver`` flags, appended last (so they win), e.g. ``["--log-format=ISO8601"]``.
    """

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
        repository_poll_s: float = 5.0,
        exit_on_error: bool = True,
        strict_readiness: bool = True,
        auto_complete_config: bool = False,
        log_verbose: int = 0,
        log_path: str | Path | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        server_home: ServerHome | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        repos = [model_repository] if isinstance(model_repository, str | Path) else list(model_repository)
        if not repos:
            raise ValueError("model_repository: expected at least one directory, got none")
        self.model_repositories = tuple(Path(r).resolve() for r in repos)
        for repo in self.model_repositories:
            if not repo.is_dir():
                raise ValueError(f"model_repository: expected an existing directory, got {str(repo)!r}")
        if model_control not in ("none", "poll", "explicit"):
            raise ValueError(f"model_control: expected 'none', 'poll' or 'explicit', got {model_control!r}")
        if load_models and model_control != "explicit":
            raise ValueError(f"load_models needs model_control='explicit', got model_control={model_control!r}")
        for name, port in (("http_port", http_port), ("grpc_port", grpc_port), ("metrics_port", metrics_port)):
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"{name}: expected 0..65535 or None, got {port}")
        if min(startup_timeout_s, exit_timeout_s, stop_timeout_s) <= 0:
            raise ValueError(
                f"timeouts must be > 0, got startup_timeout_s={startup_timeout_s}, "
                f"exit_timeout_s={exit_timeout_s}, stop_timeout_s={stop_timeout_s}"
            )
        self.host = host
        self.allow_metrics = allow_metrics
        self.model_control: ModelControl = model_control
        self.load_models = tuple(load_models)
        self.repository_poll_s = repository_poll_s
        self.exit_on_error = exit_on_error
        self.strict_readiness = strict_readiness
        self.auto_complete_config = auto_complete_config
        self.log_verbose = int(log_verbose)
        self.startup_timeout_s = float(startup_timeout_s)
        self.exit_timeout_s = float(exit_timeout_s)
        self.stop_timeout_s = float(stop_timeout_s)
        self.env = dict(env or {})
        self.extra_args = tuple(extra_args)
        self._requested_ports = {"http": http_port or 0, "grpc": grpc_port or 0, "metrics": metrics_port or 0}
        self._ports = dict(self._requested_ports)
        self._server_home = server_home
        self._log_path = Path(log_path) if log_path is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.server_id = ""
        self.startup_s: float | None = None

    # ------------------------------------------------------------------ properties

    @property
    def http_port(self) -> int:
        """The HTTP port (0 before the first start when it was left to be picked)."""
        return self._ports["http"]

    @property
    def grpc_port(self) -> int:
        """The gRPC port (0 before the first start when it was left to be picked)."""
        return self._ports["grpc"]

    @property
    def metrics_port(self) -> int:
        """The metrics port (0 before the first start when it was left to be picked)."""
        return self._ports["metrics"]

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint, as ``tritonclient.http.InferenceServerClient(url=...)`` takes it."""
        return self._address(self.http_port)

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint, as ``tritonclient.grpc.InferenceServerClient(url=...)`` takes it."""
        return self._address(self.grpc_port)

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics page, e.g. ``http://127.0.0.1:8002/metrics``."""
        return f"http://{self._address(self.metrics_port)}/metrics"

    @property
    def pid(self) -> int | None:
        """Process id of ``tritonserver`` (None before start)."""
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path | None:
        """The server log file (None before the first start when no path was given)."""
        return self._log_path

    @property
    def home(self) -> ServerHome:
        """The server home in use (assembled on first access)."""
        if self._server_home is None:
            self._server_home = prepare_server_home()
        return self._server_home

    def _address(self, port: int) -> str:
        host = _connect_host(self.host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def is_running(self) -> bool:
        """True while the ``tritonserver`` process is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The full ``tritonserver`` command line for the current ports and options."""
        args = [str(self.home.tritonserver)]
        args += [f"--model-repository={repo}" for repo in self.model_repositories]
        args += [
            f"--backend-directory={self.home.backend_directory}",
            f"--id={self.server_id}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--allow-metrics={str(self.allow_metrics).lower()}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            f"--model-control-mode={self.model_control}",
            f"--exit-on-error={str(self.exit_on_error).lower()}",
            f"--strict-readiness={str(self.strict_readiness).lower()}",
            f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={max(1, round(self.exit_timeout_s))}",
        ]
        if not self.auto_complete_config:
            args.append("--disable-auto-complete-config")
        if self.allow_metrics:
            args += [f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}"]
        if self.model_control == "poll":
            args.append(f"--repository-poll-secs={max(1, round(self.repository_poll_s))}")
        args += [f"--load-model={name}" for name in self.load_models]
        args += list(self.extra_args)
        return args

    def start(self) -> EmbeddedServer:
        """Start the server and wait until it is ready.

        Returns:
            self, for chaining and ``with``.

        Raises:
            ServerStartError: A port is busy, the process exited early, another process answered, or it was
                not ready within ``startup_timeout_s``. The message ends with the server log's tail.
        """
        if self.is_running():
            raise ServerStartError(f"this EmbeddedServer is already running (pid {self.pid}); stop() it first")
        auto_ports = [k for k, v in self._requested_ports.items() if v == 0]
        try:
            self._launch()
        except ServerStartError:
            # an auto-picked port can be taken between the bind test and the server's bind: retry once
            if not auto_ports or "already in use" not in self.log_tail(_LOG_TAIL_LINES):
                raise
            self._launch()
        return self

    def _launch(self) -> None:
        home = self.home
        labels = {"http": "HTTP port", "grpc": "gRPC port", "metrics": "metrics port"}
        taken: set[int] = set()
        for kind in self._endpoints():
            if self._requested_ports[kind] == 0:
                port = find_free_port(self.host)
                while port in taken:
                    port = find_free_port(self.host)
                self._ports[kind] = port
            else:
                self._ports[kind] = self._requested_ports[kind]
                if self._ports[kind] in taken:
                    raise ServerStartError(f"{labels[kind]} {self._ports[kind]} is given for two endpoints")
                check_port_free(self.host, self._ports[kind], what=labels[kind])
            taken.add(self._ports[kind])

        if self._log_path is None:
            self._log_path = Path(tempfile.mkdtemp(prefix="enrichment-light-triton-")) / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self.server_id = f"enrichment-light-{uuid.uuid4().hex[:12]}"
        env = home.environment()
        env.update(self.env)
        self._log_file = open(self._log_path, "wb")  # noqa: SIM115 - closed by stop()
        started = time.monotonic()
        main_thread = threading.current_thread() is threading.main_thread()
        death_hook = _parent_death_signal_hook() if main_thread else None
        try:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=home.root,
                start_new_session=True,
                # PDEATHSIG fires when the forking *thread* exits, so only from the main thread. The hook only
                # calls prctl; pytriton does the same.
                preexec_fn=death_hook,  # noqa: PLW1509
            )
        except OSError as err:
            self._log_file.close()
            self._log_file = None
            raise ServerStartError(f"could not execute {home.tritonserver}: {err}") from err
        _LIVE_SERVERS.add(self)
        try:
            self._wait_ready(self.startup_timeout_s)
        except ServerStartError:
            self.stop(timeout_s=min(self.stop_timeout_s, 5.0))
            raise
        self.startup_s = time.monotonic() - started

    def wait_until_ready(self, timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> None:
        """Block until this server answers ready (e.g. after loading models in explicit mode).

        Args:
            timeout_s: Longest wait.

        Raises:
            ServerStartError: The process died or is not ready in time (the server is left running).
        """
        self._wait_ready(timeout_s)

    def _endpoints(self) -> list[str]:
        return ["http", "grpc"] + (["metrics"] if self.allow_metrics else [])

    def _wait_ready(self, timeout_s: float) -> None:
        if self._process is None:
            raise ServerStartError("the server was never started")
        deadline = time.monotonic() + timeout_s
        wanted = {self._ports[k] for k in self._endpoints()}
        last = "no answer yet"
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServerStartError(self._failure(f"tritonserver exited with status {code} before it was ready"))
            status, _ = self._http_get("/v2/health/ready")
            if status == 200:
                meta_status, body = self._http_get("/v2")
                name = _json_field(body, "name")
                if meta_status == 200 and name != self.server_id:
                    raise ServerStartError(
                        self._failure(
                            f"another server answers on {self.http_url} (id {name!r}, expected {self.server_id!r})"
                        )
                    )
                missing = wanted - _listening_ports(self._process.pid)
                if meta_status == 200 and not missing:
                    return
                last = f"ready, but ports {sorted(missing)} are not yet listening in pid {self._process.pid}"
            elif status is not None:
                last = f"GET /v2/health/ready -> {status}"
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    self._failure(f"tritonserver was not ready within {timeout_s:g} s (last check: {last})")
                )
            time.sleep(_POLL_INTERVAL_S)

    def _http_get(self, path: str) -> tuple[int | None, bytes]:
        conn = http.client.HTTPConnection(_connect_host(self.host), self.http_port, timeout=2.0)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None, b""
        finally:
            conn.close()

    def _failure(self, what: str) -> str:
        tail = self.log_tail(_LOG_TAIL_LINES)
        errors = [line for line in self._log_lines() if _ERROR_LINE.match(line) and line not in tail]
        shown = "\n".join(errors[-10:])
        earlier = f"--- earlier errors in the server log ---\n{shown}\n" if shown else ""
        return f"{what}.\nServer log: {self._log_path}\n{earlier}--- last lines of the server log ---\n{tail}"

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Stop the server: SIGTERM, wait, then SIGKILL; also ends the Python-backend stubs.

        Safe to call more than once and on a server that already exited.

        Args:
            timeout_s: Wait after SIGTERM before SIGKILL; ``stop_timeout_s`` when omitted.
        """
        process = self._process
        if process is None:
            return
        wait_s = self.stop_timeout_s if timeout_s is None else timeout_s
        pgid = process.pid  # start_new_session: the server leads its own process group; stubs inherit it
        members = _process_group_members(pgid)
        shm_regions = {arg for pid in members for arg in _cmdline(pid) if arg.startswith(_SHM_PREFIX)}
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                process.wait()
        # stubs notice their parent is gone within ~1 s; do not leave any behind
        deadline = time.monotonic() + 2.0
        while _process_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL_S)
        if _process_group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        for region in shm_regions:  # left behind only when a stub was killed
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/{region}")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _LIVE_SERVERS.discard(self)

    # ------------------------------------------------------------------ inspection

    def process_ids(self) -> list[int]:
        """Ids of the server and its stub processes (empty when stopped)."""
        if not self.is_running() or self._process is None:
            return []
        return sorted(_process_group_members(self._process.pid))

    def rss_bytes(self) -> int:
        """Resident memory of the server plus its Python-backend stubs, in bytes (from /proc)."""
        return sum(_rss_bytes(pid) for pid in self.process_ids())

    def log_tail(self, n: int = _LOG_TAIL_LINES) -> str:
        """The last ``n`` meaningful lines of the server log (Triton's ASCII tables and blank lines skipped).

        Args:
            n: Number of lines.

        Returns:
            The lines joined with newlines ("" when there is no log yet).
        """
        lines = self._log_lines()
        return "\n".join(lines[-n:]) if n > 0 else ""

    def _log_lines(self) -> list[str]:
        if self._log_path is None or not self._log_path.exists():
            return []
        with open(self._log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 512 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip() and not line.startswith(("+-", "|"))]

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.is_running() else "stopped"
        return f"EmbeddedServer({state}, http={self.http_url}, grpc={self.grpc_url}, log={self._log_path})"


def _json_field(body: bytes, key: str) -> object:
    try:
        return json.loads(body).get(key)
    except (ValueError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------ CLI block


@contextlib.contextmanager
def _stop_signals(event: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve_forever(server: EmbeddedServer, *, out: IO[str] | None = None) -> int:
    """Run ``server`` in the foreground until SIGINT or SIGTERM, then stop it cleanly.

    Installs SIGINT/SIGTERM handlers for the duration (so call it from the main thread), starts the server
    if needed, prints its HTTP, gRPC and metrics URLs and log path, and blocks.

    Args:
        server: The server to run (started here when not running yet).
        out: Where the URLs are printed; stdout when omitted.

    Returns:
        0 after a clean stop on a signal, 1 when the server process died on its own.

    Raises:
        ServerStartError: The server could not be started.
    """
    stream = out if out is not None else sys.stdout
    stop = threading.Event()
    with _stop_signals(stop):
        if not server.is_running():
            server.start()
        try:
            startup = f" in {server.startup_s:.1f} s" if server.startup_s is not None else ""
            print(f"Triton {server.home.triton_version} ready{startup} (pid {server.pid})", file=stream)
            print(f"  HTTP     http://{server.http_url}", file=stream)
            print(f"  gRPC     {server.grpc_url}", file=stream)
            if server.allow_metrics:
                print(f"  metrics  {server.metrics_url}", file=stream)
            print(f"  log      {server.log_path}", file=stream)
            print("Press Ctrl-C to stop.", file=stream, flush=True)
            while not stop.wait(0.5):
                if not server.is_running():
                    print(
                        f"tritonserver exited unexpectedly; last lines of {server.log_path}:\n{server.log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
            print("Stopping Triton...", file=stream, flush=True)
        finally:
            server.stop()
    print("Triton stopped.", file=stream, flush=True)
    return 0
