"""The server's processes (read with psutil) and the stub watchdog: reload a model whose Python-backend stub died.

Triton 2.51 does not restart a dead stub: the model stays "ready" and answers ``Stub process '<instance>' is not
healthy.``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STUB_NAME = "triton_python_backend_stub"
_INSTANCE_SUFFIX = re.compile(r"_\d+_\d+")  # instance "<model>_<group>_<index>"
_MAX_BACKOFF_S = 60.0
logger = logging.getLogger("enrichment_light.server")


def process_group(pgid: int) -> list[Any]:
    """Live (non-zombie) ``psutil.Process`` members of process group ``pgid`` (a server and its stubs)."""
    import psutil

    members = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError):  # gone meanwhile
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


@dataclass(frozen=True)
class StubProcess:
    """One Python-backend stub: ``triton_python_backend_stub <repo>/<model>/<v>/model.py <region> ... <instance>``.

    Attributes:
        pid: Process id.
        model: Model name.
        instance: ``<model>_<group>_<index>``, e.g. ``pose_postprocess_0_0``.
        region: The stub's shared-memory region (under ``/dev/shm``).
    """

    pid: int
    model: str
    instance: str
    region: str


def stub_process(pid: int) -> StubProcess | None:
    """The :class:`StubProcess` of ``pid``; None when it is no model instance's stub (or the auto-complete one)."""
    import psutil

    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    if len(argv) < 3 or not argv[0].endswith(STUB_NAME):
        return None
    model = Path(argv[1]).parent.parent.name
    instance = next((a for a in argv[2:] if a.startswith(model) and _INSTANCE_SUFFIX.fullmatch(a[len(model) :])), "")
    return StubProcess(pid, model, instance, argv[2]) if instance else None


def _process_state(pid: int) -> str:
    """How a dead process looks now, in words for the log."""
    import psutil

    try:
        return (
            "is a zombie (killed or crashed, not yet reaped)" if psutil.Process(pid).status() == "zombie" else "is gone"
        )
    except psutil.Error:
        return "exited"


@dataclass
class _StubBook:
    """Which model instances lost their stub (no I/O).

    Lost: its pid is gone and no live stub serves its instance name (a reload replaces stubs under the same names).
    It stays on the book until :meth:`forget`.
    """

    stubs: dict[int, StubProcess] = field(default_factory=dict)

    def observe(self, live: Iterable[StubProcess]) -> dict[str, list[StubProcess]]:
        """Record the live stubs; return model -> its lost stubs."""
        live_by_pid = {stub.pid: stub for stub in live}
        served = {(stub.model, stub.instance) for stub in live_by_pid.values()}
        lost = {p: s for p, s in self.stubs.items() if p not in live_by_pid and (s.model, s.instance) not in served}
        self.stubs = {**lost, **live_by_pid}
        by_model: dict[str, list[StubProcess]] = {}
        for stub in lost.values():
            by_model.setdefault(stub.model, []).append(stub)
        return by_model

    def forget(self, model: str, pids: Iterable[int]) -> None:
        """Drop these lost stubs of ``model``."""
        for pid in pids:
            if (stub := self.stubs.get(pid)) is not None and stub.model == model:
                del self.stubs[pid]


class StubWatchdog:
    """A daemon thread that reloads a model whose Python-backend stub died.

    A stub seen alive that is gone (or a zombie), with no new stub for its instance, is confirmed at the next
    look; then the repository index decides: a model loading, unloading or unloaded is left alone; a READY one is
    reloaded (in place when Triton accepts it). Restarts are counted and logged as WARNING; failures as ERROR,
    retried with a backoff doubling up to 60 s.

    Args:
        server: The running :class:`~enrichment_light.devserver.EmbeddedServer`.
        interval_s: Seconds between two looks at the processes.
        reload_timeout_s: Longest wait for one reload call.
    """

    def __init__(self, server: Any, *, interval_s: float, reload_timeout_s: float) -> None:
        self._server, self.interval_s, self.reload_timeout_s = server, float(interval_s), float(reload_timeout_s)
        self.restarts: dict[str, int] = {}
        self._book, self._suspect = _StubBook(), set[str]()
        self._failures: dict[str, int] = {}
        self._next_try: dict[str, float] = {}
        self._stop, self._lock = threading.Event(), threading.Lock()
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

    stopping = property(lambda self: self._stop.is_set(), doc="True once :meth:`stop` was called.")

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def counts(self) -> dict[str, int]:
        """A copy of :attr:`restarts`."""
        with self._lock:
            return dict(self.restarts)

    def _live_stubs(self) -> list[StubProcess]:
        return [stub for pid in self._server.process_ids() if (stub := stub_process(pid)) is not None]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and self._server.is_running():
            try:
                self.check()
            except Exception:  # one bad look must not end the watchdog
                logger.exception("stub watchdog: unexpected error")

    def check(self) -> list[str]:
        """One look: find lost stubs and reload their models. Returns the models reloaded now."""
        lost = self._book.observe(self._live_stubs())
        self._suspect &= set(lost)
        reloaded = []
        for model, stubs in sorted(lost.items()):
            if self._stop.is_set():
                break
            if model not in self._suspect:  # first sighting: confirm at the next look
                self._suspect.add(model)
            elif (
                time.monotonic() < self._next_try.get(model, 0.0) or (state := self._server._model_state(model)) is None
            ):
                continue  # backing off, or no answer (stopping?): look again later
            elif state.startswith("ERROR"):
                self._failed(model, state)
            elif state != "READY":  # unloading, loading or unloaded on purpose
                self._book.forget(model, [s.pid for s in stubs])
                self._suspect.discard(model)
            elif self._restart(model, stubs):
                reloaded.append(model)
        return reloaded

    def _restart(self, model: str, stubs: list[StubProcess]) -> bool:
        what = ", ".join(f"{s.instance} (pid {s.pid}) {_process_state(s.pid)}" for s in stubs)
        log = self._server._log_event
        log(logging.WARNING, "stub watchdog: the Python-backend stub of model %r died: %s; reloading %r",
            model, what, model)  # fmt: skip
        started = time.monotonic()
        ok, detail = self._server._reload_model(model, self.restarts.get(model, 0) + 1, self.reload_timeout_s)
        if self._stop.is_set() or not ok:
            if not self._stop.is_set():
                self._failed(model, detail)
            return False
        self._failures.pop(model, None)
        self._next_try.pop(model, None)
        self._suspect.discard(model)
        self._book.forget(model, [s.pid for s in stubs])
        with self._lock:
            self.restarts[model] = count = self.restarts.get(model, 0) + 1
        self._server._unlink_regions({s.region for s in stubs})
        log(logging.WARNING, "stub watchdog: model %r reloaded in %.2f s (%s; restart #%d)",
            model, time.monotonic() - started, detail, count)  # fmt: skip
        return True

    def _failed(self, model: str, detail: str) -> None:
        failures = self._failures[model] = self._failures.get(model, 0) + 1
        wait_s = min(_MAX_BACKOFF_S, max(self.interval_s, 1.0) * 2 ** (failures - 1))
        self._next_try[model] = time.monotonic() + wait_s
        self._server._log_event(
            logging.ERROR, "stub watchdog: reloading model %r failed (attempt %d): %s; next try in %.0f s",
            model, failures, detail, wait_s,
        )  # fmt: skip
