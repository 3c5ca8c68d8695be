"""The stub watchdog's bookkeeping and decisions, with a fake server (no Triton, no /proc)."""

from __future__ import annotations

import logging

import pytest

from enrichment_light.devserver import watchdog as srv
from enrichment_light.devserver.watchdog import StubProcess, StubWatchdog, _StubBook


def _stub(pid: int, model: str = "pose_postprocess", index: int = 0) -> StubProcess:
    return StubProcess(pid, model, f"{model}_0_{index}", f"region_{pid}")


class FakeServer:
    """What the watchdog uses of EmbeddedServer (process ids, log, shm cleanup), plus stand-ins for its Triton calls."""

    def __init__(self, stubs: list[StubProcess]) -> None:
        self.stubs = {s.pid: s for s in stubs}
        self.states: dict[str, str] = {}
        self.reload_ok = True
        self.reloads: list[tuple[str, int]] = []
        self.events: list[tuple[int, str]] = []
        self.unlinked: set[str] = set()

    def process_ids(self) -> list[int]:
        return sorted(self.stubs)

    def is_running(self) -> bool:
        return True

    def _model_state(self, model: str) -> str | None:
        return self.states.get(model, "READY")

    def _reload_model(self, model: str, generation: int) -> tuple[bool, str]:
        self.reloads.append((model, generation))
        if not self.reload_ok:
            return False, "load -> 400: failed to load"
        self.kill(*[p for p, s in self.stubs.items() if s.model == model])
        new_pid = max(self.stubs, default=100) + 1
        self.stubs[new_pid] = _stub(new_pid, model)
        return True, "reloaded in place"

    def _log_event(self, level: int, message: str, *args: object) -> None:
        self.events.append((level, message % args))

    def _unlink_regions(self, regions) -> None:
        self.unlinked |= set(regions)

    def kill(self, *pids: int) -> None:
        for pid in pids:
            del self.stubs[pid]


@pytest.fixture
def fake(monkeypatch):
    server = FakeServer([_stub(1), _stub(2, "preprocess", 0), _stub(3, "preprocess", 1)])
    monkeypatch.setattr(srv, "stub_process", server.stubs.get)
    monkeypatch.setattr(srv, "_process_state", lambda pid: "is a zombie")
    watchdog = StubWatchdog(server, interval_s=0.5, reload_timeout_s=5)
    monkeypatch.setattr(watchdog, "_model_state", server._model_state)  # instead of Triton's repository API
    monkeypatch.setattr(watchdog, "_reload_model", server._reload_model)
    watchdog._book.observe(server.stubs.values())  # the baseline start() takes
    return server, watchdog


def test_stub_book_reports_lost_instance_when_pid_dies_without_replacement():
    book = _StubBook()
    assert book.observe([_stub(1), _stub(2, index=1)]) == {}
    assert book.observe([_stub(2, index=1)]) == {"pose_postprocess": [_stub(1)]}
    assert book.observe([_stub(2, index=1)]) == {"pose_postprocess": [_stub(1)]}  # stays until forgotten
    book.forget("pose_postprocess", [1])
    assert book.observe([_stub(2, index=1)]) == {}


def test_stub_book_reports_nothing_when_a_reload_replaces_the_stubs():
    book = _StubBook()
    book.observe([_stub(1)])
    assert book.observe([_stub(7)]) == {}  # same instance name, new pid: a reload, not a death


def test_watchdog_reloads_only_after_a_second_look_when_stub_dies(fake):
    server, watchdog = fake
    server.kill(1)
    assert watchdog.check() == []  # first sighting: confirm at the next look
    assert watchdog.check() == ["pose_postprocess"]
    assert server.reloads == [("pose_postprocess", 1)]
    assert watchdog.counts() == {"pose_postprocess": 1}
    assert server.unlinked == {"region_1"}
    warnings = [m for level, m in server.events if level == logging.WARNING]
    assert len(warnings) == 2 and "pose_postprocess_0_0 (pid 1) is a zombie" in warnings[0]
    assert watchdog.check() == [] and watchdog.check() == []  # the new stub is the baseline now


@pytest.mark.parametrize("state", ["UNLOADING", "UNAVAILABLE", "LOADING"])
def test_watchdog_does_nothing_when_the_model_is_unloaded_on_purpose_or_loading(fake, state):
    server, watchdog = fake
    server.states["pose_postprocess"] = state
    server.kill(1)
    for _ in range(4):
        assert watchdog.check() == []
    assert server.reloads == [] and watchdog.counts() == {}
    server.states.pop("pose_postprocess")
    for _ in range(4):  # forgotten: it stays unloaded without a word
        assert watchdog.check() == []
    assert server.events == []


def test_watchdog_backs_off_and_logs_error_when_reload_keeps_failing(fake, monkeypatch):
    server, watchdog = fake
    now = [1000.0]
    monkeypatch.setattr(srv.time, "monotonic", lambda: now[0])
    server.reload_ok = False
    server.kill(1)
    watchdog.check()
    watchdog.check()
    assert len(server.reloads) == 1
    waits = [watchdog._next_try["pose_postprocess"] - now[0]]
    for _ in range(8):
        attempts = len(server.reloads)
        while len(server.reloads) == attempts:  # a look every 0.5 s: no attempt before the wait is over
            now[0] += 0.5
            watchdog.check()
            assert now[0] - 1000 < 1000, "no further attempt"
        waits.append(watchdog._next_try["pose_postprocess"] - now[0])
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]  # doubles, capped: no tight loop
    assert len(server.reloads) == 9
    errors = [m for level, m in server.events if level == logging.ERROR]
    assert len(errors) == 9 and "attempt 9" in errors[-1] and "failed to load" in errors[-1]
    server.reload_ok = True
    now[0] += 1000
    assert watchdog.check() == ["pose_postprocess"]
    assert watchdog.counts() == {"pose_postprocess": 1}
