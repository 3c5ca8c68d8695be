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

Triton 2.51 does not restart a Python-backend stub that dies (killed, OOM, crash): the model stays "ready"
and every request to it fails with ``Stub process '<instance>' is not healthy.``. In explicit model-control
mode the server's *stub watchdog* (a daemon thread, :class:`StubWatchdog`) notices the dead stub in /proc
and reloads that model through the repository API.

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
import logging
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
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from enrichment_light.errors import ServerStartError

__all__ = [
    "EmbeddedServer",
    "ServerHome",
    "StubProcess",
    "StubWatchdog",
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
_SHM_PREFIX_FLAG = "shm-region-prefix-name="
DEFAULT_WATCHDOG_INTERVAL_S = 0.5
_WATCHDOG_MAX_BACKOFF_S = 60.0
_RESTART_PARAMETER = "enrichment_light_stub_restart"  # config parameter that makes a reload a real one
_INSTANCE_SUFFIX = re.compile(r"_\d+_\d+")  # instance "<model>_<group>_<index>"

logger = logging.getLogger("enrichment_light.server")


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


# ---------------------------------------------------------------------------------------------- stubs


@dataclass(frozen=True)
class StubProcess:
    """One Python-backend stub process, as read from ``/proc/<pid>/cmdline``.

    The stub's command line (Triton 2.51) is ``triton_python_backend_stub <repo>/<model>/<version>/model.py
    <shm region> <shm sizes> <parent pid> <backend dir> <ipc size> <instance name> <kind> ...``.

    Attributes:
        pid: Process id.
        model: Model name (its directory in the repository).
        instance: Model instance name, ``<model>_<group>_<index>``, e.g. ``pose_postprocess_0_0``.
        region: The stub's shared-memory region name (under ``/dev/shm``).
    """

    pid: int
    model: str
    instance: str
    region: str


def stub_process(pid: int) -> StubProcess | None:
    """The :class:`StubProcess` of ``pid``, or None when it is not a model instance's stub.

    The short-lived stub the Python backend starts to auto-complete a config is named after the model
    alone (no ``_<group>_<index>``) and is not a model instance: it is skipped.
    """
    argv = _cmdline(pid)
    if len(argv) < 3 or not argv[0].endswith(_STUB_NAME):
        return None
    model = Path(argv[1]).parent.parent.name
    for arg in argv[2:]:
        if arg.startswith(model) and _INSTANCE_SUFFIX.fullmatch(arg[len(model) :]):
            return StubProcess(pid, model, arg, argv[2])
    return None


def _process_state(pid: int) -> str:
    fields = _stat_fields(pid)
    if fields is None:
        return "exited"
    return "is a zombie (killed or crashed, not yet reaped)" if fields[0] == "Z" else "is gone"


@dataclass
class _StubBook:
    """The watchdog's bookkeeping, free of I/O: which model instances lost their stub.

    A stub is *lost* when its pid is no longer live and no live stub serves the same instance name (a
    reload replaces every stub of a model under the same instance names). Lost stubs stay on the book
    until :meth:`forget` (after a restart, or when the model turns out to be unloading or unloaded).
    """

    stubs: dict[int, StubProcess] = field(default_factory=dict)

    def observe(self, live: Iterable[StubProcess]) -> dict[str, list[StubProcess]]:
        """Record the live stubs and return model -> its lost stubs."""
        live_by_pid = {stub.pid: stub for stub in live}
        served = {(stub.model, stub.instance) for stub in live_by_pid.values()}
        lost: dict[str, list[StubProcess]] = {}
        kept: dict[int, StubProcess] = {}
        for pid, stub in self.stubs.items():
            if pid not in live_by_pid and (stub.model, stub.instance) not in served:
                lost.setdefault(stub.model, []).append(stub)
                kept[pid] = stub
        self.stubs = {**kept, **live_by_pid}
        return lost

    def forget(self, model: str, pids: Iterable[int]) -> None:
        """Drop these lost stubs of ``model`` from the book."""
        for pid in pids:
            stub = self.stubs.get(pid)
            if stub is not None and stub.model == model:
                del self.stubs[pid]


class StubWatchdog:
    """Reload a model whose Python-backend stub died (Triton 2.51 does not restart it).

    A daemon thread lists the server's stub processes every ``interval_s``. When a stub that was seen
    alive has exited or turned zombie, and no new stub serves its instance, it checks twice (one interval
    apart) and asks the repository index for the model's state: a model that is loading, unloading or
    unloaded is someone else's business. A model still READY with a dead stub is reloaded **in place**:
    its current config is loaded back as a config override with one extra parameter
    (``enrichment_light_stub_restart``), so Triton treats it as changed, starts new stubs and swaps them
    in while the old (dead) instance keeps answering ``... is not healthy`` (which clients retry); the
    model and the ensembles that use it never become unavailable. Should that fail, it falls back to
    ``unload`` then ``load``. Each restart is counted in :attr:`restarts` and logged as a WARNING (through
    :mod:`logging` and in the server log). A failed reload is logged as an ERROR and retried with an
    exponential backoff (capped at 60 s).

    Created and owned by :class:`EmbeddedServer`; ``stop()`` stops it before the server.

    Args:
        server: The running server.
        interval_s: Seconds between two looks at ``/proc``.
        reload_timeout_s: Longest wait for one reload call.
    """

    def __init__(self, server: EmbeddedServer, *, interval_s: float, reload_timeout_s: float) -> None:
        self._server = server
        self.interval_s = float(interval_s)
        self.reload_timeout_s = float(reload_timeout_s)
        self.restarts: dict[str, int] = {}
        self._book = _StubBook()
        self._suspect: set[str] = set()
        self._failures: dict[str, int] = {}
        self._next_try: dict[str, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Take the current stubs as the baseline and start the thread."""
        self._book.observe(self._live_stubs())
        self._thread = threading.Thread(target=self._run, name="enrichment-light-stub-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (a reload in progress is abandoned after ``timeout_s``)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _live_stubs(self) -> list[StubProcess]:
        return [stub for pid in self._server.process_ids() if (stub := stub_process(pid)) is not None]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._server.is_running():
                return
            try:
                self.check()
            except Exception:  # never let one bad look end the watchdog
                logger.exception("stub watchdog: unexpected error")

    def check(self) -> list[str]:
        """One look: find lost stubs and reload their models. Returns the models reloaded now."""
        lost = self._book.observe(self._live_stubs())
        self._suspect &= set(lost)
        reloaded = []
        for model, stubs in sorted(lost.items()):
            if self._stop.is_set():
                break
            if model not in self._suspect:  # seen for the first time: confirm at the next look
                self._suspect.add(model)
                continue
            if time.monotonic() < self._next_try.get(model, 0.0):
                continue
            state = self._server._model_state(model)
            if state is None:  # the server does not answer (stopping?): look again later
                continue
            if state.startswith("ERROR"):
                self._failed(model, state)
                continue
            if state != "READY":  # unloading, loading or unloaded on purpose
                self._book.forget(model, [s.pid for s in stubs])
                self._suspect.discard(model)
                continue
            if self._restart(model, stubs):
                reloaded.append(model)
        return reloaded

    def _restart(self, model: str, stubs: list[StubProcess]) -> bool:
        what = ", ".join(f"{s.instance} (pid {s.pid}) {_process_state(s.pid)}" for s in stubs)
        self._server._log_event(
            logging.WARNING,
            "stub watchdog: the Python-backend stub of model %r died: %s; reloading %r",
            model,
            what,
            model,
        )
        started = time.monotonic()
        ok, detail = self._server._reload_model(model, self.restarts.get(model, 0) + 1, self.reload_timeout_s)
        if self._stop.is_set():
            return False
        if not ok:
            self._failed(model, detail)
            return False
        self._failures.pop(model, None)
        self._next_try.pop(model, None)
        self._suspect.discard(model)
        self._book.forget(model, [s.pid for s in stubs])
        with self._lock:
            self.restarts[model] = self.restarts.get(model, 0) + 1
        self._server._unlink_regions({s.region for s in stubs})
        self._server._log_event(
            logging.WARNING,
            "stub watchdog: model %r reloaded in %.2f s (%s; restart #%d)",
            model,
            time.monotonic() - started,
            detail,
            self.restarts[model],
        )
        return True

    def _failed(self, model: str, detail: str) -> None:
        failures = self._failures[model] = self._failures.get(model, 0) + 1
        wait_s = min(_WATCHDOG_MAX_BACKOFF_S, max(self.interval_s, 1.0) * 2 ** (failures - 1))
        self._next_try[model] = time.monotonic() + wait_s
        self._server._log_event(
            logging.ERROR,
            "stub watchdog: reloading model %r failed (attempt %d): %s; next try in %.0f s",
            model,
            failures,
            detail,
            wait_s,
        )

    def counts(self) -> dict[str, int]:
        """A copy of :attr:`restarts`."""
        with self._lock:
            return dict(self.restarts)


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
        restart_dead_stubs: Run the stub watchdog (:class:`StubWatchdog`), which reloads a model whose
            Python-backend stub died. ``None`` (default): on in ``explicit`` mode, off otherwise. ``True`` needs
            ``model_control="explicit"``: Triton refuses repository loads in the other modes.
        watchdog_interval_s: Seconds between the watchdog's looks at the stub processes.
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
        restart_dead_stubs: bool | None = None,
        watchdog_interval_s: float = DEFAULT_WATCHDOG_INTERVAL_S,
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
        if restart_dead_stubs and model_control != "explicit":
            raise ValueError(
                "restart_dead_stubs=True needs model_control='explicit' (the watchdog reloads models through the "
                f"repository API, which Triton refuses in {model_control!r} mode)"
            )
        if watchdog_interval_s <= 0:
            raise ValueError(f"watchdog_interval_s must be > 0, got {watchdog_interval_s}")
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
        self.restart_dead_stubs = model_control == "explicit" if restart_dead_stubs is None else restart_dead_stubs
        self.watchdog_interval_s = float(watchdog_interval_s)
        self._watchdog: StubWatchdog | None = None
        self._stub_restarts: dict[str, int] = {}
        self._shm_prefix = ""
        self._log_lock = threading.Lock()
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
    def stub_restarts(self) -> dict[str, int]:
        """Model -> how many times the stub watchdog reloaded it since the last start (a copy)."""
        watchdog = self._watchdog
        return watchdog.counts() if watchdog is not None else dict(self._stub_restarts)

    @property
    def watchdog_running(self) -> bool:
        """True while the stub watchdog's thread runs."""
        return self._watchdog is not None and self._watchdog.is_alive()

    @property
    def shm_region_prefix(self) -> str:
        """Prefix of this run's Python-backend shared-memory regions in ``/dev/shm``.

        "" before the first start, or when ``extra_args`` set ``shm-region-prefix-name`` themselves.
        """
        return self._shm_prefix

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
        if self._shm_prefix:  # one prefix per run: stop() can find every region, even of killed stubs
            args.append(f"--backend-config=python,{_SHM_PREFIX_FLAG}{self._shm_prefix}")
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
        run_id = uuid.uuid4().hex[:12]
        self.server_id = f"enrichment-light-{run_id}"
        user_prefix = any(
            arg.startswith("--backend-config=python,") and _SHM_PREFIX_FLAG in arg for arg in self.extra_args
        )
        # keeps Triton's own prefix in front, so tools that look for it still find these regions
        self._shm_prefix = "" if user_prefix else f"{_SHM_PREFIX}{run_id}_"
        self._stub_restarts = {}
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
        if self.restart_dead_stubs:
            self._watchdog = StubWatchdog(
                self, interval_s=self.watchdog_interval_s, reload_timeout_s=max(30.0, self.startup_timeout_s)
            )
            self._watchdog.start()

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
        return self._http("GET", path)

    def _http(self, method: str, path: str, body: object = None, *, timeout_s: float = 2.0) -> tuple[int | None, bytes]:
        conn = http.client.HTTPConnection(_connect_host(self.host), self.http_port, timeout=timeout_s)
        try:
            headers = self._admin_headers()
            if body is None:
                conn.request(method, path, headers=headers)
            else:
                headers["Content-Type"] = "application/json"
                conn.request(method, path, body=json.dumps(body).encode(), headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None, b""
        finally:
            conn.close()

    def _admin_headers(self) -> dict[str, str]:
        """Headers for APIs that ``extra_args`` restrict (``--http-restricted-api=<apis>:<key>=<value>``)."""
        headers = {}
        for arg in self.extra_args:
            if arg.startswith("--http-restricted-api="):
                _, _, spec = arg.partition("=")
                _, _, pair = spec.partition(":")
                key, sep, value = pair.partition("=")
                if sep and key:
                    headers[key] = value
        return headers

    def _model_state(self, model: str) -> str | None:
        """The model's state in the repository index (READY, LOADING, UNLOADING, UNAVAILABLE...).

        None when the server does not answer; ``"ERROR: ..."`` when it refuses (e.g. a restricted API).
        """
        status, body = self._http("POST", "/v2/repository/index", {}, timeout_s=5.0)
        if status is None:
            return None
        if status != 200:
            return f"ERROR: repository index -> {status}: {_short(body)}"
        try:
            entries = json.loads(body)
        except ValueError:
            return None
        states = {str(e.get("state")) for e in entries if isinstance(e, dict) and e.get("name") == model}
        if "READY" in states:
            return "READY"
        return sorted(states)[0] if states else "UNAVAILABLE"

    def _reload_model(self, model: str, generation: int, timeout_s: float) -> tuple[bool, str]:
        """Reload ``model`` so that Triton starts new stubs: in place first, else unload then load.

        A load of a loaded, unchanged model does nothing, so the in-place reload sends the model's current
        config back with one extra parameter; Triton then loads a new copy and swaps it in once ready.
        """
        quoted = urllib.parse.quote(model, safe="")
        status, body = self._http("GET", f"/v2/models/{quoted}/config", timeout_s=5.0)
        in_place = "no config"
        if status == 200:
            try:
                config = json.loads(body)
                config.setdefault("parameters", {})[_RESTART_PARAMETER] = {"string_value": str(generation)}
            except (ValueError, AttributeError) as err:
                in_place = f"config not readable: {err}"
            else:
                request = {"parameters": {"config": json.dumps(config)}}
                status, body = self._http("POST", f"/v2/repository/models/{quoted}/load", request, timeout_s=timeout_s)
                if status == 200:
                    return True, "reloaded in place"
                in_place = f"in-place load -> {status}: {_short(body)}"
        if self._watchdog is not None and self._watchdog._stop.is_set():
            return False, "stopping"
        status, body = self._http("POST", f"/v2/repository/models/{quoted}/unload", {}, timeout_s=timeout_s)
        if status != 200:
            return False, f"{in_place}; unload -> {status}: {_short(body)}"
        status, body = self._http("POST", f"/v2/repository/models/{quoted}/load", {}, timeout_s=timeout_s)
        if status != 200:
            return False, f"{in_place}; load -> {status}: {_short(body)}"
        return True, f"unloaded and loaded ({in_place})"

    def _log_event(self, level: int, message: str, *args: object) -> None:
        """Log through :mod:`logging` and append a glog-style line to the server log."""
        logger.log(level, message, *args)
        text = message % args
        now = time.time()
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
        line = f"{logging.getLevelName(level)[0]}{stamp} {os.getpid()} enrichment_light.server] {text}\n"
        with self._log_lock:
            log_file = self._log_file
            if log_file is not None:  # shares Triton's file offset: whole lines land after Triton's
                with contextlib.suppress(OSError, ValueError):
                    log_file.write(line.encode())
                    log_file.flush()

    def _unlink_regions(self, regions: Iterable[str]) -> None:
        """Remove the shared-memory regions of dead stubs (a SIGKILLed stub cannot unlink its own)."""
        live = {stub.region for pid in self.process_ids() if (stub := stub_process(pid)) is not None}
        for region in set(regions) - live:
            if region and "/" not in region:
                with contextlib.suppress(OSError):
                    os.unlink(f"/dev/shm/{region}")

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
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:  # first, so that it does not reload models while they shut down
            watchdog.stop()
            self._stub_restarts = watchdog.counts()
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
        if self._shm_prefix:  # this run's prefix also finds the regions of stubs killed from outside
            with contextlib.suppress(OSError):
                shm_regions.update(n for n in os.listdir("/dev/shm") if n.startswith(self._shm_prefix))
        for region in shm_regions:  # left behind only when a stub was killed
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/{region}")
        with self._log_lock:
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


def _short(body: bytes, limit: int = 300) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text).get("error", text))
    return text[:limit] or "(no body)"


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
            if server.restart_dead_stubs:
                print("  stub watchdog on: a model whose Python-backend stub dies is reloaded", file=stream)
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
