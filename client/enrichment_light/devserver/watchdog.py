"""The stub watchdog: reload a model whose Python-backend stub died.

Triton 2.51 does not restart a dead stub: the model stays "ready" and answers ``Stub process '<instance>' is not
healthy.``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from enrichment_light.devserver.drain import triton_api
from enrichment_light.devserver.processes import StubProcess, stub_process
from enrichment_light.devserver.processes import process_state as _process_state

_MAX_BACKOFF_S = 60.0
logger = logging.getLogger("enrichment_light.server")


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
            elif time.monotonic() < self._next_try.get(model, 0.0) or (state := self._model_state(model)) is None:
                continue  # backing off, or no answer (stopping?): look again later
            elif state.startswith("ERROR"):
                self._failed(model, state)
            elif state != "READY":  # unloading, loading or unloaded on purpose
                self._book.forget(model, [s.pid for s in stubs])
                self._suspect.discard(model)
            elif self._restart(model, stubs):
                reloaded.append(model)
        return reloaded

    def _api(self, call: Any, *, timeout_s: float = 5.0) -> tuple[bool, Any]:
        return triton_api(self._server.http_url, call, timeout_s=timeout_s)

    def _model_state(self, model: str) -> str | None:
        """READY, LOADING, UNLOADING, UNAVAILABLE...; None without an answer; ``"ERROR: ..."`` when refused."""
        h = self._server._admin_headers()
        ok, index = self._api(lambda c: c.get_model_repository_index(headers=h))
        if not ok:
            return None if index is None else f"ERROR: repository index -> {index}"
        states = {str(e.get("state")) for e in index if e.get("name") == model}
        return "READY" if "READY" in states else (sorted(states)[0] if states else "UNAVAILABLE")

    def _reload_model(self, model: str, generation: int) -> tuple[bool, str]:
        """Reload ``model`` for new stubs: in place (its config, one parameter changed), else unload and load."""
        h, timeout_s = self._server._admin_headers(), self.reload_timeout_s
        ok, config = self._api(lambda c: c.get_model_config(model, headers=h))
        in_place = f"no config: {config}"
        if ok:
            config.setdefault("parameters", {})["enrichment_light_stub_restart"] = {"string_value": str(generation)}
            ok, detail = self._api(
                lambda c: c.load_model(model, headers=h, config=json.dumps(config)), timeout_s=timeout_s
            )
            if ok:
                return True, "reloaded in place"
            in_place = f"in-place load -> {detail}"
        for action in ("unload", "load"):
            if self._stop.is_set():
                return False, "stopping"
            ok, detail = self._api(lambda c, a=action: getattr(c, f"{a}_model")(model, headers=h), timeout_s=timeout_s)
            if not ok:
                return False, f"{in_place}; {action} -> {detail}"
        return True, f"unloaded and loaded ({in_place})"

    def _restart(self, model: str, stubs: list[StubProcess]) -> bool:
        what = ", ".join(f"{s.instance} (pid {s.pid}) {_process_state(s.pid)}" for s in stubs)
        log = self._server._log_event
        log(logging.WARNING, "stub watchdog: the Python-backend stub of model %r died: %s; reloading %r",
            model, what, model)  # fmt: skip
        started = time.monotonic()
        ok, detail = self._reload_model(model, self.restarts.get(model, 0) + 1)
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
