"""Take a Triton server out of service without failing a request (also ``enrichment-light drain``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GATE_MODEL = "enrichment_light_draining"  # loaded (and failing) to turn strict readiness off
_BUSY = {"READY", "LOADING", "UNLOADING"}
_POLL_S = 0.05


@dataclass(frozen=True)
class DrainReport:
    """What a drain did: seconds until "not ready" and until unloaded, the unload waves, what was left loaded."""

    unready_s: float
    drained_s: float
    waves: tuple[tuple[str, ...], ...]
    complete: bool
    left: tuple[str, ...] = ()


def triton_api(url: str, call: Callable[[Any], Any], *, timeout_s: float = 5.0) -> tuple[bool, Any]:
    """Run ``call`` on a fresh ``tritonclient.http`` client for ``url`` (``host:port``).

    Returns:
        ``(True, result)``, ``(False, "<status>: <message>")`` when Triton refused, ``(False, None)`` if no answer.
    """
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    try:
        with httpclient.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s) as client:
            return True, call(client)
    except InferenceServerException as err:
        return False, f"{err.status()}: {err.message()}"[:300]
    except Exception:  # refused, reset, timed out: no answer
        return False, None


def drain_server(
    http_url: str, *, gate_repository: str | Path, timeout_s: float, headers: Mapping[str, str] | None = None
) -> DrainReport:
    """Take a Triton server (explicit model control) out of service without failing a request.

    A model with no version (the gate) is loaded from ``gate_repository``: the load fails, and with strict
    readiness the server answers "not ready" while the real models keep serving. Models are then unloaded in
    waves, callers first (ensembles before their steps; BLS callees must be ensemble steps too), each wave
    waiting until Triton released it (in-flight requests done). SIGTERM then exits 0 (docs/resilience.md).

    Args:
        http_url: ``host:port`` of the HTTP endpoint.
        gate_repository: A writable folder the server was started with as a model repository.
        timeout_s: Budget; what is still loaded then is left to Triton's own shutdown.
        headers: Headers for restricted repository APIs (e.g. ``{"admin-key": ...}``).
    """
    started = time.monotonic()
    deadline, h = started + timeout_s, dict(headers or {})
    api = lambda call: triton_api(http_url, call)  # noqa: E731
    gate = Path(gate_repository) / GATE_MODEL
    gate.mkdir(parents=True, exist_ok=True)
    (gate / "config.pbtxt").write_text(f'name: "{GATE_MODEL}"\nbackend: "python"\n')
    api(lambda c: c.load_model(GATE_MODEL, headers=h))  # fails on purpose: no version
    unready_s = time.monotonic() - started

    def loaded(models: set[str] | None = None) -> set[str] | None:
        ok, index = api(lambda c: c.get_model_repository_index(headers=h))
        busy = {e["name"] for e in index if e.get("state") in _BUSY} if ok else None
        return busy if busy is None or models is None else busy & models

    remaining = loaded() or set()
    configs = {m: api(lambda c, m=m: c.get_model_config(m, headers=h)) for m in remaining}
    steps = {m: {s.get("model_name") for s in (cfg if ok else {}).get("ensemble_scheduling", {}).get("step", [])}
             for m, (ok, cfg) in configs.items()}  # fmt: skip
    waves = []
    while remaining and time.monotonic() < deadline:
        wave = sorted(remaining - set().union(*(steps[m] for m in remaining))) or sorted(remaining)
        for model in wave:
            api(lambda c, m=model: c.unload_model(m, headers=h))
        while time.monotonic() < deadline and loaded(set(wave)) != set():
            time.sleep(_POLL_S)
        waves.append(tuple(wave))
        remaining -= set(wave)
    return DrainReport(unready_s, time.monotonic() - started, tuple(waves), not remaining, tuple(sorted(remaining)))
